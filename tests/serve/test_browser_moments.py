"""A found moment plays from its start in the gallery (issue 27), in Debian's chromium as
tests/serve/test_browser.py drives it (skipped without a browser, failed in CI).

The index is tests/serve/conftest.py's moment_library: a 12 s video whose red square shows from 4 to 7 s,
found by a text search as three moments (the fake encoder: the page is tested, not search quality).
Playing the 4-7 s moment must start the <video> at 4 s (within one frame step of the 10 fps video) and
stop it at the moment's end, well before the file's."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, expect

from avsearch.serve.app import create_app
from tests.search.fake_encoder import FakeLoader
from tests.serve.conftest import SQUARE_AT, MomentLibrary
from tests.serve.test_browser import (  # noqa: F401 - fixtures: the browser, or the reason there is none
    TIMEOUT_MS,
    _a_browser_or_a_reason,
    _serving,
    _wait_results,
    browser,
)

FRAME_STEP = 0.1  # seconds: the generated video's 10 fps


def test_a_moment_plays_from_its_start(
    browser: Browser,  # noqa: F811 - the fixture imported above
    moment_library: MomentLibrary,
    tmp_path: Path,
) -> None:
    with _serving(create_app(moment_library.index, encoder_loader=FakeLoader())) as url:
        context = browser.new_context(viewport={"width": 1100, "height": 700})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(url + "?text=a+red+square&k=10&target=image")
        _wait_results(page)
        moments = page.locator("section[data-target=image] li.card.moment")
        expect(moments).to_have_count(3)  # the video's three shots; the photo is a whole file
        card = moments.filter(has=page.locator(".range", has_text="00:04–00:07"))
        video = card.locator("video")
        expect(video).to_have_attribute("aria-label", "Play walk.mp4 from 00:04–00:07")
        # the poster is the frame at 4 s: red in the middle (the server's thumbnail of the moment)
        middle = page.evaluate(
            """async (src) => {
                const img = new Image(); img.src = src; await img.decode();
                const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
                const g = c.getContext('2d'); g.drawImage(img, 0, 0);
                return [...g.getImageData(img.width >> 1, img.height >> 1, 1, 1).data.slice(0, 3)];
            }""",
            video.evaluate("v => v.poster"),
        )
        assert middle[0] > 150 and middle[1] < 100, middle

        video.evaluate(
            """v => { window.__started = null; window.__stopped = null;
                v.addEventListener('playing', () => { window.__started ??= v.currentTime; });
                v.addEventListener('pause', () => { window.__stopped = v.currentTime; });
                v.playbackRate = 2; v.play(); }"""
        )
        page.wait_for_function("() => window.__started !== null")
        started = page.evaluate("() => window.__started")
        assert SQUARE_AT[0] - FRAME_STEP <= started <= SQUARE_AT[0] + FRAME_STEP, started
        page.wait_for_function("() => window.__stopped !== null")  # the fragment's end pauses it
        stopped = page.evaluate("() => window.__stopped")
        # checked on the player's time updates (4 a second at 2x: up to half a second late); the file runs to 12 s
        assert SQUARE_AT[1] - FRAME_STEP <= stopped < 11.0, stopped
        assert video.evaluate("v => v.error") is None
        page.screenshot(path=str(tmp_path / "moment.png"))
        assert problems == []
        context.close()


def test_where_is_it_on_a_video_moment_shows_the_overlay_on_its_frame(
    browser: Browser,  # noqa: F811 - the fixture imported above
    moment_library: MomentLibrary,
) -> None:
    """The page's side of "Where is it?" on a video moment (the server's side, on the decoded frame, is
    tests/serve/test_localize_api.py's): the request names the moment, and the answer's overlay becomes the
    player's poster. The localisation answer is a test stand-in (the route is fulfilled by playwright):
    the fake encoder cannot localise."""
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
    overlay = "data:image/png;base64," + pixel  # a 1x1 PNG
    asked: list[str] = []

    def answer(route) -> None:  # noqa: ANN001 - playwright's Route
        asked.append(route.request.post_data_buffer.decode("latin-1"))
        route.fulfill(json={"overlay": overlay, "best": {"score": 0.875}, "whole_image_score": 0.5})

    with _serving(create_app(moment_library.index, encoder_loader=FakeLoader())) as url:
        context = browser.new_context(viewport={"width": 1100, "height": 700})
        context.route("**/api/localize", answer)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url + "?k=10&target=image")
        page.set_input_files("#file", str(moment_library.recording))  # a sound: picture results offer "Where"
        card = page.locator("section[data-target=image] li.card.moment").first
        card.get_by_role("button", name="Where is the sound in walk.mp4?").click()
        expect(card).to_have_class(re.compile(r"\blocalized\b"))
        assert card.locator("video").evaluate("v => v.poster") == overlay
        expect(card.locator("video")).to_have_attribute("aria-label", re.compile(r"where the sound is .* 0\.875"))
        assert len(asked) == 1 and card.get_attribute("data-id") in asked[0]  # the moment's own id
        context.close()
