import numpy as np
import pytest

from avsearch.bridge.config import load_train_config, with_overrides
from avsearch.bridge.data import load_bridge_data
from avsearch.errors import ConfigError, InputError


def test_presets_hold_the_papers_values():
    av = load_train_config("audio_visual")
    assert (av.method.tau1, av.method.tau2, av.method.tau3) == (0.01, 0.01, 0.01)
    assert (av.method.noise_var, av.method.lambda_intra) == (0.004, 0.1)
    assert (av.optim.epochs, av.optim.batch_size, av.optim.lr) == (36, 10240, 1e-3)
    assert [s.space for s in av.sides] == ["clip", "clap"] and av.overlap == "text"
    pc = load_train_config("pointcloud_text")
    assert (pc.method.noise_var, pc.method.lambda_intra) == (0.002, 0.4)
    assert (pc.optim.epochs, pc.optim.batch_size, pc.optim.lr) == (24, 8192, 5e-3)
    assert [s.memory for s in pc.sides] == ["text", "pointcloud"] and pc.overlap == "image"
    assert av.intra_sides == ("clip", "clap")


def test_unknown_key_wrong_type_and_missing_file_are_errors(tmp_path):
    text = (load_train_config.__globals__["configs_dir"]() / "audio_visual.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("tau1 = 0.01", "tau_1 = 0.01"))
    with pytest.raises(ConfigError, match="unknown key.*tau_1"):
        load_train_config(bad)
    bad.write_text(text.replace("epochs = 36", 'epochs = "many"'))
    with pytest.raises(ConfigError, match="optim.epochs: expected int"):
        load_train_config(bad)
    bad.write_text(text.replace('kind = "mlp"', 'kind = "resnet"'))
    with pytest.raises(ConfigError, match="unknown head kind"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match="bundled presets: audio_visual, pointcloud_text"):
        load_train_config(tmp_path / "nope.toml")


def test_overrides_reach_their_section_and_refuse_unknown_names():
    cfg = with_overrides(load_train_config("audio_visual"), epochs=2, lr=0.5, ttc=False, mode="argmax", intra=("clip",))
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.ablation.ttc, cfg.consistency.mode) == (
        2,
        0.5,
        False,
        "argmax",
    )
    assert cfg.intra_sides == ("clip",)
    assert with_overrides(cfg, intra=("none",)).intra_sides == ()
    with pytest.raises(ConfigError, match="unknown or ambiguous override 'learning_rate'"):
        with_overrides(cfg, learning_rate=1.0)
    with pytest.raises(ConfigError, match="sides are"):
        with_overrides(cfg, intra=("ulip",))


def _write(folder, **arrays):
    folder.mkdir(exist_ok=True)
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", arr)


def test_data_validation_errors_name_the_file_and_reason(tmp_path, preset_synthetic_dir):
    cfg = load_train_config("audio_visual")
    data = load_bridge_data(preset_synthetic_dir, cfg)
    assert data.n_pairs == 2000 and len(data.fingerprint) == 64
    good = {p.stem: np.load(p) for p in preset_synthetic_dir.glob("*.npy")}

    cases = {
        "missing": ({k: v for k, v in good.items() if k != "audio.clap"}, r"audio\.clap\.npy: missing"),
        "rows": (good | {"text.clap": good["text.clap"][:-1]}, "has 2000 rows but text.clap.npy has 1999"),
        "dim": (
            good | {"image.clip": good["image.clip"][:, :256]},
            r"shape is \(2000, 256\), expected \(N, 512\)",
        ),
        "nan": (
            good | {"text.clip": np.where(np.arange(2000)[:, None] == 5, np.nan, good["text.clip"])},
            r"text\.clip\.npy: row 5 contains NaN",
        ),
        "norm": (good | {"audio.clap": good["audio.clap"] * 2}, r"row 0 has L2 norm 2\.0000"),
        "dtype": (
            good | {"image.clip": good["image.clip"].astype(np.float64)},
            "dtype is float64, expected float32",
        ),
        "pickle": (good | {"image.clip": np.array([{"a": 1}], dtype=object)}, "not a plain numeric"),
    }
    for name, (arrays, message) in cases.items():
        folder = tmp_path / name
        _write(folder, **arrays)
        with pytest.raises(InputError, match=message):
            load_bridge_data(folder, cfg)
    with pytest.raises(InputError, match="embeddings folder not found"):
        load_bridge_data(tmp_path / "absent", cfg)
