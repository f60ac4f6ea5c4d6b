"""CAV-MAE as a second search backend beside C-MCR, through the real CLI: a random-weight CAV-MAE
checkpoint in the release's key layout (tests/weights_factory.make_cavmae_weights) and the random-weight
CLIP/CLAP/released bridges (make_full_weights). Adding the backend to a C-MCR index embeds only what it
lacks; `--backend both` gives both lists, the CAV-MAE one equal to a brute-force cosine over vectors the
test computes with the encoder itself; text with --backend cavmae is one line; eval retrieval scores both
backends on the same pairs in one table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avsearch.cli.app import app
from avsearch.encoders.registry import load_encoder
from avsearch.store.manifest import load_manifest
from avsearch.store.tables import MediaStore
from tests.search.media_factory import write_audio, write_image
from tests.weights_factory import make_full_weights

runner = CliRunner()
CAVMAE = "cavmae-scale-plus-plus"


def _cli(*args: object, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def weights(cavmae_weights_dir: Path) -> Path:
    return make_full_weights(cavmae_weights_dir)


@pytest.fixture(scope="module")
def cavmae(weights: Path):
    return load_encoder(CAVMAE, ("audio", "image"), weights, "cpu")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("media")
    images = [write_image(root / f"pic{i}.png", seed=i, size=48) for i in range(2)]
    sounds = [write_audio(root / f"tone{i}.wav", seed=i, seconds=0.5) for i in range(2)]
    return {"root": [root], "image": images, "audio": sounds}


@pytest.fixture(scope="module")
def both_index(tmp_path_factory, weights: Path, media) -> tuple[Path, list[dict], list[dict]]:
    """A C-MCR index, then the CAV-MAE backend added to it: the two run reports and the index folder."""
    index = tmp_path_factory.mktemp("index")
    common = ("--index-dir", index, "--weights-dir", weights, "--quiet", "--json")
    first = json.loads(_cli("index", media["root"][0], *common))
    second = json.loads(_cli("index", media["root"][0], *common, "--backend", "cavmae"))
    third = json.loads(_cli("index", media["root"][0], *common, "--backend", "both"))
    return index, [first, second, third], []


def test_adding_cavmae_embeds_only_what_is_missing(both_index) -> None:
    index, (first, second, third), _ = both_index
    assert first["embedded"] == {"cmcr": 4}
    assert second["embedded"] == {"cmcr": 0, "cavmae": 4}  # the C-MCR rows were kept, not re-embedded
    assert third["embedded"] == {"cmcr": 0, "cavmae": 0}
    assert second["counts"] == {"audio": 2, "image": 2, "pointcloud": 0, "cavmae_audio": 2, "cavmae_image": 2}
    manifest = load_manifest(index)
    assert manifest.backends() == ["cmcr", "cavmae"]
    assert manifest.modalities["cavmae_audio"].encoder_fingerprint is not None
    assert {"cavmae_audio.native", "cavmae_image.native"} <= set(second["indexes"])


def test_both_backends_in_json_and_cavmae_list_is_brute_force(both_index, weights, media, cavmae) -> None:
    index = both_index[0]
    query = media["audio"][0]
    out = _cli("query", "--audio", query, "--backend", "both", "--json", "--index-dir", index, "--weights-dir", weights)
    results = json.loads(out)
    got = {(r["backend"], r["target"]): r for r in results}
    assert set(got) == {(b, t) for b in ("cmcr", "cavmae") for t in ("audio", "image")}
    assert [r["backend"] for r in results] == ["cmcr", "cmcr", "cavmae", "cavmae"]
    q = cavmae.encode_files("audio", [query])[0]
    for target in ("audio", "image"):
        files = media[target]
        vectors = cavmae.encode_files(target, files)
        scores = vectors @ q
        want = [str(files[i]) for i in np.argsort(-scores, kind="stable")]
        r = got[("cavmae", target)]
        assert r["space"] == "cavmae" and r["bridge"] is None
        assert [h["path"] for h in r["hits"]] == want
        assert [h["modality"] for h in r["hits"]] == [target] * len(files)
        np.testing.assert_allclose([h["score"] for h in r["hits"]], np.sort(scores)[::-1], atol=1e-4)
    assert got[("cmcr", "image")]["space"].startswith("shared:")
    # the stored CAV-MAE vectors are the encoder's own
    paths, stored, _ = MediaStore(index).vectors("cavmae_image", "native")
    order = [paths.index(str(p)) for p in media["image"]]
    np.testing.assert_allclose(stored[order], cavmae.encode_files("image", media["image"]), atol=1e-5)


def test_both_backends_table_titles(both_index, weights, media) -> None:
    index = both_index[0]
    out = _cli(
        "query",
        "--image",
        media["image"][1],
        "--backend",
        "both",
        "--target",
        "image",
        "--index-dir",
        index,
        "--weights-dir",
        weights,
    )
    assert "cmcr: image -> image" in out and "cavmae: image -> image" in out


def test_text_with_cavmae_is_one_line_and_both_says_cmcr_only(both_index, weights) -> None:
    index = both_index[0]
    out = _cli(
        "query", "--text", "a dog", "--backend", "cavmae", "--index-dir", index, "--weights-dir", weights, code=1
    )
    assert len(out.strip().splitlines()) == 1 and "C-MCR" in out and "no text tower" in out
    result = runner.invoke(
        app,
        [
            "query",
            "--text",
            "a dog",
            "--backend",
            "both",
            "--json",
            "--index-dir",
            str(index),
            "--weights-dir",
            str(weights),
        ],
    )
    assert result.exit_code == 0, result.output
    assert {r["backend"] for r in json.loads(result.stdout)} == {"cmcr"}
    assert "C-MCR" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_eval_retrieval_both_backends_one_table(tmp_path, weights, media, cavmae) -> None:
    pairs = tmp_path / "pairs.csv"
    rows = [f"{a},{i}" for a, i in zip(media["audio"], media["image"], strict=True)]
    pairs.write_text("audio,image\n" + "\n".join(rows) + "\n")
    table = _cli("eval", "retrieval", "--pairs", pairs, "--backend", "both", "--weights-dir", weights)
    assert table.count("N = 2 pairs") == 1
    for label in ("cmcr: audio -> image", "cmcr: image -> audio", "cavmae: audio -> image", "cavmae: image -> audio"):
        assert label in table
    report = json.loads(
        _cli("eval", "retrieval", "--pairs", pairs, "--backend", "cavmae", "--json", "--weights-dir", weights)
    )
    # by hand, not by the metrics code under test: 2 pairs, so each true match ranks 1 or 2 (a tie counts
    # against it); mAP is the mean of 1/rank, R@1 the share ranked first, R@5 and R@10 every pair
    sim = cavmae.encode_files("audio", media["audio"]) @ cavmae.encode_files("image", media["image"]).T

    def by_hand(s: np.ndarray) -> dict[str, float]:
        ranks = np.array([1 + int(s[i, 1 - i] >= s[i, i]) for i in range(2)])
        return {"mAP": 100 * float(np.mean(1 / ranks)), "R1": 100 * float(np.mean(ranks == 1)), "R5": 100.0}

    for direction, s in (("q2g", sim), ("g2q", sim.T)):
        got = report["backends"]["cavmae"][direction]
        assert got == pytest.approx({**by_hand(s), "R10": 100.0, "n": 2}, abs=1e-6), (direction, sim)


def test_one_backend_gives_its_lists_only(both_index, weights, media) -> None:
    """--id (stored vectors, no model loads): cavmae alone, the default (cmcr) alone, both."""
    index, item = both_index[0], str(media["image"][0])
    common = ("--id", item, "--json", "--index-dir", index, "--weights-dir", weights)
    only = json.loads(_cli("query", *common, "--backend", "cavmae"))
    assert [(r["backend"], r["target"]) for r in only] == [("cavmae", "image"), ("cavmae", "audio")]
    assert [h["path"] for h in only[0]["hits"]] == [str(media["image"][1])]  # the item itself left out
    default = json.loads(_cli("query", *common))
    assert {r["backend"] for r in default} == {"cmcr"}
    both = json.loads(_cli("query", *common, "--backend", "both"))
    assert [r["backend"] for r in both] == ["cmcr"] * len(default) + ["cavmae", "cavmae"]
