"""Typed errors. Library code raises these; only the CLI turns them into one line and exit code 1."""

from __future__ import annotations


class AvsearchError(Exception):
    """Base class of every error avsearch reports to a user."""


class InputError(AvsearchError):
    """A file or array given by the user is missing, unreadable or malformed (the message names it)."""


class ConfigError(AvsearchError):
    """A configuration file or option is invalid (unknown key, bad value)."""


class WeightsMissingError(AvsearchError):
    """Model weights are not found locally and cannot be downloaded; the message says where to get them."""


class DownloadError(WeightsMissingError):
    """A weight file could not be downloaded whole (HTTP error, connection cut more often than the retries
    allow, a size that does not match); the message names the file and the reason."""


class ChecksumMismatchError(DownloadError):
    """A downloaded file's SHA-256 is not the published one (the file has been deleted)."""

    def __init__(self, name: str, expected: str, actual: str, source: str) -> None:
        super().__init__(
            f"{name}: SHA-256 mismatch after download from {source}: expected {expected}, got {actual} "
            "(the file was deleted)"
        )
        self.name, self.expected, self.actual = name, expected, actual


class IncompatibleError(AvsearchError):
    """Two artefacts do not fit together (bridge vs index, encoder vs bridge, dimensions)."""


class DamagedIndexError(AvsearchError):
    """An index folder's files are damaged or missing (deleted table data, a table that will not open)."""


class StorageError(AvsearchError):
    """The storage an index lives on does not answer now (an object store down, refused credentials): nothing
    is damaged and nothing needs rebuilding; try again later."""


class DecodeError(InputError):
    """A media file cannot be decoded (empty, silent, truncated or of an unknown format)."""
