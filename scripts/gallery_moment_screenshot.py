"""Make docs/gallery-moment.jpg: the web gallery playing a found moment of a video (README, "Videos and long
recordings"). Needs the dev extra (playwright) and Debian's chromium.

The media are generated (tests/media/videos.py's video: a grey shot with a red square from 8 to 12 s, a
tone from 14 to 17 s; a few pictures; a recording) and indexed with the test-only FAKE encoder, so the
picture shows the page, not a model's ranking. The query is a picture of the red square (a frame of the
video); the 8-12 s moment it finds is played from its media fragment and paused one second in.

    PYTHONPATH=. .venv/bin/python scripts/gallery_moment_screenshot.py [--out docs/gallery-moment.jpg]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from avsearch.indexing.pipeline import index_folder
from avsearch.media.video_frame import frame_at
from avsearch.serve.app import create_app
from tests.media.videos import make_video
from tests.search.conftest import make_bridge
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_audio, write_image
from tests.serve.test_browser import CHROMIUM, CHROMIUM_ARGS, _serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/gallery-moment.jpg"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="avsearch-shot-") as tmp:
        root = Path(tmp)
        media = root / "media"
        media.mkdir()
        make_video(media / "garden walk.mp4", seconds=20.0, size=(320, 180), square=(8.0, 12.0), tone=(14.0, 17.0))
        for i in range(3):
            write_image(media / f"photo{i}.jpg", i, size=160)
        write_audio(media / "field recording.wav", 4, seconds=24.0)
        query = root / "red square.png"
        frame_at(media / "garden walk.mp4", 9.0).save(query)
        index_folder(media, root / "index", [make_bridge(root / "av.safetensors")], encoder_loader=FakeLoader())
        with _serving(create_app(root / "index", encoder_loader=FakeLoader())) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1100, "height": 860})
            page.goto(url + "?k=12&target=all")
            page.set_input_files("#file", str(query))  # search by a picture of the red square
            page.wait_for_function("() => /^\\d+ results? in/.test(document.getElementById('status').textContent)")
            video = page.locator("li.card.moment[data-start='8'] video").first
            video.evaluate("v => v.play()")
            page.wait_for_function("v => v.currentTime >= 9 && v.readyState >= 2", arg=video.element_handle())
            video.evaluate("v => v.pause()")
            video.hover()  # the player's controls on screen, with its time
            page.wait_for_timeout(500)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), type="jpeg", quality=82)
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
