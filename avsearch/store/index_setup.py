"""Opening an index folder for writing: the folder made, its manifest's backends and bridges, a rebuild's drop."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from avsearch.embedding.models import backend_entries, bridge_ref, parse_backends, plan_modalities
from avsearch.errors import ConfigError, InputError
from avsearch.modalities import CMCR
from avsearch.store import ann_files
from avsearch.store.config import load_search_config
from avsearch.store.location import Location
from avsearch.store.manifest import Manifest, load_manifest
from avsearch.store.table_schema import TABLES_DIR

log = logging.getLogger(__name__)

FAILED_NAME = "failed.json"  # files that could not be indexed, so an unchanged one is not decoded again
BridgeFiles = Sequence[str | Path] | str | Path | None


def make_folder(location: Location) -> None:
    """The index folder made (local), or the bucket checked (an object store: prefixes need no making)."""
    path = location.local_path
    if path is None:
        location.check()
        return
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: not a folder (--index-dir names an existing file)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create the index folder ({exc.strerror or exc})") from exc


def drop_contents(location: Location, manifest: Manifest) -> None:
    """Everything derived from the media goes; the manifest (bridges, encoders) stays."""
    for sub in (TABLES_DIR, ann_files.ANN_DIR):
        location.delete_tree(sub)
    location.delete(FAILED_NAME)
    manifest.ann = {}
    log.info("%s: tables and FAISS files dropped for a rebuild", location)


def as_list(bridges: BridgeFiles) -> list[str | Path]:
    if bridges is None:
        return []
    if isinstance(bridges, (str, Path)):
        return [bridges]
    return list(bridges)


def writable_manifest(
    path: Location,
    bridges: list[str | Path],
    default_bridges: Sequence[str] | None,
    weights_dir: str | Path | None,
    backend: str | None,
) -> Manifest:
    """The index's manifest (new on a first run), bridges checked, with the backends asked for added."""
    manifest = load_manifest(path)
    if manifest is None:
        manifest = Manifest(bridges={}, modalities={})
        wanted = parse_backends(backend)
    else:
        wanted = parse_backends(backend) if backend else tuple(manifest.backends())
    if bridges or CMCR in wanted:
        _add_bridges(manifest, path, bridges, default_bridges, weights_dir)
    for name in wanted:
        if name != CMCR and name not in manifest.backends():
            manifest.modalities.update(backend_entries(name))
            log.info("%s: backend %s added (%s)", path, name, ", ".join(manifest.tables_of(name).values()))
    return manifest


def _add_bridges(
    manifest: Manifest,
    path: Location,
    bridges: list[str | Path],
    default_bridges: Sequence[str] | None,
    weights_dir: str | Path | None,
) -> None:
    """The C-MCR backend: a manifest without it gets the bridges given (or the defaults) and their
    modalities; one with it checks the bridges given against its own."""
    from avsearch.bridge.fast import read_bridge_meta

    has_cmcr = bool(manifest.file_modalities())
    if not bridges:
        if has_cmcr:
            return
        if default_bridges is None:
            default_bridges = load_search_config().index.default_bridges
        bridges = list(_resolve_defaults(default_bridges, weights_dir))
    metas, refs = [], {}
    for given in bridges:
        file = Path(given).expanduser().absolute()
        if not file.is_file():
            raise InputError(f"{file}: bridge file not found")
        meta, fingerprint = read_bridge_meta(file)
        if meta.name in refs:
            raise ConfigError(f"two bridges named {meta.name!r} were given ({refs[meta.name].path}, {file})")
        metas.append(meta)
        refs[meta.name] = bridge_ref(meta, fingerprint, file)
    if not has_cmcr:
        manifest.bridges = refs
        manifest.modalities.update(plan_modalities(metas))
        return
    manifest.check_bridges({n: r.fingerprint for n, r in refs.items()}, str(path))
    for name, ref in refs.items():
        manifest.bridges[name].path = ref.path  # the same bridge may have moved


def _resolve_defaults(names: Sequence[str], weights_dir: str | Path | None) -> Iterator[Path]:
    """The default bridge files by published name; WeightsMissingError names the first one missing."""
    from avsearch.encoders.weights import resolve_weight

    if not names:
        raise ConfigError("a new index needs bridges: pass --bridge FILE (configs/search.toml lists none)")
    for name in names:
        yield resolve_weight(name, weights_dir)
