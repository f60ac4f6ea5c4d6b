"""The one way avsearch walks folders (index, embed): every regular file with its size and mtime.

Hidden names (dot-files, dot-folders) are skipped; directory links are followed once, so symlink loops
end; files keep the path they were walked by (a symlinked file keeps its link path). Entries that cannot
be read are returned with their reason, never raised: one unreadable folder does not stop a walk.

Symbolic links follow one policy (configs/search.toml [ingest] follow_symlinks, LINK_POLICIES):
"inside" (the default) follows a link only when its target lies inside the folder being walked, so an
index never takes in (and a server never serves) a file from elsewhere on the machine; "anywhere"
follows every link; "never" follows none. A link that is not followed is listed with its reason.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from avsearch.errors import InputError

log = logging.getLogger(__name__)


def printable(path: str) -> str:
    """A path as text that always encodes (non-UTF-8 bytes as \\xNN), for tables, JSON and terminals;
    inside avsearch paths stay os.fsdecode strings, which round-trip any file name."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


INSIDE, ANYWHERE, NEVER = "inside", "anywhere", "never"
LINK_POLICIES = (INSIDE, ANYWHERE, NEVER)


def link_policy(value: str | bool) -> str:
    """A follow_symlinks setting as one of LINK_POLICIES (true/false, the older settings, are "anywhere"
    and "never"); InputError for anything else."""
    if isinstance(value, bool):
        return ANYWHERE if value else NEVER
    if value not in LINK_POLICIES:
        raise InputError(f"follow_symlinks = {value!r}: expected one of {', '.join(map(repr, LINK_POLICIES))}")
    return value


def is_inside(path: str | Path, roots: Sequence[str | Path]) -> bool:
    """Whether `path`, with every link resolved, lies in one of `roots` (resolved too)."""
    real = os.path.realpath(path)
    for root in roots:
        top = os.path.realpath(root)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return True
    return False


@dataclass(frozen=True)
class ScannedFile:
    path: str  # absolute path as walked (a symlinked file keeps its link path)
    size: int
    mtime_ns: int


def walk_folder(
    root: Path,
    follow_symlinks: str | bool = INSIDE,
    skip_hidden: bool = True,
    exclude: Path | None = None,
    on_file: Callable[[int], None] | None = None,
) -> tuple[list[ScannedFile], list[tuple[str, str]]]:
    """Files under root, sorted by path, and (path, reason) for entries that could not be read.

    Directory links are followed once: a directory already visited (same device and inode) is not
    entered again, which breaks symlink loops. `exclude` (the index folder, when it lies inside root)
    is not walked. on_file(n) is called as files are found (progress). follow_symlinks: LINK_POLICIES.
    """
    policy = link_policy(follow_symlinks)
    root = Path(root).absolute()
    seen: set[tuple[int, int]] = set()
    files: list[ScannedFile] = []
    problems: list[tuple[str, str]] = []
    excluded = exclude.resolve() if exclude is not None else None
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
            key = (st.st_dev, st.st_ino)
            if key in seen or (excluded is not None and folder.resolve() == excluded):
                continue
            seen.add(key)
            entries = list(os.scandir(folder))
        except OSError as exc:
            problems.append((str(folder), f"cannot list folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            if skip_hidden and entry.name.startswith("."):
                continue
            try:
                if entry.is_symlink():
                    refused = _refused_link(entry, policy, root)
                    if refused:
                        problems.append((entry.path, refused))
                        continue
                if entry.is_dir(follow_symlinks=True):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=True):
                    st = entry.stat(follow_symlinks=True)
                    files.append(ScannedFile(entry.path, st.st_size, st.st_mtime_ns))
                    if on_file is not None:
                        on_file(1)
                else:  # never opened: reading a FIFO blocks, a socket or device is not a file of media
                    problems.append((entry.path, f"not a regular file ({_special(entry)})"))
            except OSError as exc:
                problems.append((entry.path, f"cannot read: {exc.strerror or exc}"))
    files.sort(key=lambda f: f.path)
    log.info("scanned %s: %d files", root, len(files))
    return files, problems


def _refused_link(entry: os.DirEntry, policy: str, root: Path) -> str:
    """Why the link `entry` is not followed under `policy` ("" when it is followed)."""
    if not os.path.exists(entry.path):
        return "broken symbolic link"
    if policy == NEVER:
        return "symbolic link, not followed (configs/search.toml [ingest] follow_symlinks = 'never')"
    if policy == INSIDE and not is_inside(entry.path, [root]):
        return (
            "symbolic link to a place outside the indexed folder, not followed "
            "(configs/search.toml [ingest] follow_symlinks = 'inside')"
        )
    return ""


def _special(entry: os.DirEntry) -> str:
    mode = entry.stat(follow_symlinks=True).st_mode
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device")):
        if test(mode):
            return name
    return "a block device" if stat.S_ISBLK(mode) else "a special file"


def collect_files(
    sources: Sequence[Path | str], follow_symlinks: str | bool = INSIDE, skip_hidden: bool = True
) -> tuple[list[ScannedFile], list[tuple[str, str]]]:
    """Files given directly plus every file under the folders given, sorted and de-duplicated, and
    (path, reason) for what could not be read. Raises InputError for a source that does not exist."""
    found: dict[str, ScannedFile] = {}
    problems: list[tuple[str, str]] = []
    for source in sources:
        path = Path(source).expanduser().absolute()
        if path.is_file():
            st = path.stat()
            found[str(path)] = ScannedFile(str(path), st.st_size, st.st_mtime_ns)
        elif path.is_dir():
            files, bad = walk_folder(path, follow_symlinks, skip_hidden)
            found.update((f.path, f) for f in files)
            problems += bad
        else:
            raise InputError(f"{path}: no such file or folder")
    return sorted(found.values(), key=lambda f: f.path), problems
