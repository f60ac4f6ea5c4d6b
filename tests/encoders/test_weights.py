"""Weight resolution: weights folder, env variable, hub cache, download (network mocked), errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.encoders import weights
from avsearch.encoders.weights import resolve_weight, weights_status
from avsearch.errors import ConfigError, WeightsMissingError


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty hub cache and avsearch cache, no AVSEARCH_WEIGHTS, and no network at all."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("AVSEARCH_CACHE", str(tmp_path / "avcache"))
    monkeypatch.delenv("AVSEARCH_WEIGHTS", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("AVSEARCH_OFFLINE", raising=False)
    for empty in ("empty", "w"):  # weights folders the tests name (a missing folder is its own error)
        (tmp_path / empty).mkdir(exist_ok=True)

    def refuse(*_a, **_k):  # a test must never reach the network
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_found_in_weights_folder_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "w"
    (folder / "roberta-base").mkdir(parents=True)
    (folder / "ulip_clip.pt").write_bytes(b"x")
    (folder / "roberta-base" / "vocab.json").write_text("{}")
    assert resolve_weight("ulip_clip.pt", folder) == folder / "ulip_clip.pt"
    assert resolve_weight("roberta-base/vocab.json", folder) == folder / "roberta-base" / "vocab.json"
    monkeypatch.setenv("AVSEARCH_WEIGHTS", str(folder))
    assert resolve_weight("ulip_clip.pt") == folder / "ulip_clip.pt"


def test_hub_cache_copied_from_connected_machine(tmp_path: Path) -> None:
    # The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/file}.
    repo = tmp_path / "hub" / "models--FacebookAI--roberta-base"
    commit = "e2da8e2f811d1448a5b465c236feacd80ffbac7b"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    assert resolve_weight("roberta-base/config.json", tmp_path / "empty") == snap / "config.json"
    status = {s.file.name: s for s in weights_status(tmp_path / "empty")}
    assert status["roberta-base/config.json"].where == "cache"
    assert status["630k-fusion-best.pt"].path is None


def test_download_used_when_missing_and_online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    fetched = tmp_path / "fetched.pt"
    fetched.write_bytes(b"x")

    def fake_download(wf):  # test double standing in for the upstream download
        calls.append(wf.name)
        return fetched

    monkeypatch.setattr(weights, "download", fake_download)
    assert resolve_weight("630k-fusion-best.pt", tmp_path / "empty") == fetched
    assert calls == ["630k-fusion-best.pt"]


def test_download_failure_is_one_clear_error(tmp_path: Path) -> None:
    # The real download code runs and meets the disabled network.
    with pytest.raises(WeightsMissingError) as info:
        resolve_weight("ulip_clip.pt", tmp_path / "empty")
    message = str(info.value)
    assert "ulip_clip.pt" in message and "github.com/MCR-PEFT/C-MCR" in message and "download failed" in message


def test_offline_mode_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "download", lambda wf: pytest.fail("download attempted off-line"))
    with pytest.raises(WeightsMissingError, match=r"ViT-B-32\.pt.*openaipublic.*weights folder"):
        resolve_weight("ViT-B-32.pt", tmp_path / "w")


def test_no_source_file_names_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError, match=r"pointbert_ULIP-2\.pt.*salesforce/ULIP"):
        resolve_weight("pointbert_ULIP-2.pt", tmp_path / "w")


def test_unknown_file_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="630k-fusion-best.pt"):
        resolve_weight("nope.bin")


def test_weights_command_lists_present_and_missing(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    (folder / "ulip_clip.pt").write_bytes(b"x" * 2048)
    result = CliRunner().invoke(app, ["weights", "--weights-dir", str(folder)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "present" in lines["ulip_clip.pt"] and "2.0 KB" in lines["ulip_clip.pt"]
    assert "missing" in lines["630k-fusion-best.pt"] and "huggingface.co/lukewys" in lines["630k-fusion-best.pt"]


def test_a_mistyped_weights_folder_is_one_clear_error(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from avsearch.cli.app import app

    result = CliRunner().invoke(app, ["weights", "--weights-dir", str(tmp_path / "wieghts")])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"avsearch: error: {tmp_path / 'wieghts'}: the weights folder (--weights-dir) is not a folder that exists"
    )
    monkeypatch.setenv("AVSEARCH_WEIGHTS", str(tmp_path / "nope"))
    env = CliRunner().invoke(app, ["weights"])
    assert env.exit_code == 1 and "(AVSEARCH_WEIGHTS) is not a folder that exists" in env.stderr
