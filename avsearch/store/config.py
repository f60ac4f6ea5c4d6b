"""Typed settings of the search index, read from configs/search.toml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avsearch.errors import ConfigError, InputError
from avsearch.settings import load_sections

CONFIG_NAME = "search.toml"


@dataclass(frozen=True)
class IndexConfig:
    # Bridges a new index is made with when `avsearch index` gets no --bridge: published weight-file
    # names, found like every other weight file (weights folder, caches, download when connected).
    default_bridges: tuple[str, ...] = ("clap_clip.pt", "ulip_clip.pt")


@dataclass(frozen=True)
class IngestConfig:
    batch_size: int = 32  # files per encoder call and per committed write
    # Which symbolic links a walk follows: "inside" (targets inside the indexed folder), "anywhere",
    # "never" (avsearch.media.walk.LINK_POLICIES; true/false, the older settings, mean anywhere/never).
    follow_symlinks: str | bool = "inside"
    skip_hidden: bool = True
    decode: str = "auto"  # "auto", "threads" or "processes" (embedding/stream.py plan_decode)
    decode_workers: int = 0  # 0: auto (2 threads; processes: one per core but one, at most 16)
    prefetch_batches: int = 2  # batches decoded ahead of the one being encoded
    moment_chunk: int = 64  # moments of one video or recording prepared and encoded at a time

    def __post_init__(self) -> None:
        from avsearch.media.walk import link_policy

        if not isinstance(self.moment_chunk, int) or self.moment_chunk < 1:
            raise ConfigError(f"[ingest] moment_chunk must be a positive integer, got {self.moment_chunk!r}")

        try:
            object.__setattr__(self, "follow_symlinks", link_policy(self.follow_symlinks))
        except InputError as exc:
            raise ConfigError(f"[ingest] {exc}") from None


@dataclass(frozen=True)
class AnnConfig:
    exact_max_vectors: int = 50_000
    memory_budget_gb: float = 4.0
    target_recall: float = 0.95
    tuning_margin: float = 0.02
    max_tuning_queries: int = 1000
    lists_per_sqrt_n: float = 4.0
    min_points_per_list: int = 39
    max_train_points: int = 200_000
    refined_codes: str = "rabitq"  # IVF list codes re-ranked on the full vectors: "rabitq", "sq8", "none" (IVF-Flat)
    k_factors: tuple[int, ...] = (2, 4, 8, 16)  # re-ranking depths (x k) tried when tuning refined kinds
    # Above memory_budget_gb of full vectors: refined codes in RAM, re-ranked on the full vectors read from a
    # file on disk, built from the table in chunks of stream_chunk_rows (store/ann_stream.py). Off: IVF-SQ8/PQ.
    vectors_on_disk: bool = True
    stream_chunk_rows: int = 65_536
    # where such an index reads the full vectors it re-ranks: "table" (its table's column, by row: no copy)
    # or "file" (a copy beside the index, read with pread; an index on an object store always uses one)
    rerank_from: str = "table"
    hnsw_coarse_min_lists: int = 1_000_000_000  # an HNSW coarse quantizer from this many lists (off: search.toml)
    tuning_captions: tuple[str, ...] = ()
    # Query-guided spills (store/ann_spill.py): with refined_codes "rabitq" and at least guide_min_sample
    # vectors of the other modality beside the tuning queries, the first kind built is the guided IVF.
    query_guided: bool = True
    guide_sample: int = 50_000  # other-modality rows guiding the spills, at most
    guide_min_sample: int = 1_000  # fewer: no guided kind (too few to say where queries go)
    spill_probe: int = 4  # SpillSettings.probe: a neighbour in one of a query's spill_probe nearest lists stays
    spill_cap: int = 2  # SpillSettings.cap: extra copies per row at most
    # a streamed build routes only (no spills): this many guiding rows get their exact neighbours in its pass
    stream_guide_queries: int = 2_000

    def __post_init__(self) -> None:
        if self.refined_codes not in ("rabitq", "sq8", "none"):
            raise ConfigError(f"[ann] refined_codes = {self.refined_codes!r}: expected 'rabitq', 'sq8' or 'none'")
        if self.rerank_from not in ("table", "file"):
            raise ConfigError(f"[ann] rerank_from = {self.rerank_from!r}: expected 'table' or 'file'")
        if not self.k_factors or min(self.k_factors) < 1:
            raise ConfigError(f"[ann] k_factors = {list(self.k_factors)}: expected re-ranking depths of 1 or more")
        if (
            self.guide_min_sample < 1
            or self.guide_sample < 0
            or self.spill_probe < 1
            or self.spill_cap < 0
            or self.stream_guide_queries < 0
        ):
            raise ConfigError(
                "[ann] guide_min_sample and spill_probe must be 1 or more; guide_sample, spill_cap and "
                "stream_guide_queries 0 or more"
            )


@dataclass(frozen=True)
class SearchConfig:
    index: IndexConfig = IndexConfig()
    ingest: IngestConfig = IngestConfig()
    ann: AnnConfig = AnnConfig()


def load_search_config(path: str | Path | None = None) -> SearchConfig:
    """Read search.toml (the bundled one unless `path` is given); missing keys take the defaults."""
    return load_sections(SearchConfig, CONFIG_NAME, path)
