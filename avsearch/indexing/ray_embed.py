"""The Ray side of `avsearch index --ray`: batches of files in, Lance fragments of their rows out.

Runs in Ray worker processes (distributed.py drives it). An `EmbedActor` loads each encoder and bridge
once, through the same loader, registry and fingerprint checks as a local run, embeds a batch with the
same decode loop (embedding/stream.py: a file that cannot be decoded costs only itself, with its
reason; a video's frames or sound and a long recording's segments as moments, indexing/moments.py), makes
the rows as a local run does (rows.embedded_rows) in the table's exact schema, and
writes them as one uncommitted Lance fragment (lance_ray.LanceFragmentWriter); the driver commits it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from avsearch.embedding.models import EncoderLoader, Models
from avsearch.indexing.moments import encode_moments
from avsearch.indexing.plan import Item
from avsearch.indexing.rows import embedded_rows
from avsearch.media.walk import ScannedFile
from avsearch.store.manifest import Manifest
from avsearch.store.table_rows import rows_table

# One input row per file (paths as bytes: file names need not be UTF-8, Arrow strings must be).
BATCH_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string()),
        pa.field("modality", pa.string()),
        pa.field("path", pa.binary()),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("hash", pa.string()),
    ]
)
# One output row per batch and table: what the driver commits and reports.
RESULT_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string()),
        pa.field("fragments", pa.list_(pa.binary())),  # pickled lance FragmentMetadata
        pa.field("paths", pa.list_(pa.binary())),  # every file of the batch
        pa.field("failed", pa.list_(pa.binary())),  # paths that could not be decoded ...
        pa.field("reasons", pa.list_(pa.string())),  # ... and why, one line each
        pa.field("written", pa.int64()),
        pa.field("embedded", pa.list_(pa.binary())),  # paths given rows (not a silent film's sound)
        pa.field("files", pa.int64()),
        pa.field("node", pa.string()),  # the Ray node that embedded the batch
        pa.field("encoder", pa.string()),  # fingerprint of the encoder weights loaded there
        pa.field("cpu_seconds", pa.float64()),  # the actor's CPU time on the batch (all its threads), models loaded
    ]
)


def batch_blocks(table: str, items: Sequence[Item], batch: int) -> list[pa.Table]:
    """The files of one table as Ray Data blocks of `batch` rows: a block is one actor call and one commit."""
    blocks = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        columns = {
            "table": [table] * len(chunk),
            "modality": [it.modality for it in chunk],
            "path": [os.fsencode(it.file.path) for it in chunk],
            "size": [it.file.size for it in chunk],
            "mtime_ns": [it.file.mtime_ns for it in chunk],
            "hash": [it.hash for it in chunk],
        }
        blocks.append(pa.table(columns, schema=BATCH_SCHEMA))
    return blocks


class EmbedActor:
    """A Ray Data actor: models loaded on first use and kept; `__call__` embeds one block."""

    def __init__(
        self,
        manifest: Manifest,
        index_dir: str,
        loader: EncoderLoader,
        device: str | None,
        weights_dir: str | None,
        describe: Any,
        tables: dict[str, Any],
    ) -> None:
        import ray

        # No commit callback: the driver records the encoder's fingerprint before it commits any row.
        self.models = Models(manifest, index_dir, loader, device, weights_dir=weights_dir)
        self.describe = describe  # rows.Describer: path fields and tags of a path
        self.tables = tables  # table -> distributed._Table (uri, schema, storage version, metadata)
        self.writers: dict[str, Any] = {}
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        names = list(dict.fromkeys(batch.column("table").to_pylist()))  # one, unless Ray joined blocks
        results = [self._embed(name, batch.filter(pc.equal(batch.column("table"), name))) for name in names]
        return pa.Table.from_pylist(results, schema=RESULT_SCHEMA)

    def _embed(self, table: str, rows: pa.Table) -> dict[str, Any]:
        items = [
            Item(r["modality"], ScannedFile(os.fsdecode(r["path"]), r["size"], r["mtime_ns"]), r["hash"])
            for r in rows.to_pylist()
        ]
        layout = self.tables[table]
        encoder = self.models.file_encoder(table)  # checked against the index's recorded fingerprint
        started = time.process_time()
        paths = [it.file.path for it in items]
        ok, native, bad, spans = next(encode_moments(encoder, items[0].modality, [paths]))
        fragments: list[bytes] = []
        embedded = [items[i].file.path for i, times in zip(ok, spans, strict=True) if times]
        if embedded:  # rows: nothing to write for a video with nothing of this table's (a silent film's sound)
            records, vectors = embedded_rows(
                self.models, table, [items[i] for i in ok], native, self.describe, layout.with_meta, spans
            )
            written = self._writer(table)(rows_table(layout.schema, records, vectors))
            fragments = written.column("fragment").to_pylist()
        return {
            "table": table,
            "fragments": fragments,
            "paths": rows.column("path").to_pylist(),
            "failed": [os.fsencode(p) for p, _ in bad],
            "reasons": [why for _, why in bad],
            "written": len(embedded),
            "embedded": [os.fsencode(p) for p in embedded],
            "files": len(items),
            "node": self.node,
            "encoder": self.models.manifest.modalities[table].encoder_fingerprint or "",
            "cpu_seconds": time.process_time() - started,
        }

    def _writer(self, table: str) -> Any:
        if table not in self.writers:
            from lance_ray import LanceFragmentWriter

            layout = self.tables[table]
            self.writers[table] = LanceFragmentWriter(
                layout.uri, schema=layout.schema, data_storage_version=layout.storage_version
            )
        return self.writers[table]
