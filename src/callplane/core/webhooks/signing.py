"""Standard Webhooks 1.0 signatures, so a receiver can use any Standard Webhooks (or Svix) library to verify.

``webhook-signature: v1,<base64 HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>")>``. The id is
the delivery's and stays the same across retries (receivers dedupe on it); the timestamp is per attempt, and
a receiver refuses one outside its tolerance, so a captured request cannot be replayed later. Several
space-separated signatures may appear (secret rotation); one valid signature is enough.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

from callplane.core.webhooks.errors import InvalidSignature, InvalidWebhookSecret

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 32
TOLERANCE_S = 300  # the reference libraries' WEBHOOK_TOLERANCE_IN_SECONDS

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def generate_secret() -> str:
    """A fresh ``whsec_<base64 of 32 random bytes>`` secret (the spec asks for 24 to 64 bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded part after ``whsec_`` (the prefix is optional, as in the references)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidWebhookSecret() from exc
    if not key:
        raise InvalidWebhookSecret()
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``msg_id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(
    secret: str | list[str], msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers for one attempt; a list of secrets yields one signature each (rotation overlap)."""
    ts = int(time.time()) if timestamp is None else timestamp
    keys = [secret] if isinstance(secret, str) else secret
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: " ".join(sign(key, msg_id, ts, body) for key in keys),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Raise ``InvalidSignature`` unless one ``v1`` signature matches and the timestamp is within tolerance.

    ``headers`` must look names up case-insensitively (an HTTP library's header mapping does) or use the
    lower-case names. ``body`` is the raw request body: re-serialized JSON would not verify.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get(ID_HEADER)
    raw_ts = lowered.get(TIMESTAMP_HEADER)
    raw_sigs = lowered.get(SIGNATURE_HEADER)
    if not msg_id or not raw_ts or not raw_sigs:
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        ts = int(raw_ts)
    except ValueError as exc:
        raise InvalidSignature("webhook-timestamp is not an integer") from exc
    current = time.time() if now is None else now
    if ts < current - tolerance_s:
        raise InvalidSignature("webhook-timestamp is too old")
    if ts > current + tolerance_s:
        raise InvalidSignature("webhook-timestamp is too far in the future")
    expected = sign(secret, msg_id, ts, body).split(",", 1)[1].encode()
    for candidate in raw_sigs.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return
    raise InvalidSignature("no matching signature")
