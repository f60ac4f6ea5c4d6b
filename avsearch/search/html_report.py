"""A self-contained HTML page of one query's results (`avsearch query --html out.html`): no server needed.

Pictures and point clouds appear as small JPEG thumbnails inlined as data: URIs (made here with PIL; a
cloud as a rendered dot preview), sounds as their waveform (inlined the same way) above an audio player
whose src is the file's file:// URL, so the page stays small and plays the originals where they lie. A
moment of a video or long recording is its frame at the moment's start (a recording's: its stretch of
waveform) as the poster of a <video> that plays the file from the moment's start to its end (a W3C media
fragment, #t=start,end), with the time range as text.
Every piece of text from the index (file names can hold <, quotes, non-UTF-8 bytes) is made printable
and HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import time
from pathlib import Path

from avsearch.atomic import write_text
from avsearch.errors import AvsearchError, InputError
from avsearch.media.audio import load_audio
from avsearch.media.detect import detect_kind
from avsearch.media.image import load_image
from avsearch.media.pointcloud import load_pointcloud
from avsearch.media.preview import render_cloud, render_waveform
from avsearch.media.video_frame import moment_picture
from avsearch.media.walk import printable
from avsearch.modalities import AUDIO, IMAGE, POINTCLOUD, VIDEO
from avsearch.search.moments import clock
from avsearch.search.results import Hit, ResultSet

log = logging.getLogger(__name__)

THUMB_SIDE = 160  # pixels, the longer side of an inlined thumbnail
JPEG_QUALITY = 75
_LABELS = {IMAGE: "Pictures", AUDIO: "Sounds", POINTCLOUD: "Point clouds"}
WAVEFORM_RATE = 8000  # Hz a sound is decoded at for its waveform picture


def write_html_report(results: list[ResultSet], out: Path, query_label: str) -> Path:
    """Write one query's results (one section per ResultSet, i.e. per target modality) to `out` as a
    single HTML file with inlined thumbnails; returns `out`.

    A hit whose file can no longer be read gets a "no preview" box, not an error. Raises InputError
    when `out` cannot be written.
    """
    out = Path(out)
    page = render_html_report(results, query_label)
    try:
        write_text(out, page)
    except OSError as exc:
        raise InputError(f"{printable(str(out))}: cannot write the HTML report ({exc.strerror or exc})") from exc
    return out


def render_html_report(results: list[ResultSet], query_label: str) -> str:
    """The report's HTML text (see write_html_report)."""
    label = _e(printable(query_label))
    total = sum(len(r.hits) for r in results)
    sections = [_section(r, i) for i, r in enumerate(results)] or ['<p class="empty">No results.</p>']
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>avsearch: {label}</title>",
            f"<style>{_CSS}</style></head><body>",
            f'<header><h1>avsearch results</h1><p class="query">{label}</p>',
            f'<p class="muted">{total} result{"" if total == 1 else "s"} in {len(results)} group(s), {stamp}</p>'
            "</header><main>",
            *sections,
            "</main></body></html>",
            "",
        ]
    )


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _section(rs: ResultSet, n: int) -> str:
    via = f"through the {rs.bridge['name']} bridge" if rs.bridge and rs.bridge.get("name") else f"in {rs.space}"
    heading = f"{_LABELS.get(rs.target, rs.target)} ({len(rs.hits)})"
    body = (
        '<ol class="grid">' + "".join(_card(h) for h in rs.hits) + "</ol>"
        if rs.hits
        else '<p class="empty">No matches.</p>'
    )
    return (
        f'<section class="group" id="group-{n}" data-target="{_e(rs.target)}" data-count="{len(rs.hits)}">'
        f'<h2>{_e(heading)}</h2><p class="muted small">{_e(via)}, {_e(rs.index_kind)} index</p>{body}</section>'
    )


def _card(hit: Hit) -> str:
    shown = printable(hit.path)
    name = _e(shown.rsplit("/", 1)[-1])
    url = _e(_file_url(hit.path))
    span = ""
    if hit.start is not None and hit.end is not None:
        data = _thumbnail(hit.path, hit.modality, hit.start, hit.end)
        when = clock(hit.start, hit.end)
        poster = f' poster="{data}"' if data else ""
        fragment = _e(f"#t={hit.start:g},{hit.end:g}")
        media = (
            f'<video class="moment" controls preload="none"{poster} src="{url}{fragment}"'
            f' aria-label="Play {name} from {_e(when)}"></video>'
        )
        more = f" · {hit.more} more moment{'' if hit.more == 1 else 's'} in this file" if hit.more else ""
        span = f'<p class="range">{_e(when + more)}</p>'
    elif hit.modality == AUDIO:
        data = _thumbnail(hit.path, hit.modality)
        wave = f'<img class="waveform" src="{data}" alt="Waveform of {name}">' if data else ""
        media = f'{wave}<audio controls preload="none" src="{url}" aria-label="Play {name}"></audio>'
    else:
        data = _thumbnail(hit.path, hit.modality)
        inner = f'<img src="{data}" alt="{name}">' if data else '<span class="nothumb">no preview</span>'
        media = f'<a class="thumb" href="{url}">{inner}</a>'
    return (
        f'<li class="card" data-modality="{_e(hit.modality)}">{media}'
        f'<p class="meta"><span class="rank">#{hit.rank}</span> <span class="name" title="{_e(shown)}">{name}</span>'
        f' <span class="score">{hit.score:.3f}</span></p>{span}</li>'
    )


def _file_url(path: str) -> str:
    """file:// URL of the file's exact bytes (percent-encoded, so any name, also non-UTF-8, stays a link)."""
    return Path(os.path.abspath(path)).as_uri()


def _thumbnail(path: str, modality: str, start: float | None = None, end: float | None = None) -> str | None:
    """A small JPEG as a data: URI, or None when the file cannot be decoded any more (moved, changed);
    start/end: a moment's range (its frame at start, or its stretch of waveform)."""
    try:
        if modality != POINTCLOUD and (start is not None or detect_kind(path) == VIDEO):
            img = moment_picture(path, start, end, THUMB_SIDE)
            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
        elif modality == IMAGE:
            img = load_image(path)
            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
        elif modality == POINTCLOUD:
            img = render_cloud(load_pointcloud(path), THUMB_SIDE)
        elif modality == AUDIO:  # its waveform: a page of sounds can be told apart at a glance
            img = render_waveform(load_audio(path, WAVEFORM_RATE), THUMB_SIDE)
        else:
            return None
    except (AvsearchError, OSError) as exc:
        log.warning("no thumbnail for %s: %s", printable(path), exc)
        return None
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """
:root{color-scheme:light dark;font-family:system-ui,sans-serif;font-size:15px}
body{margin:0 auto;max-width:1200px;padding:0 1rem 2rem}
h1{font-size:1.3rem;margin:1rem 0 .2rem}.query{font-size:1.1rem;margin:.2rem 0;overflow-wrap:anywhere}
.muted{color:#6b7479}.small{font-size:.8rem;margin:0 0 .5rem}.empty{font-style:italic;color:#6b7479}
.group{margin-top:1.2rem}h2{font-size:1.1rem;margin:0}
.grid{list-style:none;margin:0;padding:0;display:grid;gap:.8rem;grid-template-columns:repeat(auto-fill,minmax(180px,1fr))}
.card{border:1px solid #ccd2d5;border-radius:8px;padding:.5rem;display:flex;flex-direction:column;gap:.35rem}
.thumb{display:flex;align-items:center;justify-content:center;height:160px;overflow:hidden}
.thumb img{max-width:100%;max-height:100%}video.moment{width:100%;height:160px;background:#000;object-fit:contain}
.range{margin:0;font-size:.8rem;color:#6b7479;font-variant-numeric:tabular-nums}.nothumb{color:#6b7479;font-size:.8rem}audio{width:100%}
img.waveform{width:100%;height:64px;display:block}
.meta{display:flex;gap:.4rem;margin:0;font-size:.85rem;min-width:0}
.name{flex:1;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.score{font-variant-numeric:tabular-nums}
"""
