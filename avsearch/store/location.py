"""Where an index lives: a local folder, or an object-store prefix (s3://bucket/path, gs://, az://).

`Location` is the one place an `--index-dir` is interpreted. It carries the storage options that LanceDB
(object_store) takes, built once from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP) with `--storage-option key=value`
over it, and reads and writes the index's small files (manifest.json, failed.json, ann/*) through a
pyarrow filesystem made from the same options, so the tables and the files beside them always reach
the same store with the same credentials.

A write is atomic on both kinds: a local file is written to a temporary name and renamed over; an
object is one PUT of the whole body (a multipart upload appears only when completed), so a reader sees
the old object or the new one. Object stores have no rename and no flock: see store/locks.py for the
writer lock. gs:// and az:// go through the same code (LanceDB and pyarrow support them) but are not
tested here; only S3 is, against a real local server (tests/store/test_object_storage.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from avsearch.atomic import write_bytes as write_local
from avsearch.errors import AvsearchError, ConfigError, InputError, StorageError

SCHEMES = ("s3", "gs", "az")
# --storage-option names (lower case) -> the key LanceDB's object_store reads; anything else passes on as is
_ALIASES = {
    "access_key_id": "aws_access_key_id",
    "secret_access_key": "aws_secret_access_key",
    "session_token": "aws_session_token",
    "token": "aws_session_token",
    "region": "aws_region",
    "endpoint": "aws_endpoint",
    "endpoint_url": "aws_endpoint",
    "aws_endpoint_url": "aws_endpoint",
    "aws_allow_http": "allow_http",
    "account_name": "azure_storage_account_name",
    "account_key": "azure_storage_account_key",
}
# environment -> storage option, first one set wins (object_store reads the same names)
_ENV = {
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "aws_session_token": ("AWS_SESSION_TOKEN",),
    "aws_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws_endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
    "allow_http": ("AWS_ALLOW_HTTP",),
}


def parse_storage_options(pairs: Sequence[str] | None) -> dict[str, str]:
    """`--storage-option key=value` strings -> {key: value} (keys lower case, common aliases mapped)."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--storage-option {pair!r}: expected key=value, e.g. aws_region=eu-west-1")
        key = key.strip().lower()
        out[_ALIASES.get(key, key)] = value
    return out


class Location:
    """An index's place: `uri` is an absolute local path or "<scheme>://bucket/prefix" (no trailing /)."""

    def __init__(self, where: str | Path, storage_options: Mapping[str, str] | None = None) -> None:
        text = str(where)
        scheme, sep, rest = text.partition("://")
        if sep and scheme.lower() == "file":  # file:///data/idx is the local folder /data/idx
            text, scheme, sep = rest, "", ""
        if sep and scheme.lower() in SCHEMES:
            self.scheme = scheme.lower()
            self.bucket, _, prefix = rest.rstrip("/").partition("/")
            if not self.bucket:
                raise InputError(f"{text}: no bucket named (expected {self.scheme}://bucket/path)")
            self.prefix = prefix.strip("/")
            self.uri = f"{self.scheme}://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        elif sep:
            raise InputError(f"{text}: unknown storage scheme {scheme!r} (local folders, {', '.join(SCHEMES)})")
        else:
            self.scheme = ""
            self.uri = str(Path(text).expanduser().absolute())
        given = {_ALIASES.get(k.lower(), k.lower()): str(v) for k, v in (storage_options or {}).items()}
        self.options = self._with_env(given) if self.scheme == "s3" else given
        self._fs: Any = None

    @classmethod
    def of(cls, where: str | Path | Location, storage_options: Mapping[str, str] | None = None) -> Location:
        """`where` as a Location (one given passes through; options then apply to it only when given)."""
        if isinstance(where, Location):
            return where if not storage_options else cls(where.uri, {**where.options, **storage_options})
        return cls(where, storage_options)

    @staticmethod
    def _with_env(given: dict[str, str]) -> dict[str, str]:
        options = {}
        for key, names in _ENV.items():
            value = next((os.environ[n] for n in names if os.environ.get(n)), None)
            if value is not None:
                options[key] = value
        options.update(given)
        # an explicit http:// endpoint (a local server) is what the user asked for; object_store refuses
        # plain HTTP unless told
        if options.get("aws_endpoint", "").startswith("http://"):
            options.setdefault("allow_http", "true")
        return options

    # -- what it is ----------------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def local_path(self) -> Path | None:
        """The folder of a local index; None on an object store."""
        return Path(self.uri) if self.is_local else None

    def join(self, *parts: str) -> str:
        """A child's path or URI."""
        return "/".join([self.uri, *parts]) if not self.is_local else str(Path(self.uri, *parts))

    def cache_key(self) -> str:
        """A short stable name for this location's local cache folders."""
        return hashlib.blake2b(self.uri.encode(), digest_size=8).hexdigest()

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"  # never the options: they hold secrets

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and (self.uri, self.options) == (other.uri, other.options)

    def __hash__(self) -> int:
        return hash(self.uri)

    # -- the store behind it ---------------------------------------------------------------------------

    def filesystem(self) -> Any:
        """The pyarrow filesystem holding the objects (made once)."""
        if self._fs is None:
            self._fs = _filesystem(self.scheme, self.options)
        return self._fs

    def _key(self, rel: str) -> str:
        return "/".join(p for p in (self.bucket, self.prefix, rel) if p)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """A store's OSError as one line naming the location and the reason."""
        try:
            yield
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise storage_error(self, what, exc) from exc

    def check(self) -> None:
        """Fail now, in one line, when the store cannot be reached, refuses the credentials or has no bucket."""
        if self.is_local:
            return
        from pyarrow.fs import FileType

        with self._errors("cannot open the bucket"):
            kind = self.filesystem().get_file_info(self.bucket).type
        if kind == FileType.NotFound:
            raise InputError(f"{self.uri}: bucket {self.bucket!r} does not exist (create it first)")

    def read_bytes(self, rel: str) -> bytes | None:
        """The object or file `rel` (a "/"-separated name under the location); None when absent."""
        if self.is_local:
            try:
                return Path(self.uri, rel).read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None
        with self._errors(f"cannot read {rel}"):
            try:
                with self.filesystem().open_input_stream(self._key(rel)) as fh:
                    return fh.read()
            except FileNotFoundError:
                return None

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Replace `rel` atomically (temporary file + rename; one PUT on an object store)."""
        if self.is_local:
            write_local(Path(self.uri, rel), data)
            return
        with self._errors(f"cannot write {rel}"), self.filesystem().open_output_stream(self._key(rel)) as fh:
            fh.write(data)

    def delete(self, rel: str) -> None:
        """Remove `rel` (nothing when absent)."""
        if self.is_local:
            Path(self.uri, rel).unlink(missing_ok=True)
            return
        with self._errors(f"cannot delete {rel}"), contextlib.suppress(FileNotFoundError):
            self.filesystem().delete_file(self._key(rel))

    def list(self, folder: str) -> list[tuple[str, int]]:
        """(name, size) of the files directly in `folder` ([] when absent)."""
        if self.is_local:
            base = Path(self.uri, folder)
            return sorted((p.name, p.stat().st_size) for p in base.iterdir() if p.is_file()) if base.is_dir() else []
        from pyarrow.fs import FileSelector, FileType

        with self._errors(f"cannot list {folder}"):
            infos = self.filesystem().get_file_info(FileSelector(self._key(folder), allow_not_found=True))
        return sorted((i.base_name, i.size or 0) for i in infos if i.type == FileType.File)

    def delete_tree(self, folder: str) -> None:
        """Remove `folder` and everything under it."""
        if self.is_local:
            shutil.rmtree(Path(self.uri, folder), ignore_errors=True)
            return
        with self._errors(f"cannot delete {folder}"), contextlib.suppress(FileNotFoundError):
            self.filesystem().delete_dir(self._key(folder))

    def total_bytes(self) -> int:
        """The size of everything under the location."""
        if self.is_local:
            return sum(p.stat().st_size for p in Path(self.uri).rglob("*") if p.is_file())
        from pyarrow.fs import FileSelector, FileType

        with self._errors("cannot list the index"):
            infos = self.filesystem().get_file_info(FileSelector(self._key(""), allow_not_found=True, recursive=True))
        return sum(i.size or 0 for i in infos if i.type == FileType.File)

    def download(self, rel: str, dest: Path) -> None:
        """Copy the object `rel` to the local file `dest` (written whole, then renamed into place)."""
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with (
                self._errors(f"cannot read {rel}"),
                self.filesystem().open_input_stream(self._key(rel)) as src,
                tmp.open("wb") as out,
            ):
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def upload(self, src: Path, rel: str) -> None:
        """Copy the local file `src` to the object `rel` (appears whole or not at all)."""
        with (
            self._errors(f"cannot write {rel}"),
            src.open("rb") as fh,
            self.filesystem().open_output_stream(self._key(rel)) as out,
        ):
            shutil.copyfileobj(fh, out, 1 << 20)

    def lance_options(self) -> dict[str, str]:
        """storage_options for lancedb.connect (the same store and credentials as the files)."""
        return dict(self.options)


def storage_error(where: Location | str, what: str, exc: BaseException) -> AvsearchError:
    """One line for a store failure: bad credentials, no bucket, an endpoint that does not answer."""
    text = str(exc)
    if "ACCESS_DENIED" in text or "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text:
        return ConfigError(
            f"{where}: {what}: access denied (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --storage-option)"
        )
    if "NETWORK_CONNECTION" in text or "Could not connect" in text or "Connection refused" in text:
        # an outage, not bad input: nothing to fix in the request, try again later (the server's 503)
        return StorageError(f"{where}: {what}: the storage endpoint does not answer (AWS_ENDPOINT_URL?)")
    if "NoSuchBucket" in text or "NO_SUCH_BUCKET" in text:
        return InputError(f"{where}: {what}: no such bucket")
    return InputError(f"{where}: {what}: {text.splitlines()[0][:200] if text else type(exc).__name__}")


def _filesystem(scheme: str, options: Mapping[str, str]) -> Any:
    """A pyarrow filesystem for one scheme, from LanceDB-style storage options."""
    import pyarrow.fs as pafs

    if scheme == "s3":
        endpoint = options.get("aws_endpoint")
        return pafs.S3FileSystem(
            access_key=options.get("aws_access_key_id"),
            secret_key=options.get("aws_secret_access_key"),
            session_token=options.get("aws_session_token"),
            region=options.get("aws_region", "us-east-1"),
            endpoint_override=endpoint,
            connect_timeout=5,
            request_timeout=30,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3),
        )
    if scheme == "gs":  # untested here: credentials from GOOGLE_APPLICATION_CREDENTIALS or the metadata server
        token = options.get("google_access_token") or options.get("access_token")
        return pafs.GcsFileSystem(access_token=token) if token else pafs.GcsFileSystem()
    # az: untested here
    account = options.get("azure_storage_account_name") or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
    if not account:
        raise ConfigError("az:// needs the account: AZURE_STORAGE_ACCOUNT_NAME or --storage-option account_name=...")
    key = options.get("azure_storage_account_key") or os.environ.get("AZURE_STORAGE_ACCOUNT_KEY")
    return pafs.AzureFileSystem(account_name=account, account_key=key)
