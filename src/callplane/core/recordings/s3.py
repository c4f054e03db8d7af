"""Recordings in an S3-compatible bucket (AWS S3, MinIO, Ceph, moto's server): the shared store of a multi-node setup.

boto3 is blocking, so every call runs in a worker thread; one client is shared (boto3 clients are thread-safe).
An S3 PUT is all or nothing, which gives the same "never half a recording under a real key" as the local store's
rename. Range reads follow the local store's slice semantics exactly, so the API's Range handling is unchanged.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from callplane.core.recordings.errors import RangeNotSatisfiable, StorageError, StoredObjectNotFound
from callplane.core.recordings.storage import StoredObject, validate_key

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_CHUNK = 256 * 1024
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})

ServerSideEncryption = Literal["AES256", "aws:kms"]


@dataclass(frozen=True, slots=True)
class S3StorageConfig:
    """Where and how to reach the bucket; unset credentials mean boto3's own chain (environment, instance role)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None  # unset: AWS; set for MinIO, Ceph, moto ...
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    server_side_encryption: ServerSideEncryption | None = None
    sse_kms_key_id: str | None = None  # with aws:kms; unset: the bucket's default KMS key
    max_connections: int = 16

    def __repr__(self) -> str:
        return (
            f"S3StorageConfig(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r}, "
            f"region={self.region!r}, access_key_id={self.access_key_id!r}, secret_access_key='[redacted]')"
        )


def make_s3_client(config: S3StorageConfig) -> S3Client:
    """A client with bounded retries (botocore's standard mode retries throttling and 5xx itself)."""
    session = boto3.session.Session(
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        aws_session_token=config.session_token,
        region_name=config.region,
    )
    return session.client(
        "s3",
        endpoint_url=config.endpoint_url,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": config.addressing_style},
            retries={"mode": "standard", "max_attempts": 4},
            max_pool_connections=config.max_connections,
            connect_timeout=10,
            read_timeout=60,
        ),
    )


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3RecordingStorage:
    """The RecordingStorage of a bucket; keys are validated as for local disk and put under ``prefix``."""

    def __init__(self, config: S3StorageConfig, *, client: S3Client | None = None) -> None:
        self.config = config
        self.bucket = config.bucket
        prefix = config.prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.client = client or make_s3_client(config)

    def object_key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _write_args(self, key: str) -> dict[str, Any]:
        args: dict[str, Any] = {"ContentType": mimetypes.guess_type(key)[0] or "application/octet-stream"}
        if self.config.server_side_encryption is not None:
            args["ServerSideEncryption"] = self.config.server_side_encryption
            if self.config.server_side_encryption == "aws:kms" and self.config.sse_kms_key_id:
                args["SSEKMSKeyId"] = self.config.sse_kms_key_id
        return args

    async def put_file(self, key: str, source: Path) -> StoredObject:
        object_key = self.object_key(key)
        size = (await asyncio.to_thread(source.stat)).st_size
        try:
            # upload_file switches to a multipart upload for big files; S3 shows the object only when it completes.
            await asyncio.to_thread(
                self.client.upload_file, str(source), self.bucket, object_key, ExtraArgs=self._write_args(key)
            )
        except ClientError as exc:
            raise StorageError(f"storing {key!r} in bucket {self.bucket!r} failed: {error_code(exc)}") from exc
        return StoredObject(key=key, size_bytes=size)

    async def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                return None
            raise StorageError(f"reading {key!r} from bucket {self.bucket!r} failed: {error_code(exc)}") from exc
        return dict(head)

    async def size(self, key: str) -> int:
        head = await self._head(key)
        if head is None:
            raise StoredObjectNotFound(f"no stored recording {key!r}")
        return int(head["ContentLength"])

    async def exists(self, key: str) -> bool:
        return await self._head(key) is not None

    async def delete(self, key: str) -> bool:
        # S3 deletes are idempotent and do not say whether something was there; the HEAD before does.
        if not await self.exists(key):
            return False
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self.object_key(key))
        return True

    async def open_read(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        object_key = self.object_key(key)
        if start < 0 or (end is not None and end < start):
            raise RangeNotSatisfiable(f"range {start}-{end} is outside {key!r}")
        if end == start:  # an empty slice: only whether it lies inside the object matters
            size = await self.size(key)
            if start >= size and not (start == 0 and size == 0):
                raise RangeNotSatisfiable(f"range {start}-{end} is outside {key!r} ({size} bytes)")
            return
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": object_key}
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = await asyncio.to_thread(lambda: self.client.get_object(**request))
        except ClientError as exc:
            code = error_code(exc)
            if code in _NOT_FOUND:
                raise StoredObjectNotFound(f"no stored recording {key!r}") from exc
            if code in ("InvalidRange", "416"):
                size = await self.size(key)
                if start == 0 and size == 0:  # any range of an empty object reads as nothing, as on local disk
                    return
                raise RangeNotSatisfiable(f"range {start}-{end} is outside {key!r} ({size} bytes)") from exc
            raise StorageError(f"reading {key!r} from bucket {self.bucket!r} failed: {code}") from exc
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, _CHUNK):
                yield chunk
        finally:
            body.close()

    async def download_url(
        self, key: str, *, expires_s: int, content_type: str | None = None, filename: str | None = None
    ) -> str | None:
        """A presigned GET for ``key``, valid ``expires_s`` seconds (signing is local: no request is made)."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if content_type:
            params["ResponseContentType"] = content_type
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)

    def close(self) -> None:
        self.client.close()
