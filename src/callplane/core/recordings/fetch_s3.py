"""Download a customer's recording from their own S3 bucket (Invoca's direct recording access).

The same ending as every other fetch (``fetch.py``): a temp file beside ``dest``, capped, hashed, fsynced, renamed;
and the same error classes, so a missing object, refused keys or a flaky endpoint fail, or retry, exactly as a
recording URL would. botocore's own retries are off: the job queue's backoff is the one retry policy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from callplane.core.recordings.errors import (
    AccessDenied,
    ConnectionFailed,
    FetchError,
    FetchTimeout,
    InvalidRecordingLocation,
    RecordingNotFound,
    UnexpectedResponse,
    UpstreamUnavailable,
)
from callplane.core.recordings.fetch import (
    FetchLimits,
    FetchResult,
    object_name,
    refuse_if_declared_too_large,
    write_chunks,
)
from callplane.core.recordings.s3 import error_code
from callplane.core.recordings.targets import TargetPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_DENIED = frozenset({"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"})
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_BUSY = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500", "429"})


@dataclass(frozen=True, slots=True)
class S3Access:
    """Where a customer's recordings are and the keys to read them."""

    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None

    def __repr__(self) -> str:
        return (
            f"S3Access(bucket={self.bucket!r}, region={self.region!r}, prefix={self.prefix!r}, "
            f"endpoint_url={self.endpoint_url!r}, access_key_id={self.access_key_id!r}, secret_access_key='[redacted]')"
        )


def _client(access: S3Access, limits: FetchLimits) -> S3Client:
    return boto3.session.Session(
        aws_access_key_id=access.access_key_id,
        aws_secret_access_key=access.secret_access_key,
        region_name=access.region,
    ).client(
        "s3",
        endpoint_url=access.endpoint_url,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if access.endpoint_url else "auto"},
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=limits.connect_timeout_s,
            read_timeout=limits.read_timeout_s,
        ),
    )


async def _check_endpoint(access: S3Access, policy: TargetPolicy) -> None:
    """A customer-given endpoint is a target like any URL: it must be public unless allow-listed."""
    if access.endpoint_url is None:
        return  # AWS's own endpoints
    url = httpx.URL(access.endpoint_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidRecordingLocation(f"the S3 endpoint {access.endpoint_url!r} is not an http(s) URL")
    await policy.resolve(url.host, url.port or (443 if url.scheme == "https" else 80))


def _translate(exc: Exception, source: str) -> FetchError:
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in _MISSING:
            return RecordingNotFound(f"{source} does not exist; check the recording_filename (or external id)")
        if code == "NoSuchBucket":
            return RecordingNotFound(f"{source}: the bucket does not exist; check the S3 access configuration")
        if code in _DENIED:
            return AccessDenied(f"{source} refused the configured keys ({code}); check the S3 access configuration")
        if code in _BUSY or code.startswith("5"):
            return UpstreamUnavailable(f"{source} answered {code}; will retry")
        return UnexpectedResponse(f"{source} answered {code or 'an error'}")
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return FetchTimeout(f"{source} timed out ({type(exc).__name__})")
    if isinstance(exc, EndpointConnectionError):
        return ConnectionFailed(f"connection to the S3 endpoint for {source} failed")
    return ConnectionFailed(f"{source} failed: {exc or type(exc).__name__}")


async def fetch_s3(
    access: S3Access,
    filename: str,
    *,
    dest: Path,
    policy: TargetPolicy,
    limits: FetchLimits | None = None,
) -> FetchResult:
    """Download ``prefix/filename`` from the bucket to ``dest``; the name may not climb out of the prefix."""
    limits = limits or FetchLimits()
    started = time.monotonic()
    key = object_name(access.prefix, filename)
    source = f"s3://{access.bucket}/{key}"
    await _check_endpoint(access, policy)
    client = _client(access, limits)
    try:
        async with asyncio.timeout(limits.total_timeout_s):
            head: Any = await asyncio.to_thread(lambda: client.head_object(Bucket=access.bucket, Key=key))
            refuse_if_declared_too_large(int(head["ContentLength"]), limits, source)
            response: Any = await asyncio.to_thread(lambda: client.get_object(Bucket=access.bucket, Key=key))
            body = response["Body"]
            try:
                size, digest = await write_chunks(lambda: body.read(_CHUNK) or None, dest, limits, source)
            finally:
                body.close()
    except TimeoutError as exc:
        raise FetchTimeout(f"downloading {source} took longer than {limits.total_timeout_s:g} s") from exc
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, source) from exc
    finally:
        client.close()
    log.info("fetched recording", extra={"fields": {"source": source, "bytes": size}})
    return FetchResult(
        path=dest,
        size_bytes=size,
        sha256=digest,
        source=source,
        content_type=head.get("ContentType"),
        elapsed_ms=round((time.monotonic() - started) * 1000),
    )
