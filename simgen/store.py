"""Where a dataset's bytes live: a local folder or an object-store URL (s3://bucket/prefix, and whatever
fsspec opens: gs://, az://, file://, ...). The one owner of storage I/O: everything that reads or writes a
dataset goes through these functions, so a location is a `Path` (local) or a URL string and nothing else
needs to know which.

Local paths keep POSIX semantics (atomic rename, fsync). URLs go through fsspec: an object appears whole
when its upload ends, so a write is atomic there too; `write_bytes(create=True)` is a conditional create
(S3's If-None-Match) where the store has one. Credentials and endpoints come the store's standard way
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_ENDPOINT_URL, instance roles, ...): this module never
takes, stores or prints one.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from pathlib import Path
from typing import IO, Any, Union
from urllib.parse import urlparse

Location = Union[str, Path]
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# seconds to wait for an object store's endpoint to accept a connection before saying it cannot be reached
# (botocore retries for longer, then names the URL without saying what to check)
CONNECT_TIMEOUT = 5.0
# per-protocol packages, for the message when one is missing
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
            "abfss": "adlfs"}


# packages whose exceptions are a store's failures, not the project's bugs
CLIENT_MODULES = {"botocore", "aiobotocore", "aiohttp", "google", "azure", "requests", "urllib3"}


class StoreError(OSError):
    """An object store that cannot be used as given; the message says what to check."""


def is_url(location: Location) -> bool:
    """A URL (scheme://...), not a local path. file:// URLs count: they take the lock-free protocol."""
    return isinstance(location, str) and bool(URL.match(location))


def location(text: Location) -> Location:
    """A command-line location as this module takes it: a URL stays a string, anything else is a Path."""
    return text if is_url(text) else Path(text)


def join(root: Location, *parts: str) -> Location:
    if is_url(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return Path(root).joinpath(*parts)


def name_of(loc: Location) -> str:
    return str(loc).rstrip("/").rsplit("/", 1)[-1] if is_url(loc) else Path(loc).name


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of a URL; a missing package or unknown scheme is one line."""
    scheme = url.split("://", 1)[0].lower()
    try:
        import fsspec
        # no listing cache: other writers (workers, drivers on other machines) change the prefix meanwhile
        return fsspec.core.url_to_fs(url, use_listings_cache=False)
    except ImportError:
        package = PACKAGES.get(scheme, "the fsspec package for it")
        extra = " (pip install -e '.[cloud]')" if package == "s3fs" else ""
        raise StoreError(f"{url}: {scheme}:// needs {package}: pip install {package}{extra}") from None
    except ValueError as e:
        raise StoreError(f"{url}: {scheme}:// is no storage that fsspec knows ({e})") from None


def _local(loc: Location) -> Path | None:
    if not is_url(loc):
        return Path(loc)
    if str(loc).startswith("file://"):
        return Path(urlparse(str(loc)).path)
    return None


def endpoint(url: str) -> str | None:
    """The S3-compatible endpoint a URL's requests go to, when one is set (AWS_ENDPOINT_URL_S3 or
    AWS_ENDPOINT_URL, as botocore reads them)."""
    if url.split("://", 1)[0].lower() not in ("s3", "s3a"):
        return None
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def check_reachable(url: str) -> None:
    """An object store's endpoint accepts a connection within CONNECT_TIMEOUT, else one line naming it."""
    at = endpoint(url)
    if not at:
        return
    parsed = urlparse(at)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        raise StoreError(f"{url}: cannot reach the object store at {at} ({e.strerror or e}); check "
                         "AWS_ENDPOINT_URL and that the store is running") from None


def explain(url: str, e: BaseException) -> StoreError:
    """A store's exception as one line that says what to check; never a credential."""
    bucket = urlparse(url).netloc
    if isinstance(e, PermissionError):
        return StoreError(f"{url}: access denied by the store: check the credentials (AWS_ACCESS_KEY_ID and "
                          f"AWS_SECRET_ACCESS_KEY, or the node's role) and their rights on {bucket}")
    if isinstance(e, FileNotFoundError) and _no_bucket(e):
        return StoreError(f"{url}: the bucket {bucket} does not exist; create it (aws s3 mb s3://{bucket}) or fix "
                          "the URL")
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return StoreError(f"{url}: the store failed: {text}")


def _no_bucket(e: BaseException) -> bool:
    text = str(e).lower()
    return "bucket does not exist" in text or "nosuchbucket" in text


def open_store(root: Location) -> None:
    """First contact with a dataset location: for a URL, the package is there, the endpoint answers, the
    bucket exists and the credentials may list the prefix (one listing of it). Local paths need nothing."""
    if not is_url(root) or _local(root) is not None:
        return
    fs, path = filesystem(str(root))
    check_reachable(str(root))
    try:
        fs.ls(path, refresh=True)
    except FileNotFoundError as e:
        if _no_bucket(e):
            raise explain(str(root), e) from None  # else: an empty prefix, which is fine
    except Exception as e:  # noqa: BLE001 - every store failure becomes one line
        raise explain(str(root), e) from None


def _call(loc: Location, what: str, *args: Any, **kwargs: Any) -> Any:
    fs, path = filesystem(str(loc))
    try:
        return getattr(fs, what)(path, *args, **kwargs)
    except FileNotFoundError as e:
        if _no_bucket(e):
            raise explain(str(loc), e) from None
        raise
    except FileExistsError:
        raise
    except (PermissionError, OSError) as e:
        raise explain(str(loc), e) from None
    except Exception as e:  # a client's own errors (botocore: an endpoint gone mid-run): one line too
        if type(e).__module__.split(".")[0] in CLIENT_MODULES:
            raise explain(str(loc), e) from None
        raise


def exists(loc: Location) -> bool:
    local = _local(loc)
    return local.exists() if local is not None else bool(_call(loc, "exists"))


def read_bytes(loc: Location) -> bytes:
    """A whole file or object. A missing one raises FileNotFoundError."""
    local = _local(loc)
    return local.read_bytes() if local is not None else _call(loc, "cat_file")


def read_many(locs: list[Location]) -> dict[Location, bytes]:
    """Several whole files at once (a store fetches them concurrently); missing ones are left out."""
    out: dict[Location, bytes] = {}
    remote = []
    for loc in locs:
        local = _local(loc)
        if local is None:
            remote.append(loc)
        elif local.is_file():
            out[loc] = local.read_bytes()
    if remote:
        fs, _ = filesystem(str(remote[0]))
        paths = {filesystem(str(loc))[1]: loc for loc in remote}
        try:
            got = fs.cat(list(paths), on_error="omit")
        except (PermissionError, OSError) as e:
            raise explain(str(remote[0]), e) from None
        out.update({paths[p]: data for p, data in got.items() if p in paths})
    return out


def open_binary(loc: Location) -> IO[bytes]:
    """A seekable binary reader (a store's reads ahead in blocks)."""
    local = _local(loc)
    return open(local, "rb") if local is not None else _call(loc, "open", "rb")


def sha256(loc: Location) -> str:
    """Hex sha256 of a file's or object's bytes, read in blocks."""
    with open_binary(loc) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def listing(folder: Location) -> dict[str, int]:
    """{name: size} of the files directly in a folder (or under a prefix); {} when there is none."""
    local = _local(folder)
    if local is not None:
        if not local.is_dir():
            return {}
        return {p.name: (p.stat().st_size if p.is_file() else -1) for p in local.iterdir()}
    try:
        entries = _call(folder, "ls", detail=True, refresh=True)
    except FileNotFoundError:
        return {}
    return {e["name"].rstrip("/").rsplit("/", 1)[-1]: (e.get("size") or 0) if e.get("type") == "file" else -1
            for e in entries}


def write_bytes(loc: Location, data: bytes, create: bool = False) -> bool:
    """Write a whole file atomically: locally a temporary file, fsynced, then renamed; in a store one upload.
    `create`: only when nothing is there yet (False when something was; on stores without a conditional create
    this checks first, which two writers can race)."""
    local = _local(loc)
    if local is None:
        fs, _ = filesystem(str(loc))
        if create and not _conditional_create(fs):
            if exists(loc):
                return False
            create = False
        try:
            _call(loc, "pipe_file", data, **({"mode": "create"} if create else {}))
        except FileExistsError:
            return False
        return True
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f"{local.name}.tmp-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not create:
            os.replace(tmp, local)
            return True
        try:
            os.link(tmp, local)  # fails when the name exists: an exclusive create on POSIX file systems
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _conditional_create(fs: Any) -> bool:
    return "s3" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def upload(local_file: Path, loc: Location) -> None:
    """Copy a finished local file to a location (one upload: the object appears whole)."""
    target = _local(loc)
    if target is not None:
        write_bytes(target, Path(local_file).read_bytes())
        return
    fs, path = filesystem(str(loc))
    try:
        fs.put_file(str(local_file), path)
    except (PermissionError, OSError) as e:
        raise explain(str(loc), e) from None


def remove(loc: Location) -> None:
    local = _local(loc)
    if local is not None:
        local.unlink(missing_ok=True)
        return
    try:
        _call(loc, "rm_file")
    except FileNotFoundError:
        pass


def probe_writable(root: Location) -> None:
    """Write and remove a small object under `root`: credentials that may read but not write are refused
    before any work starts."""
    probe = join(root, f".write-test-{socket.gethostname()}-{os.getpid()}")
    write_bytes(probe, b"")
    remove(probe)
