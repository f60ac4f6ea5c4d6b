"""`Index`: the one owner of an index folder, as a LanceDB connection owns its tables.

An index folder holds manifest.json (which encoders and bridges made it), tables/ (LanceDB, one table per
modality), ann/ (FAISS files) and .lock (one writer at a time). `Index.open` opens it for reading
(queries, info); `Index.update` opens or creates it for writing, holding the lock until the block ends.
Indexing and search take an `Index`; nothing else touches the folder's files.

The folder may be an object-store prefix (s3://bucket/path; gs://, az://): every file goes through its
`Location` (store/location.py), the lock is a lease (store/locks.py), and the disposable files (the
server's thumbnails, the FAISS downloads) stay in the local cache, never on the store.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from avsearch.embedding.models import EncoderLoader, Models, default_loader
from avsearch.errors import DamagedIndexError, InputError
from avsearch.store import ann_files
from avsearch.store.ann_files import LoadedAnn
from avsearch.store.ann_table_vectors import TableVectors
from avsearch.store.index_info import FailedFile, IndexInfo, describe_index
from avsearch.store.index_setup import FAILED_NAME, BridgeFiles, as_list, drop_contents, make_folder, writable_manifest
from avsearch.store.location import Location
from avsearch.store.locks import WriterLock, writer_lock
from avsearch.store.manifest import Manifest, load_manifest, save_manifest
from avsearch.store.table_writes import ColumnFill
from avsearch.store.tables import MediaStore

log = logging.getLogger(__name__)

CACHE_DIR = "cache"  # derived, disposable files (the server's thumbnails): safe to delete at any time


class Index:
    """One index folder: its manifest, tables, FAISS files and the models (encoders, bridges) it uses.

    Models load on first use: opening an index, reading its info or a run with no changes loads none.
    """

    def __init__(
        self,
        path: str | Path | Location,
        manifest: Manifest,
        *,
        weights_dir: str | Path | None = None,
        device: str | None = None,
        encoder_loader: EncoderLoader | None = None,
        writable: bool = False,
    ) -> None:
        self.location = Location.of(path)
        self.manifest = manifest
        self.writable = writable
        self.tables = MediaStore(self.location)
        self.lock: WriterLock | None = None  # set by `update`: checked before every write
        loader = encoder_loader or default_loader(Path(weights_dir) if weights_dir else None, device)
        self.models = Models(
            manifest,
            str(self.location),
            loader,
            device,
            weights_dir=weights_dir,
            commit=self.commit if writable else None,
        )

    @property
    def path(self) -> Path | str:
        """The index folder (a Path), or the URI of an index on an object store."""
        return self.location.local_path or self.location.uri

    @property
    def local_dir(self) -> Path | None:
        """The index folder when it is on this machine (a walk of the media skips it); None on a store."""
        return self.location.local_path

    # -- opening ---------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path | Location,
        *,
        weights_dir: str | Path | None = None,
        device: str | None = None,
        encoder_loader: EncoderLoader | None = None,
    ) -> Index:
        """An existing index, for reading (queries never write to it). path: a folder, an s3:// (gs://,
        az://) URI, or a Location carrying storage options."""
        location = Location.of(path)
        location.check()
        manifest = load_manifest(location)
        if manifest is None:
            raise InputError(f"{location}: no index here; build one with `avsearch index FOLDER`")
        return cls(location, manifest, weights_dir=weights_dir, device=device, encoder_loader=encoder_loader)

    @classmethod
    @contextlib.contextmanager
    def update(
        cls,
        path: str | Path | Location,
        *,
        bridges: BridgeFiles = None,
        default_bridges: Sequence[str] | None = None,
        weights_dir: str | Path | None = None,
        device: str | None = None,
        encoder_loader: EncoderLoader | None = None,
        rebuild: bool = False,
        backend: str | None = None,
    ) -> Iterator[Index]:
        """Open (or create) an index for writing, holding its lock for the block.

        bridges: bridge files for a new index; an existing one checks them against its own. Without them
        a new index is made with `default_bridges` (published weight-file names, resolved like every
        other weight file; None: configs/search.toml [index] default_bridges) and an existing one keeps
        its own. rebuild: drop the tables, FAISS files and the
        failed-files list (a damaged index) and keep the manifest's bridges, so everything is embedded anew.
        backend: "cmcr", "cavmae" or "both": backends to add to the index (an index keeps every backend it
        has; None: the index's own, or configs/backends.toml's default for a new index). Bridges are
        given or defaulted only when the index has or gets the C-MCR backend.
        """
        location = Location.of(path)
        make_folder(location)
        with writer_lock(location) as lock:
            manifest = writable_manifest(location, as_list(bridges), default_bridges, weights_dir, backend)
            if rebuild:
                drop_contents(location, manifest)
            index = cls(
                location, manifest, weights_dir=weights_dir, device=device, encoder_loader=encoder_loader, writable=True
            )
            index.lock = index.tables.lock = lock
            index.commit()  # the index describes itself before any row is written
            for modality, entry in manifest.modalities.items():
                index.tables.ensure_table(modality, entry.native_dim, manifest.shared_dims(modality))
            yield index

    # -- writing ---------------------------------------------------------------------------------------

    def check_lock(self) -> None:
        """Before a write: InputError when this run lost its writer lock (a lease taken over, store/locks.py)."""
        if self.lock is not None:
            self.lock.check()

    def commit(self) -> None:
        """Save the manifest (atomically)."""
        if not self.writable:
            raise RuntimeError("this Index was opened for reading")  # a bug in avsearch, not user input
        self.check_lock()
        save_manifest(self.location, self.manifest)

    def add_missing_columns(self, table: str, fields: Sequence[pa.Field], fill: ColumnFill | None = None) -> list[str]:
        """Append the nullable columns of `fields` that `table` lacks (MediaStore.add_missing_columns: one
        commit, no existing column rewritten); a FAISS build that was current stays current, re-dated to
        the new table version, since its rows and vectors did not change. Returns the names added."""
        before = self.tables.version(table)
        added = self.tables.add_missing_columns(table, fields, fill)
        if added:
            after = self.tables.version(table)
            for column in self.tables.vector_columns(table):
                name = ann_files.ann_name(table, column)
                meta = self.ann_meta(name)
                if meta is not None and meta["table_version"] == before:
                    self.check_lock()
                    ann_files.redate_ann(self.location, name, after)
        return added

    def add_root(self, root: Path) -> None:
        if str(root) not in self.manifest.roots:
            self.manifest.roots.append(str(root))

    # -- files that failed ------------------------------------------------------------------------------

    def failed_files(self) -> dict[str, FailedFile]:
        """Files that could not be indexed (path -> size, mtime and reason when they failed)."""
        data = self.location.read_bytes(FAILED_NAME)
        if data is None:
            return {}
        try:
            rows = json.loads(data.decode("utf-8"))
            return {p: FailedFile(int(r["size"]), int(r["mtime_ns"]), str(r["reason"])) for p, r in rows.items()}
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError):
            log.warning("%s is damaged; failed files will be retried", self.location.join(FAILED_NAME))
            return {}

    def record_failed(self, failed: dict[str, FailedFile]) -> None:
        """Replace the list of failed files (atomically; surrogate-escaped names survive JSON's \\u escapes)."""
        text = json.dumps({p: asdict(f) for p, f in sorted(failed.items())}, indent=1)
        self.check_lock()
        self.location.write_bytes(FAILED_NAME, text.encode("utf-8"))

    def cache_dir(self, name: str) -> Path:
        """The folder for disposable derived files of one kind (e.g. "thumbnails"), made on first use:
        in the index folder, or for an index on an object store in the local cache (settings.cache_dir);
        OSError when that folder is read-only (the caller then keeps them elsewhere)."""
        if self.location.local_path is not None:
            folder = self.location.local_path / CACHE_DIR / name
        else:
            from avsearch.settings import load_settings

            folder = load_settings().cache_dir / "indexes" / self.location.cache_key() / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- FAISS files -----------------------------------------------------------------------------------

    def ann(
        self, name: str, use_gpu: bool = True, numpy_flat: bool = False, read_rows: bool = True
    ) -> LoadedAnn | None:
        """The current FAISS build `name` (e.g. "image.proj_audio_visual"), or None. numpy_flat: a flat build
        of a local index is searched in numpy (store/exact.py: no FAISS import), for a search that no GPU
        will take; on an object store the FAISS file, cached on this machine, is read instead of the table.
        A build that re-ranks from its table's version is None when that version is gone (searched
        exactly until the next index run), unless read_rows is False (an in-place update reads none)."""
        modality, column = name.split(".", 1)  # ann_files.ann_name
        if numpy_flat and self.location.is_local:
            from avsearch.store.exact import load_exact

            meta = self.ann_meta(name)
            found = None if meta is None else load_exact(self.tables, name, modality, column, meta)
            if found is not None:
                return found
        loaded = ann_files.load_ann(
            self.location, name, use_gpu=use_gpu, open_table=lambda version: self.tables.lance_at(modality, version)
        )
        vectors = getattr(loaded.index, "vectors", None) if loaded is not None else None
        if read_rows and isinstance(vectors, TableVectors):
            try:
                vectors.open()
            except DamagedIndexError as exc:
                log.warning("FAISS index %s: %s; searching exactly until the next index run", name, exc)
                return None
        return loaded

    def ann_meta(self, name: str) -> dict[str, Any] | None:
        return ann_files.read_ann_meta(self.location, name)

    def save_ann(self, name: str, index: Any, params: Any, paths: list[str], table_version: int) -> dict[str, Any]:
        self.check_lock()
        return ann_files.save_ann(self.location, name, index, params, paths, table_version)

    def remove_ann(self, name: str) -> None:
        self.check_lock()
        ann_files.remove_ann(self.location, name)

    # -- description -----------------------------------------------------------------------------------

    def describe(self) -> IndexInfo:
        """Counts, sizes, encoders and FAISS builds per modality, without loading any model (index_info.py)."""
        return describe_index(self)
