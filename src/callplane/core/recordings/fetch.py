"""Download a customer's recording to local disk: HTTP(S) URL, SFTP, or a local drop folder.

Every way in ends the same: bytes streamed into a temp file next to ``dest``, counted against a cap and
hashed on the way, fsynced, then renamed into place, so a crash never leaves a half file under ``dest``.
HTTP targets are checked by :class:`TargetPolicy` on every connection, redirects included, and the socket
goes to the very address that was checked while TLS still verifies (and sends SNI for) the URL's host name.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import hashlib
import logging
import os
import posixpath
import secrets
import ssl
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpcore
import httpx

from callplane.core.recordings.errors import (
    AccessDenied,
    ConnectionFailed,
    FetchError,
    FetchTimeout,
    HostKeyMismatch,
    InvalidRecordingLocation,
    RecordingNotFound,
    RecordingTooLarge,
    TargetRefused,
    TooManyRedirects,
    UnexpectedResponse,
    UpstreamUnavailable,
)
from callplane.core.recordings.targets import TargetPolicy

if TYPE_CHECKING:
    import asyncssh

log = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 256 * 1024
_USER_AGENT = "callplane-recording-fetch/1"


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Caps that bound what one fetch can cost us, whatever the far end does."""

    max_bytes: int = 1024 * 1024 * 1024
    max_redirects: int = 5
    total_timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0


class HttpAuthMethod(StrEnum):
    """The three Invoca auth configurations for a secure recording URL (same spelling as tenancy's)."""

    BEARER = "bearer"  # Authorization: Bearer <secret>
    QUERY = "query"  # ?<name>=<secret> appended to the URL
    HEADER = "header"  # <name>: <secret>


@dataclass(frozen=True, slots=True)
class HttpAuth:
    """How to authenticate a recording download; the secret arrives decrypted and never reaches a log."""

    method: HttpAuthMethod
    secret: str
    name: str = ""

    def __post_init__(self) -> None:
        if self.method is not HttpAuthMethod.BEARER and not self.name:
            raise InvalidRecordingLocation(f"{self.method.value} auth needs a parameter or header name")
        if any(c in self.secret + self.name for c in "\r\n\0"):
            raise InvalidRecordingLocation("auth name and secret must not contain line breaks")

    def __repr__(self) -> str:
        return f"HttpAuth(method={self.method.value!r}, name={self.name!r}, secret='[redacted]')"


@dataclass(frozen=True, slots=True)
class SftpAccess:
    """Direct SFTP access to a customer's recordings; the host key is pinned, never learned on first use."""

    host: str
    username: str
    known_host_key: str  # one OpenSSH public key line, e.g. "ssh-ed25519 AAAA..."
    base_dir: str = "."
    port: int = 22
    password: str | None = None
    private_key: str | None = None  # OpenSSH or PEM private key text
    private_key_passphrase: str | None = None

    def __repr__(self) -> str:
        return (
            f"SftpAccess(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"base_dir={self.base_dir!r}, password={'[redacted]' if self.password else None}, "
            f"private_key={'[redacted]' if self.private_key else None})"
        )


@dataclass(frozen=True, slots=True)
class DropFolder:
    """A local directory customers (or an operator's sync job) drop recordings into."""

    base_dir: Path


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What landed on disk; ``source`` is safe to log (no query string, no credentials)."""

    path: Path
    size_bytes: int
    sha256: str
    source: str
    content_type: str | None = None
    redirects: int = 0
    elapsed_ms: int = 0


# --- the sink: temp file, cap, hash, fsync, atomic rename ---------------------------------------------------------


class _Sink:
    """Writes into ``.<name>.<random>.part`` beside ``dest``; only ``commit`` makes ``dest`` appear."""

    def __init__(self, dest: Path, max_bytes: int, source: str) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
        self.source = source
        self.size = 0
        self._hash = hashlib.sha256()
        self._tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
        self._file: Any = None

    def __enter__(self) -> Self:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._tmp, "xb")  # closed in commit() or __exit__
        return self

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise RecordingTooLarge(f"{self.source} is larger than the {self.max_bytes}-byte limit; download aborted")
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self) -> tuple[int, str]:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.dest)
        _fsync_dir(self.dest.parent)
        return self.size, self._hash.hexdigest()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._file.closed:
            self._file.close()
        if exc_type is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (the file's data already is)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def refuse_if_declared_too_large(declared: int | None, limits: FetchLimits, source: str) -> None:
    if declared is not None and declared > limits.max_bytes:
        raise RecordingTooLarge(f"{source} is {declared} bytes, over the {limits.max_bytes}-byte limit")


# --- HTTP -------------------------------------------------------------------------------------------------------


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves and checks the host itself, then connects to the checked address (DNS pinning)."""

    def __init__(self, policy: TargetPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface, passed through
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._policy.resolve(host, port)
        failure: Exception | None = None
        for address in addresses:  # every one was checked; try them in resolver order
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("recordings are never fetched over a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _translate(exc: Exception, where: str) -> FetchError:
    if isinstance(exc, httpcore.TimeoutException):
        return FetchTimeout(f"{where} timed out ({type(exc).__name__})")
    if isinstance(exc, httpcore.RemoteProtocolError):
        return ConnectionFailed(f"{where} broke the HTTP exchange: {exc or 'connection closed early'}")
    if isinstance(exc, httpcore.NetworkError | OSError):
        return ConnectionFailed(f"connection to {where} failed: {exc or type(exc).__name__}")
    return UnexpectedResponse(f"{where}: {exc}")


class _GuardedStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any, where: str) -> None:
        self._stream = stream
        self._where = where

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise _translate(exc, self._where) from exc

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            await self._stream.aclose()


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """Built once: loading the system CA bundle costs ~30 ms of CPU, per fetch before. Never mutated after."""
    return ssl.create_default_context()


class _GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool whose every TCP connect goes through the policy."""

    def __init__(self, policy: TargetPolicy, ssl_context: ssl.SSLContext | None) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or _default_ssl_context(),
            network_backend=_GuardedBackend(policy),
            max_connections=4,
            retries=0,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        where = f"{request.url.host}:{request.url.port or _default_port(request.url.scheme)}"
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = await self._pool.handle_async_request(core_request)
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            raise _translate(exc, where) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_GuardedStream(response.stream, where),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def display_url(url: httpx.URL | str) -> str:
    """The URL without credentials or query string: presigned signatures and tokens live there."""
    url = httpx.URL(url)
    port = f":{url.port}" if url.port is not None else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    query = "?…" if url.query else ""
    return f"{url.scheme}://{host}{port}{url.path}{query}"


def _check_url(url: httpx.URL) -> None:
    if url.scheme not in ("http", "https"):
        raise InvalidRecordingLocation(
            f"recording URLs must use http or https, not {url.scheme or 'no scheme'!r} ({display_url(url)})"
        )
    if not url.host:
        raise InvalidRecordingLocation(f"recording URL has no host ({display_url(url)})")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def _raise_for_status(response: httpx.Response, source: str) -> None:
    status = response.status_code
    if status in (200, 203):
        return
    said = f"{source} answered {status} {response.reason_phrase}".rstrip()
    if status in (401, 403):
        raise AccessDenied(f"{said}; check the recording auth configuration, or that a presigned URL has not expired")
    if status in (404, 410):
        raise RecordingNotFound(f"{said}; check the recording URL")
    if status in (408, 425, 429) or status >= 500:
        retry_after = _retry_after(response.headers.get("retry-after"))
        raise UpstreamUnavailable(f"{said}; will retry", retry_after_s=retry_after)
    raise UnexpectedResponse(f"{said}, expected 200 with the recording")


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    def origin(url: httpx.URL) -> tuple[str, str, int]:
        return url.scheme, url.host, url.port or _default_port(url.scheme)

    return origin(a) == origin(b)


async def fetch_http(
    url: str,
    *,
    dest: Path,
    policy: TargetPolicy,
    limits: FetchLimits | None = None,
    auth: HttpAuth | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> FetchResult:
    """Download ``url`` (public, presigned or authenticated) to ``dest``.

    Redirects are followed here, not by httpx, so each hop's scheme is checked and auth headers are not
    handed to another origin (a presigned redirect target carries its own signature). The query-string
    secret is added to the first URL only, for the same reason.
    """
    limits = limits or FetchLimits()
    started = time.monotonic()
    try:
        start_url = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidRecordingLocation(f"the recording URL is not a valid URL: {exc}") from exc
    _check_url(start_url)
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity", "Accept": "*/*"}
    secret_headers: dict[str, str] = {}
    if auth is not None:
        if auth.method is HttpAuthMethod.BEARER:
            secret_headers["Authorization"] = f"Bearer {auth.secret}"
        elif auth.method is HttpAuthMethod.HEADER:
            secret_headers[auth.name] = auth.secret
        else:
            start_url = start_url.copy_add_param(auth.name, auth.secret)
    timeout = httpx.Timeout(
        connect=limits.connect_timeout_s, read=limits.read_timeout_s, write=limits.read_timeout_s, pool=None
    )
    log.info("fetching recording", extra={"fields": {"source": display_url(start_url)}})
    try:
        async with asyncio.timeout(limits.total_timeout_s):
            async with httpx.AsyncClient(
                transport=_GuardedTransport(policy, ssl_context), timeout=timeout, trust_env=False
            ) as client:
                current, redirects = start_url, 0
                while True:
                    _check_url(current)
                    send = headers | (secret_headers if _same_origin(current, start_url) else {})
                    response = await client.send(client.build_request("GET", current, headers=send), stream=True)
                    try:
                        source = display_url(current)
                        if response.status_code in _REDIRECTS:
                            location = response.headers.get("location")
                            if not location:
                                raise UnexpectedResponse(f"{source} redirected without a Location header")
                            if redirects >= limits.max_redirects:
                                raise TooManyRedirects(
                                    f"{display_url(start_url)} redirected more than {limits.max_redirects} times"
                                )
                            redirects += 1
                            current = current.join(location)
                            continue
                        _raise_for_status(response, source)
                        length = response.headers.get("content-length")
                        declared = int(length) if length and length.isdigit() else None
                        refuse_if_declared_too_large(declared, limits, source)
                        with _Sink(dest, limits.max_bytes, source) as sink:
                            async for chunk in response.aiter_raw(_CHUNK):
                                sink.write(chunk)
                            size, digest = sink.commit()
                        content_type = response.headers.get("content-type")
                    finally:
                        await response.aclose()
                    break
    except TimeoutError as exc:
        raise FetchTimeout(
            f"downloading {display_url(start_url)} took longer than {limits.total_timeout_s:g} s"
        ) from exc
    except httpx.InvalidURL as exc:
        raise InvalidRecordingLocation(f"a redirect from {display_url(start_url)} gave an invalid URL: {exc}") from exc
    result = FetchResult(
        path=dest,
        size_bytes=size,
        sha256=digest,
        source=source,
        content_type=content_type,
        redirects=redirects,
        elapsed_ms=round((time.monotonic() - started) * 1000),
    )
    log.info("fetched recording", extra={"fields": {"source": source, "bytes": size, "redirects": redirects}})
    return result


# --- file names under a base directory (SFTP and drop folder) -----------------------------------------------------


def object_name(prefix: str, filename: str) -> str:
    """``prefix/filename`` in a customer's bucket or container; the name may not climb out of the prefix."""
    parts = safe_relative_parts(filename)
    prefix = prefix.strip("/")
    return "/".join([prefix, *parts] if prefix else parts)


async def write_chunks(
    next_chunk: Callable[[], bytes | None], dest: Path, limits: FetchLimits, source: str
) -> tuple[int, str]:
    """Stream a blocking SDK reader (None at the end) into ``dest``, size-capped and committed atomically, as the
    URL and SFTP fetches do: its size and SHA-256."""
    with _Sink(dest, limits.max_bytes, source) as sink:
        while (chunk := await asyncio.to_thread(next_chunk)) is not None:
            sink.write(chunk)
        return await asyncio.to_thread(sink.commit)


def safe_relative_parts(filename: str) -> list[str]:
    """Split a customer-given file name into path parts, refusing anything that could leave the base dir."""
    if not filename or "\0" in filename:
        raise InvalidRecordingLocation("the recording file name is empty or contains a NUL byte")
    if "\\" in filename:
        raise InvalidRecordingLocation(f"the recording file name {filename!r} contains a backslash")
    if filename.startswith("/"):
        raise InvalidRecordingLocation(f"the recording file name {filename!r} must be relative to the base folder")
    parts = [p for p in filename.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise InvalidRecordingLocation(f"the recording file name {filename!r} leaves the base folder")
    return parts


# --- SFTP -------------------------------------------------------------------------------------------------------


def _sftp_error(exc: Exception, access: SftpAccess, remote: str) -> FetchError:
    import asyncssh  # imported where SFTP is used: it adds about 0.3 s to every process start

    where = f"sftp://{access.username}@{access.host}:{access.port}"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyMismatch(f"{where} presented a host key that does not match the configured known host key")
    if isinstance(exc, asyncssh.PermissionDenied):
        return AccessDenied(f"{where} refused the login; check the SFTP username and password or private key")
    if isinstance(exc, asyncssh.SFTPNoSuchFile):
        return RecordingNotFound(f"{where} has no file {remote!r}")
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return AccessDenied(f"{where} does not let this user read {remote!r}")
    if isinstance(exc, asyncssh.KeyImportError):
        return AccessDenied(f"the private key configured for {where} cannot be read: {exc}")
    return ConnectionFailed(f"{where} failed: {exc or type(exc).__name__}")


async def fetch_sftp(
    access: SftpAccess,
    filename: str,
    *,
    dest: Path,
    policy: TargetPolicy,
    limits: FetchLimits | None = None,
) -> FetchResult:
    """Download ``base_dir/filename`` over SFTP; the server-side real path must stay under ``base_dir``."""
    import asyncssh

    limits = limits or FetchLimits()
    started = time.monotonic()
    parts = safe_relative_parts(filename)
    remote = posixpath.join(access.base_dir, *parts)
    source = f"sftp://{access.host}:{access.port}/{remote.lstrip('/')}"
    try:
        host_key = asyncssh.import_public_key(access.known_host_key)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise InvalidRecordingLocation(f"the known host key for {access.host} is not an OpenSSH public key") from exc
    try:
        async with asyncio.timeout(limits.total_timeout_s):
            addresses = await policy.resolve(access.host, access.port)
            client_keys = (
                [asyncssh.import_private_key(access.private_key, access.private_key_passphrase)]
                if access.private_key
                else None
            )
            connection = await _ssh_connect(access, addresses, host_key, client_keys, limits)
            async with connection, connection.start_sftp_client() as sftp:
                base_real = await sftp.realpath(access.base_dir)
                real = await sftp.realpath(remote)
                if real != base_real and not real.startswith(base_real.rstrip("/") + "/"):
                    raise InvalidRecordingLocation(f"{filename!r} resolves outside the SFTP base folder")
                attrs = await sftp.stat(real)
                if attrs.type != asyncssh.FILEXFER_TYPE_REGULAR:
                    raise RecordingNotFound(f"{source} is not a regular file")
                refuse_if_declared_too_large(attrs.size, limits, source)
                with _Sink(dest, limits.max_bytes, source) as sink:
                    async with sftp.open(real, "rb") as remote_file:
                        while chunk := await remote_file.read(4 * _CHUNK):
                            assert isinstance(chunk, bytes)  # binary mode; asyncssh types it as AnyStr
                            sink.write(chunk)
                    size, digest = sink.commit()
    except TimeoutError as exc:
        raise FetchTimeout(f"downloading {source} took longer than {limits.total_timeout_s:g} s") from exc
    except (asyncssh.Error, OSError) as exc:
        raise _sftp_error(exc, access, remote) from exc
    log.info("fetched recording", extra={"fields": {"source": source, "bytes": size}})
    return FetchResult(
        path=dest, size_bytes=size, sha256=digest, source=source, elapsed_ms=round((time.monotonic() - started) * 1000)
    )


async def _ssh_connect(
    access: SftpAccess,
    addresses: list[Any],
    host_key: asyncssh.SSHKey,
    client_keys: list[asyncssh.SSHKey] | None,
    limits: FetchLimits,
) -> asyncssh.SSHClientConnection:
    import asyncssh

    failure: Exception | None = None
    for address in addresses:
        try:
            return await asyncssh.connect(
                str(address),
                access.port,
                username=access.username,
                password=access.password,
                client_keys=client_keys,
                known_hosts=([host_key], [], []),
                agent_path=None,  # never offer the worker's own agent keys to a customer's server
                config=None,
                connect_timeout=limits.connect_timeout_s,
                login_timeout=limits.connect_timeout_s,
                preferred_auth=("publickey",) if client_keys else ("password", "keyboard-interactive"),
            )
        except (OSError, asyncssh.ConnectionLost) as exc:  # try the next checked address
            failure = exc
    assert failure is not None
    raise failure


# --- local drop folder ------------------------------------------------------------------------------------------


def _copy_from_drop(folder: DropFolder, filename: str, dest: Path, limits: FetchLimits) -> tuple[int, str, str]:
    base = Path(os.path.realpath(folder.base_dir))
    candidate = base.joinpath(*safe_relative_parts(filename))
    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(base) or real == base:
        raise InvalidRecordingLocation(f"{filename!r} resolves outside the drop folder")
    source = f"drop:{real.relative_to(base).as_posix()}"
    try:
        # O_NOFOLLOW: the real path has no symlinks left; one appearing now is a swap attempt.
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise RecordingNotFound(f"the drop folder has no file {filename!r}") from exc
    except PermissionError as exc:
        raise AccessDenied(f"the drop folder file {filename!r} is not readable by callplane") from exc
    except OSError as exc:
        raise InvalidRecordingLocation(f"the drop folder file {filename!r} cannot be opened: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise RecordingNotFound(f"{source} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        refuse_if_declared_too_large(info.st_size, limits, source)
        with _Sink(dest, limits.max_bytes, source) as sink:
            while chunk := handle.read(4 * _CHUNK):
                sink.write(chunk)
            size, digest = sink.commit()
    return size, digest, source


async def fetch_drop_folder(
    folder: DropFolder, filename: str, *, dest: Path, limits: FetchLimits | None = None
) -> FetchResult:
    """Copy ``base_dir/filename`` to ``dest``; refuses traversal and symlinks that lead out of the folder."""
    limits = limits or FetchLimits()
    started = time.monotonic()
    size, digest, source = await asyncio.to_thread(_copy_from_drop, folder, filename, dest, limits)
    return FetchResult(
        path=dest, size_bytes=size, sha256=digest, source=source, elapsed_ms=round((time.monotonic() - started) * 1000)
    )
