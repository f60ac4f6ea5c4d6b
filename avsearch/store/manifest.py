"""The index manifest (manifest.json): which encoders and bridge built the index, and its schema version.

Every write is atomic (a rename locally, one PUT on an object store: store/location.py), so a kill leaves
the old or the new manifest, never half of one. An index is refused (IncompatibleError) when asked to mix
encoders or bridges.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from avsearch.errors import IncompatibleError, InputError
from avsearch.modalities import BACKENDS, CMCR
from avsearch.store.location import Location

MANIFEST_NAME = "manifest.json"
# Bump when table columns change; older indexes are refused with a rebuild hint.
# 2: paths kept as bytes, rows keyed by a digest of them.
SCHEMA_VERSION = 2


def backend_table(backend: str, modality: str) -> str:
    """The table holding `modality`'s vectors of `backend`: the modality itself for C-MCR (the layout of
    every index made before backends), "<backend>_<modality>" for the others (e.g. "cavmae_audio")."""
    return modality if backend == CMCR else f"{backend}_{modality}"


def table_modality(table: str) -> str:
    """The file modality a table holds, from its name alone (backend_table's inverse): "cavmae_audio"
    -> "audio", "image" -> "image"."""
    for backend in BACKENDS:
        if backend != CMCR and table.startswith(backend + "_"):
            return table[len(backend) + 1 :]
    return table


def bridge_column(bridge_name: str) -> str:
    """Table column holding a modality's vectors projected by this bridge (e.g. "proj_audio_visual")."""
    return "proj_" + re.sub(r"[^0-9a-zA-Z_]", "_", bridge_name)


@dataclass
class BridgeRef:
    """One bridge an index was built with."""

    name: str  # bridge metadata name, e.g. "audio_visual"; one bridge per name in an index
    fingerprint: str
    path: str  # absolute path of the bridge file; queries load it from here
    spaces: list[str]  # the two spaces it connects, e.g. ["clip", "clap"]
    out_dim: int

    @property
    def column(self) -> str:
        return bridge_column(self.name)


@dataclass
class ModalityEntry:
    """How the vectors of one table (one file modality of one backend) are made."""

    encoder: str  # encoder registry name, e.g. "clap-630k-fusion"
    space: str  # its contrastive space, e.g. "clap"
    native_dim: int
    text: bool = False  # whether that encoder has a text tower (text queries in its own space)
    encoder_fingerprint: str | None = None  # set once the encoder has been loaded and used
    backend: str = CMCR  # which search backend the table belongs to (manifests before backends: all C-MCR)
    kind: str = ""  # the file modality of its rows when the table is not named after it ("cavmae_audio")


@dataclass
class Manifest:
    bridges: dict[str, BridgeRef]
    modalities: dict[str, ModalityEntry]
    schema_version: int = SCHEMA_VERSION
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    roots: list[str] = field(default_factory=list)  # folders indexed into this index
    ann: dict[str, dict[str, Any]] = field(default_factory=dict)  # FAISS index name -> parameters

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bridges"] = {n: asdict(b) for n, b in self.bridges.items()}
        d["modalities"] = {m: asdict(e) for m, e in self.modalities.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        return cls(
            bridges={n: BridgeRef(**b) for n, b in d["bridges"].items()},
            modalities={m: ModalityEntry(**e) for m, e in d["modalities"].items()},
            schema_version=int(d["schema_version"]),
            created=float(d.get("created", 0.0)),
            updated=float(d.get("updated", 0.0)),
            roots=list(d.get("roots", [])),
            ann=dict(d.get("ann", {})),
        )

    # Every table of the index is an entry of `modalities`, keyed by table name; the C-MCR tables are
    # named after their modality, so an index made before backends reads as a C-MCR-only index.

    def backends(self) -> list[str]:
        """The search backends this index holds, C-MCR first."""
        have = {e.backend for e in self.modalities.values()}
        return sorted(have, key=lambda b: (b != CMCR, b))

    def tables_of(self, backend: str) -> dict[str, str]:
        """File modality -> table name of one backend's tables ({} when the index lacks the backend)."""
        return {self.kind(t): t for t, e in self.modalities.items() if e.backend == backend}

    def file_modalities(self) -> dict[str, ModalityEntry]:
        """The C-MCR tables (modality -> entry): what text and bridge queries reach."""
        return {m: e for m, e in self.modalities.items() if e.backend == CMCR}

    def kind(self, table: str) -> str:
        """The file modality of a table's rows."""
        return self.modalities[table].kind or table

    def bridges_of(self, space: str) -> list[BridgeRef]:
        """The bridges with a side in `space`, in name order."""
        return [b for _, b in sorted(self.bridges.items()) if space in b.spaces]

    def shared_dims(self, modality: str) -> dict[str, int]:
        """Projected columns of a modality's table -> width (one per bridge covering its space)."""
        return {b.column: b.out_dim for b in self.bridges_of(self.modalities[modality].space)}

    def bridge_stamp(self, modality: str) -> str:
        """What the projected vectors of a row were made with: "name:fingerprint" of each bridge."""
        return ",".join(f"{b.name}:{b.fingerprint}" for b in self.bridges_of(self.modalities[modality].space))

    def check_bridges(self, given: dict[str, str], where: str) -> None:
        """Refuse bridges (name -> fingerprint) other than the ones this index was built with."""
        have = {n: b.fingerprint for n, b in self.bridges.items()}
        if set(given) != set(have):
            raise IncompatibleError(
                f"the index at {where} was built with bridge(s) {', '.join(sorted(have))}, "
                f"not {', '.join(sorted(given)) or 'none'}: give the same bridges, or build a new index "
                "with --index-dir"
            )
        for name, fp in given.items():
            self.check_bridge(name, fp, where)

    def check_bridge(self, name: str, fingerprint: str, where: str) -> None:
        """Refuse a bridge whose weights differ from the one of that name this index was built with."""
        ref = self.bridges.get(name)
        if ref is None or fingerprint != ref.fingerprint:
            was = f"fingerprint {ref.fingerprint[:12]}" if ref else "no such bridge"
            raise IncompatibleError(
                f"the index at {where} was built with bridge {name!r} ({was}), not {fingerprint[:12]}: "
                "use that bridge, or build a new index with --index-dir"
            )

    def check_encoder(self, name: str, fingerprint: str, where: str) -> None:
        """Refuse an encoder whose weights differ from those that made this index's vectors."""
        for modality, entry in self.modalities.items():
            if entry.encoder == name and entry.encoder_fingerprint not in (None, fingerprint):
                raise IncompatibleError(
                    f"the index at {where} holds {modality} vectors of {name!r} with fingerprint "
                    f"{entry.encoder_fingerprint}, but weights with fingerprint {fingerprint} were "
                    "loaded: use the same weights, or build a new index with --index-dir"
                )

    def record_encoder(self, name: str, fingerprint: str) -> bool:
        """Remember an encoder's fingerprint; True when the manifest changed (it must be saved)."""
        changed = False
        for entry in self.modalities.values():
            if entry.encoder == name and entry.encoder_fingerprint is None:
                entry.encoder_fingerprint = fingerprint
                changed = True
        return changed


def manifest_path(index_dir: Path) -> Path:
    """The manifest file of a local index folder (an object-store index: `Location.join(MANIFEST_NAME)`)."""
    return Path(index_dir) / MANIFEST_NAME


def load_manifest(index_dir: str | Path | Location) -> Manifest | None:
    """The manifest of an index (local folder or object-store location), or None when it holds no index yet."""
    location = Location.of(index_dir)
    where = location.join(MANIFEST_NAME)
    data = location.read_bytes(MANIFEST_NAME)
    if data is None:
        return None
    try:
        manifest = Manifest.from_dict(json.loads(data.decode("utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: not a valid avsearch index manifest ({exc})") from exc
    if manifest.schema_version != SCHEMA_VERSION:
        raise IncompatibleError(
            f"{where}: index schema version {manifest.schema_version}, this avsearch reads version "
            f"{SCHEMA_VERSION}: rebuild the index into a new --index-dir"
        )
    return manifest


def save_manifest(index_dir: str | Path | Location, manifest: Manifest) -> None:
    """Write the manifest atomically (temporary file + rename; one PUT on an object store)."""
    manifest.updated = time.time()
    Location.of(index_dir).write_bytes(MANIFEST_NAME, json.dumps(manifest.to_dict(), indent=2, sort_keys=True).encode())
