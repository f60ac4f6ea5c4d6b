"""The web gallery in a real browser: Debian's chromium (/usr/bin/chromium) driven by playwright for Python
against the real server (uvicorn running create_app in a thread on a free loopback port).

The index is made here from a few pictures, sounds, a point cloud and a picture with a hostile name, with
the FAKE encoder loader (tests/search/fake_encoder.py: real decoders, deterministic vectors, not a model)
and random-weight bridges: the test checks the page and the API it calls, not search quality. The server
gets the same fake loader, so uploads are encoded the same way. A screenshot is saved under the test's
tmp_path (nothing is written into the source tree).

Skipped, with the reason, when /usr/bin/chromium or the playwright package is missing, except in CI (the
environment variable CI set, as CI services and .ci/run do): there a missing browser fails the tests, so a
CI run that could not install chromium does not pass without them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from avsearch.indexing.pipeline import index_folder
from tests.search.conftest import make_3d_bridge, make_bridge
from tests.search.fake_encoder import FakeLoader
from tests.search.media_factory import write_audio, write_cloud, write_image

CHROMIUM = Path("/usr/bin/chromium")
# Without these, chromium on a closed network waits on connections it tries by itself (QUIC, updates, sync).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = "<img src=x onerror=\"window.__pwned=1\">'q'.png"
TIMEOUT_MS = 15_000

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
except ImportError:  # the dev extra not installed
    sync_playwright = None


def in_ci() -> bool:
    """Whether this run is CI's (CI services set CI=true; .ci/run sets it when it is not set)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    if sync_playwright is None:
        return "playwright (Python package) is not installed"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@pytest.fixture(scope="module", autouse=True)
def _a_browser_or_a_reason() -> None:
    why = missing_browser()
    if why is not None and in_ci():
        pytest.fail(f"{why}: CI runs the browser tests (.ci/run installs chromium as root on Debian)")
    if why is not None:
        pytest.skip(why)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gallery-media")
    made = {f"img{i}": write_image(root / "pictures" / f"img{i}.png", i, size=96) for i in range(5)}
    # Sounds long enough that a playing <audio> visibly advances.
    made |= {f"snd{i}": write_audio(root / "sounds" / f"snd{i}.wav", i, seconds=3.0) for i in range(3)}
    made["cloud"] = write_cloud(root / "shapes" / "shape0.npy", 0)
    made["hostile"] = write_image(root / "pictures" / HOSTILE, 9, size=96)
    made["root"] = root
    return made


@contextlib.contextmanager
def _serving(app: object) -> Iterator[str]:
    """`app` served by uvicorn on 127.0.0.1:<free port> in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # the port is held from here on: no race with other processes
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def server(media: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app over a fresh index, served by uvicorn on 127.0.0.1:<free port>; yields its base URL."""
    from avsearch.serve.app import create_app

    work = tmp_path_factory.mktemp("gallery-index")
    bridges = [make_bridge(work / "av.safetensors"), make_3d_bridge(work / "3d.safetensors")]
    index_folder(media["root"], work / "index", bridges, encoder_loader=FakeLoader())
    with _serving(create_app(work / "index", encoder_loader=FakeLoader())) as url:
        yield url


@pytest.fixture(scope="module")
def two_backends(media: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same media indexed with both backends, C-MCR and CAV-MAE (both test-only fake encoders)."""
    from avsearch.serve.app import create_app

    work = tmp_path_factory.mktemp("gallery-both")
    bridges = [make_bridge(work / "av.safetensors"), make_3d_bridge(work / "3d.safetensors")]
    index_folder(media["root"], work / "index", bridges, encoder_loader=FakeLoader(), backend="both")
    with _serving(create_app(work / "index", encoder_loader=FakeLoader())) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@dataclass
class Seen:
    """What a page did besides drawing: script errors and dialogs (problems), every URL it asked for."""

    problems: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def page(browser: Browser, server: str, seen: Seen) -> Iterator[Page]:
    """A fresh page (its own context: no cache, no history) that reports into `seen`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.on("pageerror", lambda exc: seen.problems.append(f"page error: {exc}"))
    pg.on("dialog", lambda d: (seen.problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.on("request", lambda r: seen.requested.append(r.url))
    yield pg
    context.close()


def _groups(page: Page) -> dict[str, list[str]]:
    """target -> the ids of its result cards, in page order."""
    return page.eval_on_selector_all(
        "section.group",
        "ss => Object.fromEntries(ss.map(s => [s.dataset.target, [...s.querySelectorAll('li.card')]"
        ".map(li => li.dataset.id)]))",
    )


def _wait_results(page: Page, first_name: str | None = None) -> None:
    """Until the search under way (#results aria-busy) has ended and the status line reports results (and
    the first picture or sound is `first_name`, if given). Call it after something shows a search started."""
    page.wait_for_function(
        "() => document.getElementById('results').getAttribute('aria-busy') === 'false' && ("
        "/^\\d+ results? in \\d+ group/.test(document.getElementById('status').textContent)"
        " || !document.getElementById('error').hidden)"
    )
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    if first_name is not None:
        expect(page.locator("section.group li.card .name").first).to_have_text(first_name)


def _thumbnails_loaded(page: Page, target: str) -> list[int]:
    page.wait_for_function(
        "t => [...document.querySelectorAll(`section[data-target=${t}] img`)].every(i => i.complete)", arg=target
    )
    return page.eval_on_selector_all(f"section[data-target={target}] img", "is => is.map(i => i.naturalWidth)")


def _drop_file(page: Page, path: Path, mime: str) -> None:
    """A real drop: a DataTransfer holding the file, dispatched on the drop zone as a 'drop' DragEvent."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    transfer = page.evaluate_handle(
        """([data, name, mime]) => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: mime}));
            return dt;
        }""",
        [data, path.name, mime],
    )
    page.dispatch_event("#drop", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("#drop")).to_have_class(re.compile(r"\bover\b"))
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def test_gallery_search_play_more_like_this_reload(
    page: Page, seen: Seen, server: str, media: dict[str, Path], tmp_path: Path
) -> None:
    page.goto(server)
    expect(page.locator("#info")).to_contain_text("6 pictures")  # index info from /api/info
    expect(page.locator("#info")).to_contain_text("audio_visual")

    # 1. Pick a picture with the file input: its own row comes first among the pictures (the same vector).
    page.set_input_files("#file", str(media["img2"]))
    _wait_results(page, first_name="img2.png")
    groups = _groups(page)
    assert list(groups) == ["image", "audio", "pointcloud"] and len(groups["image"]) == 6
    assert len(groups["audio"]) == 3 and len(groups["pointcloud"]) == 1
    expect(page.locator("section[data-target=image] li.card .score").first).to_have_text("1.000")
    assert all(w > 0 for w in _thumbnails_loaded(page, "image"))
    assert _thumbnails_loaded(page, "pointcloud")[0] > 0  # the cloud's rendered preview
    query = parse_qs(urlparse(page.url).query)
    assert set(query) == {"k", "target"} and query["target"] == ["all"]  # a URL cannot hold the file: no query

    # 2. Drop a sound on the drop zone: the sounds come back with that sound first.
    _drop_file(page, media["snd1"], "audio/wav")
    expect(page.locator("#query")).to_contain_text("snd1.wav")
    expect(page.locator("section[data-target=audio] li.card .name").first).to_have_text("snd1.wav")
    expect(page.locator("section[data-target=audio] li.card .score").first).to_have_text("1.000")

    # 3. Play the first sound: the player advances (the media endpoint serves it, with ranges).
    audio = page.locator("section[data-target=audio] audio").first
    audio.evaluate("a => { window.__playing = false; a.addEventListener('playing', () => window.__playing = true); }")
    audio.evaluate("a => a.play()")
    page.wait_for_function("() => window.__playing")
    page.wait_for_function("a => a.currentTime > 0.2 && !a.error", arg=audio.element_handle())

    # 4. "More like this" on the second picture, by keyboard: the URL names its id, the other pictures come
    #    back (the item itself is left out of its own modality), and focus lands on the first result group.
    second = page.locator("section[data-target=image] li.card").nth(1)
    item_id = second.get_attribute("data-id")
    item_name = second.locator(".name").text_content()
    second.get_by_role("button", name=f"More like {item_name}").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"[?&]id={item_id}\b"))
    _wait_results(page)
    expect(page.locator("#query")).to_contain_text(f"More like {item_name}")  # the name, from /api/items/{id}
    page.wait_for_function("() => document.activeElement && document.activeElement.tagName === 'H2'")
    similar = _groups(page)
    assert list(similar) == ["image", "audio", "pointcloud"] and len(similar["image"]) == 5
    assert item_id not in similar["image"] and len(similar["audio"]) == 3
    page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)

    # 5. Reload the shared URL: the same results, in the same order.
    url = page.url
    page.reload()
    _wait_results(page)
    assert page.url == url and _groups(page) == similar

    # 6. Text by keyboard (Enter submits), then Back returns to the id search.
    page.select_option("#target", "audio")
    page.focus("#text")
    page.keyboard.type("rain on a tin roof")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"[?&]text=rain\+on\+a\+tin\+roof\b.*target=audio"))
    _wait_results(page)
    assert list(_groups(page)) == ["audio"]
    page.go_back()
    expect(page.locator("#query")).to_contain_text(f"More like {item_name}")  # set as the search starts
    _wait_results(page)
    assert _groups(page) == similar

    assert seen.problems == []
    # Off-line: every request went to this server (or to page-made data:/blob: URLs), nothing else.
    strays = [u for u in seen.requested if not u.startswith((server, "data:", "blob:"))]
    assert strays == []


def test_filters_travel_in_the_url(page: Page, seen: Seen, server: str) -> None:
    page.goto(f"{server}?text=anything&k=10&target=all")
    _wait_results(page)
    assert len(_groups(page)["image"]) == 6
    page.fill("#where", "folder = 'sounds'")
    page.fill("#glob", "*/snd[12].wav")
    page.press("#glob", "Enter")  # Enter in any field submits: the same text, the new filters
    page.wait_for_url(re.compile(r"where=folder\+%3D\+%27sounds%27.*glob=\*%2Fsnd%5B12%5D\.wav"))
    _wait_results(page)
    filtered = _groups(page)
    assert filtered["image"] == [] and filtered["pointcloud"] == [] and len(filtered["audio"]) == 2
    expect(page.locator("section[data-target=audio] .name")).to_have_text(["snd1.wav", "snd2.wav"], ignore_case=False)

    page.reload()  # the filters come back into the form, and the same results
    _wait_results(page)
    assert page.input_value("#where") == "folder = 'sounds'" and page.input_value("#glob") == "*/snd[12].wav"
    assert _groups(page) == filtered

    # "More like this" keeps the filters; new filters re-run the same id search (Enter in a filter field).
    page.get_by_role("button", name="More like snd1.wav").click()
    page.wait_for_url(re.compile(r"[?&]id=[0-9a-f]{32}&.*where=.*glob="))
    _wait_results(page)
    expect(page.locator("section[data-target=audio] .name")).to_have_text(["snd2.wav"])
    page.fill("#glob", "*.wav")
    page.press("#glob", "Enter")
    page.wait_for_url(re.compile(r"[?&]id=[0-9a-f]{32}&.*glob=\*\.wav"))
    expect(page.locator("section[data-target=audio] .name")).to_have_text(["snd2.wav", "snd0.wav"])

    page.fill("#where", "folder = ")  # not an expression: the server's reason, as one line
    page.press("#where", "Enter")
    expect(page.locator("#error")).to_be_visible()
    answer = httpx.get(f"{server}api/search", params={"text": "anything", "where": "folder ="})  # trimmed, as sent
    api_error = answer.json()["error"]
    expect(page.locator("#error")).to_have_text(api_error)
    assert seen.problems == []


def test_api_errors_show_as_one_line(page: Page, seen: Seen, server: str) -> None:
    missing = "0" * 32  # a well-formed id that names no row: the API's 404
    api_error = httpx.get(f"{server}api/items/{missing}/similar").json()["error"]
    page.goto(f"{server}?id={missing}&k=5")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_have_text(api_error)
    assert page.locator("section.group").count() == 0 and "\n" not in page.locator("#error").inner_text()

    # A file that is no media at all: the server decodes it, refuses it, and the page says why.
    page.set_input_files("#file", files=[{"name": "notes.wav", "mimeType": "audio/wav", "buffer": b"hello " * 50}])
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("notes.wav")  # the reason names the upload, by its name
    expect(page.locator("#status")).to_have_text("")
    assert seen.problems == []


def test_hostile_file_name_is_shown_as_text(page: Page, seen: Seen, server: str) -> None:
    page.goto(f"{server}?text=anything&k=10&target=image")
    _wait_results(page)
    names = page.locator("section[data-target=image] li.card .name").all_text_contents()
    assert HOSTILE in names  # literally, quotes and angle brackets included
    card = page.locator("li.card", has=page.locator(".name", has_text=HOSTILE))
    assert card.locator("img").count() == 1 and card.locator("img").get_attribute("alt") == HOSTILE
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    assert seen.problems == []


def test_keyboard_order_and_labels(page: Page, server: str) -> None:
    page.goto(f"{server}?text=anything&k=3&target=image")
    _wait_results(page)
    for control in ("#file", "#text", "#k", "#target", "#where", "#glob"):  # every input has a label
        assert page.locator(f"label[for={control[1:]}]").count() == 1, control
    assert page.locator("#status").get_attribute("aria-live") == "polite"
    # Tab from the last filter walks the results in page order: each thumbnail's link, then its button.
    page.focus("#glob")
    seen = []
    for _ in range(8):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("() => document.activeElement.closest('li.card')?.dataset.id ?? null"))
    cards = [i for ids in _groups(page).values() for i in ids]
    walked = [i for i in seen if i is not None]
    assert walked[:4] == [cards[0], cards[0], cards[1], cards[1]]
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")  # focus is visible


def test_two_backends_side_by_side(browser: Browser, two_backends: str, server: str, media: dict) -> None:
    """An index with C-MCR and CAV-MAE: the backend choice appears, "both" shows each target's two lists
    side by side, and the choice travels in the URL. An index with one backend shows no choice."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server)
    expect(page.locator("#info")).not_to_have_text("")
    expect(page.locator("#backend-field")).to_be_hidden()
    page.goto(two_backends)
    expect(page.locator("#backend-field")).to_be_visible()
    expect(page.locator("#info")).not_to_contain_text("cavmae")  # the same files, counted once
    page.select_option("#backend", "both")
    page.set_input_files("#file", str(media["snd1"]))
    pair = page.locator("#results .pair").filter(has=page.locator("section[data-target=image]"))
    expect(pair.locator("section")).to_have_count(2)
    assert [pair.locator("section").nth(i).get_attribute("data-backend") for i in range(2)] == ["cmcr", "cavmae"]
    expect(pair.locator("section").nth(1).locator("h2")).to_contain_text("CAV-MAE")
    expect(pair.locator("section").nth(1).locator("li.card")).to_have_count(6)
    first = pair.locator("section").nth(1).locator("li.card").first
    first.locator("button.more:not(.where)").click()  # more like this, still with both backends
    expect(page).to_have_url(re.compile(r"backend=both"))
    page.reload()
    expect(page.locator("#backend")).to_have_value("both")
    expect(page.locator("#results .pair")).not_to_have_count(0)
    context.close()


@pytest.mark.slow  # the real CLIP and CLAP architectures (random weights) index 9 files and embed crops
def test_where_is_it_shows_the_sound_in_a_picture_result(
    browser: Browser, av_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """ "Where is it?" on a picture result of an uploaded sound: the overlay replaces the thumbnail and the
    best box's score is shown. The bridge is the test-only controlled one of tests/localize/synthetic.py
    (sound k maps onto patch k), so a box on the sound's own patch scores near 1, above the whole picture."""
    from avsearch.serve.app import create_app
    from tests.localize.synthetic import build_world, link_av_weights

    root = tmp_path_factory.mktemp("gallery-where")
    world = build_world(root / "media", link_av_weights(av_weights_dir, root / "weights"), n_patches=3)
    index_folder(root / "media", root / "index", [world.weights / "clap_clip.pt"], weights_dir=world.weights)
    with _serving(create_app(root / "index", weights_dir=world.weights, device="cpu")) as url:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.set_input_files("#file", str(world.sounds[1]))
        card = page.locator("section[data-target=image] li.card").filter(has_text="scene1.png")
        expect(page.locator("section[data-target=audio] li.card button.where")).to_have_count(0)  # pictures only
        card.locator("button.where").click()
        expect(card).to_have_class(re.compile(r"\blocalized\b"), timeout=120_000)
        assert card.locator("img").get_attribute("src").startswith("data:image/png;base64,")
        expect(page.locator("#status")).to_contain_text("Best box in scene1.png")
        status = page.locator("#status").inner_text()  # "... score B (whole picture W)"
        best, whole = (float(x) for x in re.findall(r"(?:score|picture) (-?[0-9.]+)", status))
        assert best > 0.99 and best > whole, status  # the sound's own patch, above the whole picture
        expect(card.locator("button.where")).to_have_text(f"Best box {best:.3f}")
        page.screenshot(path=str(root / "where.png"))
        page.context.close()


def test_weaker_matches_wait_behind_a_button(browser: Browser, media: dict, tmp_path: Path) -> None:
    """With a calibrated bridge, sound -> pictures shows the hits above the calibration's 0.5 level with
    their percentage; the weaker ones appear (marked weak) only after "Show N weaker matches". An
    uncalibrated list (text -> pictures, CLIP's own space) shows all and says so."""
    import numpy as np

    from avsearch.bridge.calibrate import with_calibration
    from avsearch.bridge.confidence import fit_calibration
    from avsearch.bridge.io import load_bridge, save_calibrations
    from avsearch.search.query import query
    from avsearch.serve.app import create_app
    from avsearch.store.index import Index

    bridges = [make_bridge(tmp_path / "av.safetensors"), make_3d_bridge(tmp_path / "3d.safetensors")]
    index_folder(media["root"], tmp_path / "index", bridges, encoder_loader=FakeLoader())
    opened = Index.open(tmp_path / "index", encoder_loader=FakeLoader())
    [found] = query(opened, audio=media["snd1"], target="image", k=10)
    scores = np.array([h.score for h in found.hits])
    middle, spread = float(np.median(scores)), max(float(scores.std()), 1e-3)
    rng = np.random.default_rng(0)
    calibration = fit_calibration(
        rng.normal(middle + spread, spread / 4, 500), rng.normal(middle - spread, spread / 4, 500), "500 real pairs"
    )
    save_calibrations(bridges[0], with_calibration(load_bridge(bridges[0]), ("audio", "image"), calibration))
    strong = sum(s >= calibration.score_at_50 for s in scores)
    assert 0 < strong < len(scores)
    with _serving(create_app(tmp_path / "index", encoder_loader=FakeLoader())) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.set_input_files("#file", str(media["snd1"]))
        section = page.locator("section[data-target=image]")
        expect(section.locator("li.card")).to_have_count(int(strong))
        expect(section.locator(".calibration")).to_contain_text("calibrated from 500 real pairs")
        expect(section.locator("li.card .score").first).to_contain_text("%")
        button = section.locator("button.weaker")
        expect(button).to_have_text(
            f"Show {len(scores) - strong} weaker match{'' if len(scores) - strong == 1 else 'es'}"
        )
        button.click()
        expect(section.locator("li.card")).to_have_count(len(scores))
        expect(section.locator("li.card.weak")).to_have_count(len(scores) - int(strong))
        page.fill("#text", "a red square")
        page.press("#text", "Enter")
        text_section = page.locator("section[data-target=image]")
        expect(text_section.locator(".calibration")).to_contain_text("uncalibrated")
        expect(text_section.locator("button.weaker")).to_have_count(0)
        context.close()


def test_api_docs_render_with_the_network_blocked(browser: Browser, server: str) -> None:
    """/docs draws Swagger UI from files the server holds: every request off 127.0.0.1 is refused here,
    and the page still lists the endpoints."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    refused: list[str] = []

    def only_loopback(route) -> None:  # noqa: ANN001 - playwright's Route
        if route.request.url.startswith(server):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server + "docs")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/search" in p for p in paths) and any("/api/items/{item_id}/media" in p for p in paths)
    assert not refused, refused  # nothing was asked of another host
    context.close()


def test_sounds_show_their_waveforms(page: Page, seen: Seen, server: str) -> None:
    """Each sound's card shows its waveform (drawn by the server, cached like a thumbnail); two different
    sounds give two different pictures, compared pixel by pixel in the page."""
    page.goto(server + "?text=a+dog&target=audio")
    _wait_results(page)
    waves = page.locator("section[data-target=audio] li.card img.waveform")
    expect(waves).to_have_count(3)
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.waveform')].every(i => i.complete && i.naturalWidth)"
    )
    differ = page.evaluate(
        """() => {
            const pixels = [...document.querySelectorAll('img.waveform')].slice(0, 2).map((img) => {
                const c = document.createElement('canvas');
                c.width = img.naturalWidth; c.height = img.naturalHeight;
                const g = c.getContext('2d'); g.drawImage(img, 0, 0);
                return g.getImageData(0, 0, c.width, c.height).data;
            });
            let changed = 0;
            for (let i = 0; i < pixels[0].length; i += 4) changed += Math.abs(pixels[0][i] - pixels[1][i]) > 64;
            return changed;
        }"""
    )
    assert differ > 200, differ
    assert not seen.problems, seen.problems
