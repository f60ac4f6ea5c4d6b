"""kill -9 at random moments of `avsearch index`, then resume: is the index each time exactly the one an
uninterrupted run makes (rows, hashes, every vector bit for bit, FAISS builds matching their tables), and
do `query` and `info` answer on the interrupted index?

Media: N pictures (tests/search/media_factory.py); models: the real CLIP ViT-B/32 architecture with
random weights and a random audio-visual bridge, made the way the tests make them. Prints one line per
trial and the count of identical resumes.

    .venv/bin/python benchmarks/kill_resume.py --trials 10 --files 24
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.search.conftest import make_bridge  # noqa: E402
from tests.search.kill_harness import index_command, kill_and_resume, random_delays, reference_run  # noqa: E402
from tests.search.media_factory import write_image  # noqa: E402
from tests.weights_factory import make_clip_weights  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        weights = make_clip_weights(work / "weights")
        bridge = make_bridge(work / "av.safetensors")
        images = [write_image(work / "media" / f"img_{i:03d}.png", seed=i) for i in range(args.files)]
        reference, seconds = reference_run(index_command(work / "media", work / "ref", bridge, weights), work / "ref")
        print(f"uninterrupted run: {len(reference['image'])} pictures in {seconds:.1f} s")
        cmd = index_command(work / "media", work / "index", bridge, weights)
        trials = []
        for n, delay in enumerate(random_delays(args.trials, seconds, args.seed), start=1):
            t = kill_and_resume(cmd, work / "index", delay, reference, images[0])
            trials.append(t)
            when = "after it finished" if t.finished_first else f"{t.rows_at_kill} rows committed"
            print(
                f"trial {n:2d}: kill at {delay:5.1f} s ({when}); query/info answered: {t.answered}; "
                f"resumed index identical: {t.identical}"
            )
        identical = sum(t.identical and t.answered for t in trials)
        mid = sum(not t.finished_first for t in trials)
        print(f"{identical}/{len(trials)} identical after resume ({mid} kills landed before the run ended)")


if __name__ == "__main__":
    main()
