"""Download a customer's recording from their own Azure Blob Storage container (Invoca's direct recording access).

Mirrors ``fetch_s3``: the shared sink of ``fetch.py`` (temp file, cap, hash, fsync, rename), the same error classes,
and the SDK's own retries off so the job queue's backoff is the one retry policy. The SDK is blocking (its async
client needs aiohttp), so it runs in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobClient

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
from callplane.core.recordings.targets import TargetPolicy

log = logging.getLogger(__name__)

AzureCredentialKind = Literal["key", "sas"]


@dataclass(frozen=True, slots=True)
class AzureBlobAccess:
    """A storage account's container, and an account key or a SAS token to read it."""

    account_name: str
    container: str
    credential_kind: AzureCredentialKind
    credential: str
    prefix: str = ""
    endpoint_url: str | None = None  # the blob service URL; unset: https://<account>.blob.core.windows.net

    @property
    def service_url(self) -> str:
        return (self.endpoint_url or f"https://{self.account_name}.blob.core.windows.net").rstrip("/")

    def __repr__(self) -> str:
        return (
            f"AzureBlobAccess(account_name={self.account_name!r}, container={self.container!r}, "
            f"prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r}, credential_kind={self.credential_kind!r}, "
            "credential='[redacted]')"
        )


def _blob_client(access: AzureBlobAccess, blob: str, limits: FetchLimits) -> BlobClient:
    credential: Any = (
        {"account_name": access.account_name, "account_key": access.credential}
        if access.credential_kind == "key"
        else access.credential.lstrip("?")
    )
    return BlobClient(
        access.service_url,
        container_name=access.container,
        blob_name=blob,
        credential=credential,
        retry_total=0,
        connection_timeout=limits.connect_timeout_s,
        read_timeout=limits.read_timeout_s,
    )


async def _check_endpoint(access: AzureBlobAccess, policy: TargetPolicy) -> None:
    """The blob service is a target like any URL: it must be public unless allow-listed."""
    url = httpx.URL(access.service_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidRecordingLocation(f"the Azure blob endpoint {access.service_url!r} is not an http(s) URL")
    await policy.resolve(url.host, url.port or (443 if url.scheme == "https" else 80))


def _translate(exc: AzureError, source: str) -> FetchError:
    if isinstance(exc, ResourceNotFoundError):
        return RecordingNotFound(f"{source} does not exist; check the recording_filename (or external id)")
    if isinstance(exc, ClientAuthenticationError):
        return AccessDenied(f"{source} refused the configured key or SAS; check the Azure Blob access configuration")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if status in (401, 403):
            return AccessDenied(
                f"{source} refused the configured key or SAS ({status}); check the Azure Blob access configuration"
            )
        if status in (408, 429) or status >= 500:
            return UpstreamUnavailable(f"{source} answered {status}; will retry")
        return UnexpectedResponse(f"{source} answered {status or 'an error'}")
    if isinstance(exc, ServiceResponseError):
        return FetchTimeout(f"{source} did not answer in time or broke the exchange")
    if isinstance(exc, ServiceRequestError):
        return ConnectionFailed(f"connection to the Azure blob endpoint for {source} failed")
    return ConnectionFailed(f"{source} failed: {exc or type(exc).__name__}")


async def fetch_azure_blob(
    access: AzureBlobAccess,
    filename: str,
    *,
    dest: Path,
    policy: TargetPolicy,
    limits: FetchLimits | None = None,
) -> FetchResult:
    """Download ``prefix/filename`` from the container to ``dest``; the name may not climb out of the prefix."""
    limits = limits or FetchLimits()
    started = time.monotonic()
    blob = object_name(access.prefix, filename)
    source = f"azure://{access.account_name}/{access.container}/{blob}"
    await _check_endpoint(access, policy)
    client = _blob_client(access, blob, limits)
    try:
        async with asyncio.timeout(limits.total_timeout_s):
            downloader: Any = await asyncio.to_thread(client.download_blob)
            refuse_if_declared_too_large(int(downloader.size), limits, source)
            chunks = downloader.chunks()
            size, digest = await write_chunks(lambda: next(chunks, None), dest, limits, source)
            content_type = downloader.properties.content_settings.content_type
    except TimeoutError as exc:
        raise FetchTimeout(f"downloading {source} took longer than {limits.total_timeout_s:g} s") from exc
    except AzureError as exc:
        raise _translate(exc, source) from exc
    finally:
        client.close()
    log.info("fetched recording", extra={"fields": {"source": source, "bytes": size}})
    return FetchResult(
        path=dest,
        size_bytes=size,
        sha256=digest,
        source=source,
        content_type=content_type,
        elapsed_ms=round((time.monotonic() - started) * 1000),
    )
