"""The manifest of upstream weight files and where each one is found.

Resolution order for a file (its published name, e.g. "630k-fusion-best.pt"):
1. the weights folder: `weights_dir` argument (--weights-dir), else env AVSEARCH_WEIGHTS;
2. the usual caches: the Hugging Face hub cache (also one copied from a connected machine), open_clip's
   ~/.cache/clip, laion_clap's package folder, avsearch's own ~/.cache/avsearch;
3. a download by the upstream mechanism (hub download into the hub cache, else the URL into
   ~/.cache/avsearch, resumable: avsearch.encoders.fetch), unless the machine is marked off-line
   (HF_HUB_OFFLINE=1 or AVSEARCH_OFFLINE=1);
4. otherwise WeightsMissingError naming the file and where to get it.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from avsearch.errors import ConfigError, InputError, WeightsMissingError
from avsearch.settings import ENV_WEIGHTS, configs_dir, load_settings

if TYPE_CHECKING:
    from avsearch.encoders.fetch import DownloadSettings

log = logging.getLogger(__name__)

ENV_OFFLINE = "AVSEARCH_OFFLINE"
# What a command wraps each download in (cli/live_progress.py: its live display steps aside while the
# download draws its own bar); the downloads themselves need none of it.
_around_downloads: list[Callable[[], AbstractContextManager[object]]] = []


@dataclass(frozen=True)
class WeightFile:
    """One upstream file under its published name (`name` may hold a sub-folder, e.g. roberta-base/)."""

    key: str
    name: str
    description: str
    size: str = "unknown"  # human size as published
    size_bytes: int | None = None  # exact size, when known
    sha256: str | None = None
    url: str | None = None
    hf_repo: str | None = None
    hf_files: tuple[str, ...] = ()
    hf_alias: str | None = None  # older repo id whose hub cache also counts (e.g. "roberta-base")
    cache_paths: tuple[str, ...] = ()
    how: str | None = None  # manual instructions when there is no automatic source

    @property
    def source(self) -> str:
        """Where to get the file, in words (shown by `avsearch weights` and in errors)."""
        if self.how:
            return self.how
        if self.url:
            return self.url
        if self.hf_repo:
            return f"hf://{self.hf_repo}/{self.hf_files[0] if self.hf_files else self.name}"
        return "unknown"


@dataclass(frozen=True)
class WeightStatus:
    file: WeightFile
    path: Path | None  # where it was found, None when missing
    where: str = field(default="missing")  # "weights folder", "hub cache", "cache", "missing"


@lru_cache(maxsize=1)
def manifest() -> dict[str, WeightFile]:
    """Every weight file avsearch knows, by key (from configs/encoders.toml [files.*])."""
    path = configs_dir() / "encoders.toml"
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    files: dict[str, WeightFile] = {}
    for key, entry in data.get("files", {}).items():
        entry = dict(entry)
        for tuple_field in ("hf_files", "cache_paths"):
            entry[tuple_field] = tuple(entry.get(tuple_field, ()))
        try:
            files[key] = WeightFile(key=key, **entry)
        except TypeError as exc:
            raise ConfigError(f"{path}: [files.{key}]: {exc}") from exc
    return files


def find_file(file_name: str) -> WeightFile:
    """The manifest entry for a published file name (or a manifest key)."""
    files = manifest()
    if file_name in files:
        return files[file_name]
    for wf in files.values():
        if wf.name == file_name or Path(wf.name).name == file_name:
            return wf
    names = ", ".join(wf.name for wf in files.values())
    raise ConfigError(f"unknown weight file {file_name!r}; known files: {names}")


def weights_folder(weights_dir: Path | str | None = None) -> Path | None:
    """The offline weights folder in force: the argument, else AVSEARCH_WEIGHTS, else None.

    A folder that is named but does not exist is an error of its own, not "every file missing".
    """
    folder = Path(weights_dir).expanduser() if weights_dir is not None else load_settings().weights_dir
    if folder is not None and not folder.is_dir():
        given = "--weights-dir" if weights_dir is not None else ENV_WEIGHTS
        raise InputError(f"{folder}: the weights folder ({given}) is not a folder that exists")
    return folder


def _is_offline() -> bool:
    return any(os.environ.get(var, "").strip() not in ("", "0") for var in ("HF_HUB_OFFLINE", ENV_OFFLINE))


def _in_folder(wf: WeightFile, folder: Path) -> Path | None:
    candidates = [folder / wf.name, folder / Path(wf.name).name]
    candidates += [folder / Path(wf.name).parent / f for f in wf.hf_files if Path(wf.name).parent.name]
    return next((p for p in candidates if p.is_file()), None)


def _in_caches(wf: WeightFile) -> Path | None:
    if wf.hf_repo:
        from huggingface_hub import try_to_load_from_cache

        repos = [wf.hf_repo] + ([wf.hf_alias] if wf.hf_alias else [])
        for repo in repos:
            for fname in wf.hf_files or (Path(wf.name).name,):
                hit = try_to_load_from_cache(repo_id=repo, filename=fname)
                if isinstance(hit, str) and Path(hit).is_file():
                    return Path(hit)
    for raw in wf.cache_paths:
        if "{laion_clap}" in raw:
            raw = raw.replace("{laion_clap}", _laion_clap_dir())
        path = Path(raw).expanduser()
        if path.is_file():
            return path
    own = load_settings().cache_dir / wf.name
    return own if own.is_file() else None


def _laion_clap_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("laion_clap")
    return str(Path(spec.origin).parent) if spec and spec.origin else "/nonexistent"


def locate(wf: WeightFile, weights_dir: Path | str | None = None) -> WeightStatus:
    """Find a file locally (weights folder, then caches) without any network access."""
    folder = weights_folder(weights_dir)
    if folder is not None and (hit := _in_folder(wf, folder)):
        return WeightStatus(wf, hit, "weights folder")
    if hit := _in_caches(wf):
        return WeightStatus(wf, hit, "cache")
    return WeightStatus(wf, None, "missing")


@contextmanager
def around_downloads(wrap: Callable[[], AbstractContextManager[object]]) -> Iterator[None]:
    """Within this block every download() runs inside `wrap()` (a command's live display pauses there)."""
    _around_downloads.append(wrap)
    try:
        yield
    finally:
        _around_downloads.remove(wrap)


def download(wf: WeightFile, *, progress: bool | None = None, settings: DownloadSettings | None = None) -> Path:
    """Fetch a file by its upstream mechanism into the usual cache; returns its path.

    Hub files go through huggingface_hub (the hub cache, with the hub's own progress bars and resume); plain
    URLs through avsearch.encoders.fetch into $AVSEARCH_CACHE: progress on stderr when it is a terminal
    (`progress` forces it on or off), resumed after a cut connection, checked against the size and SHA-256
    when known. Raises DownloadError (ChecksumMismatchError), OSError or a hub error on failure.
    """
    with ExitStack() as stack:
        for wrap in list(_around_downloads):
            stack.enter_context(wrap())
        return _download(wf, progress, settings)


def _download(wf: WeightFile, progress: bool | None, settings: DownloadSettings | None) -> Path:
    if wf.hf_repo:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=wf.hf_repo, filename=(wf.hf_files or (wf.name,))[0]))
    if not wf.url:
        raise OSError(f"no download source for {wf.name}")
    from avsearch.encoders.fetch import fetch_url  # only on a first run: keeps tqdm off the query path

    target = load_settings().cache_dir / wf.name
    return fetch_url(wf.url, target, sha256=wf.sha256, size=wf.size_bytes, progress=progress, settings=settings)


def _missing_message(wf: WeightFile, folder: Path | None, why: str) -> str:
    where = f"the weights folder {folder}" if folder else f"a weights folder (--weights-dir or {ENV_WEIGHTS})"
    return f"model weights {wf.name} not found ({why}); get it from {wf.source} and put it in {where}"


def resolve_weight(file_name: str, weights_dir: Path | str | None = None) -> Path:
    """Path of a weight file by published name (e.g. "pointbert_ULIP-2.pt"); see module docstring.

    Raises WeightsMissingError naming the file and its source when it cannot be found or fetched.
    """
    wf = find_file(file_name)
    status = locate(wf, weights_dir)
    if status.path is not None:
        log.info("%s: using %s (%s)", wf.name, status.path, status.where)
        return status.path
    folder = weights_folder(weights_dir)
    if _is_offline():
        raise WeightsMissingError(_missing_message(wf, folder, "off-line mode"))
    if not (wf.url or wf.hf_repo):
        raise WeightsMissingError(_missing_message(wf, folder, "no automatic download"))
    try:
        log.warning("%s: not found locally, downloading from %s", wf.name, wf.source)
        return download(wf)
    except Exception as exc:  # any network/hub failure becomes one clear line
        raise WeightsMissingError(_missing_message(wf, folder, f"download failed: {exc}")) from exc


def weights_status(weights_dir: Path | str | None = None) -> list[WeightStatus]:
    """Present/missing status of every manifest file, without network access."""
    return [locate(wf, weights_dir) for wf in manifest().values()]
