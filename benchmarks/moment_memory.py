"""Peak memory of indexing one long video: its moments prepared a chunk at a time ([ingest] moment_chunk)
against all at once, for a short and a long video.

A video of --minutes (tiny frames, 64 x 48, 2 fps, a new random colour every second so no frame collapses
into the one before; a 16 kHz noise sound track, or none with --no-sound) is generated into --cache, then each case runs
`index_folder` in a fresh process with the test-only FAKE encoder (tests/search/fake_encoder.py) whose
prepared items are padded to 150 KB, the size of a prepared CLIP frame (3 x 224 x 224 uint8), so that what
is held is what a real run holds. Printed: the process's peak RSS (ru_maxrss: mostly imports, the same
for every case), the largest RSS growth over the RSS before index_folder (sampled every 5 ms: what the
moments cost), the rows written and the run's seconds.
The bundled chunk (64) is compared with a chunk larger than the video (everything prepared together: the
behaviour before chunking).

Usage: .venv/bin/python benchmarks/moment_memory.py [--minutes 2,20] [--chunks 64,1000000]
       [--no-sound | --sound-only [--rate 48000] | --wav [--rate 48000]]  (--sound-only: an .mp4 of a sound
       track alone, 48 kHz noise resampled to the fake's 16 kHz: the sound track's own memory; --wav: a
       16-bit mono .wav of that noise, a long recording: 50 min at 48 kHz is over [audio] max_samples)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAD = 150_000 // 4  # float32 values: a prepared CLIP frame's 150 KB

CASE = """
import json, os, resource, sys, threading, time
import numpy as np
from pathlib import Path
sys.path.insert(0, {root!r})
from avsearch.indexing.pipeline import index_folder
from avsearch.store.config import IngestConfig, SearchConfig
from tests.search.conftest import make_bridge
from tests.search import fake_encoder as fake

class Padded(fake.FakePreparer):
    def from_image(self, image):
        return np.resize(super().from_image(image), {pad})
    def from_samples(self, wave):
        return np.resize(super().from_samples(wave), {pad})

class Encoder(fake.FakeEncoder):
    def preparer(self, modality):
        super().preparer(modality)
        return Padded(modality)
    def encode_prepared(self, modality, items):
        return super().encode_prepared(modality, [x[:256] for x in items])

class Loader(fake.FakeLoader):
    def __call__(self, name, towers):
        space = "clip" if name.startswith("clip") else "clap"
        return self.loaded.setdefault((name, towers), Encoder(name, space, towers))

folder, index, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
bridge = make_bridge(Path(index).with_suffix(".bridge.safetensors"))
config = SearchConfig(ingest=IngestConfig(moment_chunk=chunk))

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

base, most, done = rss(), [0.0], threading.Event()

def watch():
    while not done.wait(0.005):
        most[0] = max(most[0], rss())

threading.Thread(target=watch, daemon=True).start()
s = index_folder(folder, index, bridge, encoder_loader=Loader(), config=config)
done.set()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {{"rows": s.counts, "failed": s.failed, "peak_mb": peak, "growth_mb": most[0] - base, "seconds": s.seconds}}
print(json.dumps(out))
"""


def generate(path: Path, minutes: float, with_sound: bool, frames: bool = True, rate: int = 16_000) -> None:
    seconds = int(minutes * 60)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        if with_sound:
            sound = out.add_stream("aac", rate=rate)
            sound.layout = "mono"
        if frames:
            _frames(out, seconds, rng)
        if not with_sound:
            return
        for start in range(0, seconds, 60):  # a minute of noise at a time
            noise = (0.1 * rng.standard_normal(min(60, seconds - start) * rate)).astype(np.float32)
            for at in range(0, noise.size, rate):
                frame = av.AudioFrame.from_ndarray(noise[None, at : at + rate], format="flt", layout="mono")
                frame.sample_rate = rate
                out.mux(sound.encode(frame))
        out.mux(sound.encode(None))


def generate_wav(path: Path, minutes: float, rate: int) -> None:
    """A 16-bit mono .wav of noise, written a minute at a time."""
    rng = np.random.default_rng(0)
    seconds = int(minutes * 60)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        for start in range(0, seconds, 60):
            out.write((0.1 * rng.standard_normal(min(60, seconds - start) * rate)).astype(np.float32))


def _frames(out, seconds: int, rng: np.random.Generator) -> None:  # noqa: ANN001 - av OutputContainer
    video = out.add_stream("libx264", rate=2)
    video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
    for _ in range(seconds):
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.broadcast_to(colour, (48, 64, 3)).copy(), format="rgb24")
            out.mux(video.encode(frame))
    out.mux(video.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="2,20")
    parser.add_argument("--chunks", default="64,1000000")
    parser.add_argument("--no-sound", action="store_true", help="videos without a sound track: frames only")
    parser.add_argument(
        "--sound-only", action="store_true", help="an .mp4 holding a sound track only (48 kHz unless --rate)"
    )
    parser.add_argument("--wav", action="store_true", help="a .wav recording (48 kHz unless --rate)")
    parser.add_argument("--rate", type=int, default=None, help="the sound track's sample rate (Hz)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/avsearch/bench-moment-memory")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}")
    rate = args.rate or (48_000 if args.sound_only or args.wav else 16_000)
    silent = " (no sound)" if args.no_sound else f" (its sound only, {rate} Hz)" if args.sound_only else ""
    silent = f" (a .wav recording, {rate} Hz)" if args.wav else silent
    kind = "-silent" if args.no_sound else f"-sound{rate}" if args.sound_only else f"-wav{rate}" if args.wav else ""
    for minutes in [float(m) for m in args.minutes.split(",")]:
        what = "recording" if args.wav else "video"
        same = rate == 16_000 or args.sound_only or args.wav
        folder = args.cache / f"{minutes:g}min{kind}{'' if same else rate}"
        video = folder / ("long.wav" if args.wav else "long.mp4")
        if not video.exists():
            folder.mkdir(parents=True, exist_ok=True)
            if args.wav:
                generate_wav(video, minutes, rate)
            else:
                generate(video, minutes, not args.no_sound, frames=not args.sound_only, rate=rate)
        for chunk in [int(c) for c in args.chunks.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                code = CASE.format(root=str(ROOT), pad=PAD)
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                run = [sys.executable, "-c", code, str(folder), str(Path(tmp) / "index"), str(chunk)]
                done = subprocess.run(run, capture_output=True, text=True, env=env, check=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"{minutes:g} min {what}{silent}, moment_chunk {chunk}: peak RSS {result['peak_mb']:.0f} MB, "
                f"RSS growth during index_folder {result['growth_mb']:.0f} MB, "
                f"rows {result['rows']}, {result['seconds']:.1f} s, failed {result['failed']}"
            )


if __name__ == "__main__":
    main()
