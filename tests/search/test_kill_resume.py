"""kill -9 during `avsearch index` (the real CLIP architecture, random weights): the interrupted index
answers query and info, and the resumed run ends with exactly the rows, vectors and FAISS builds of an
uninterrupted run. Two kill moments here; benchmarks/kill_resume.py runs many."""

from __future__ import annotations

from tests.search.kill_harness import index_command, kill_and_resume, reference_run
from tests.search.media_factory import write_image


def test_kill_9_then_resume_gives_the_uninterrupted_index(tmp_path, av_weights_dir, bridge_file) -> None:
    root = tmp_path / "media"
    images = [write_image(root / f"img_{i:02d}.png", seed=i) for i in range(10)]
    reference, seconds = reference_run(
        index_command(root, tmp_path / "ref", bridge_file, av_weights_dir), tmp_path / "ref"
    )
    assert len(reference["image"]) == len(images)
    cmd = index_command(root, tmp_path / "index", bridge_file, av_weights_dir)
    # mid-ingest: killed as soon as 3 of the 10 rows are committed (batch size 1: one commit per picture)
    mid = kill_and_resume(cmd, tmp_path / "index", 3 * seconds, reference, images[0], at_rows=3)
    assert not mid.finished_first and 3 <= mid.rows_at_kill < len(images), mid
    assert mid.answered and mid.identical, mid
    late = kill_and_resume(cmd, tmp_path / "index", 0.8 * seconds, reference, images[0])  # embedding or FAISS
    assert late.answered and late.identical, late


def test_a_second_writer_is_refused_and_queries_answer_during_a_run(tmp_path, av_weights_dir, bridge_file) -> None:
    import subprocess
    import time

    from tests.search.kill_harness import AVSEARCH, child_env

    root = tmp_path / "media"
    images = [write_image(root / f"img_{i:02d}.png", seed=i) for i in range(12)]
    index = tmp_path / "index"
    cmd = index_command(root, index, bridge_file, av_weights_dir)
    first = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (index / "manifest.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 1 and second.stderr.strip() == (
            f"avsearch: error: {index}: another `avsearch index` is writing this index"
        )
        query = [AVSEARCH, "query", "--id", str(images[0]), "--target", "image", "--index-dir", str(index)]
        during = subprocess.run(query, env=child_env(), capture_output=True, text=True, timeout=120)
        assert during.returncode in (0, 1) and "Traceback" not in during.stderr  # 1: its row is not in yet
        assert first.wait(timeout=300) == 0
    finally:
        first.kill()
    after = subprocess.run(
        [*query, "-k", "50", "--paths-only"], env=child_env(), capture_output=True, text=True, timeout=120
    )
    assert after.returncode == 0 and len(after.stdout.split()) == len(images) - 1
