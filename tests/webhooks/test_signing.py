"""Standard Webhooks signatures: the published vector, tolerance, rotation, and what must not verify."""

from __future__ import annotations

import base64

import pytest

from callplane.core.webhooks.errors import InvalidSignature, InvalidWebhookSecret
from callplane.core.webhooks.signing import generate_secret, secret_key, sign, signature_headers, verify

# The vector published with the Standard Webhooks / Svix reference libraries.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _headers(signature: str = SIGNATURE, timestamp: int = TIMESTAMP, msg_id: str = MSG_ID) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_the_published_vector_reproduces() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == SIGNATURE
    assert signature_headers(SECRET, MSG_ID, BODY, timestamp=TIMESTAMP) == _headers()


def test_the_prefix_is_optional() -> None:
    assert sign(SECRET.removeprefix("whsec_"), MSG_ID, TIMESTAMP, BODY) == SIGNATURE


def test_verify_accepts_the_vector_within_tolerance() -> None:
    verify(SECRET, _headers(), BODY, now=TIMESTAMP)
    verify(SECRET, _headers(), BODY, now=TIMESTAMP + 299)
    verify(SECRET, _headers(), BODY, now=TIMESTAMP - 299)


def test_header_names_are_case_insensitive() -> None:
    verify(SECRET, {k.upper(): v for k, v in _headers().items()}, BODY, now=TIMESTAMP)


@pytest.mark.parametrize(
    ("headers", "body", "now", "says"),
    [
        (_headers(), b'{"test": 2432232315}', TIMESTAMP, "no matching signature"),
        (_headers(msg_id="msg_other"), BODY, TIMESTAMP, "no matching signature"),
        (_headers(timestamp=TIMESTAMP + 1), BODY, TIMESTAMP, "no matching signature"),
        (_headers(), BODY, TIMESTAMP + 301, "too old"),
        (_headers(), BODY, TIMESTAMP - 301, "future"),
        (_headers(signature="v1a," + SIGNATURE[3:]), BODY, TIMESTAMP, "no matching signature"),
        (_headers(signature=SIGNATURE[:-2] + "A="), BODY, TIMESTAMP, "no matching signature"),
        ({"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP)}, BODY, TIMESTAMP, "missing"),
        (_headers() | {"webhook-timestamp": "soon"}, BODY, TIMESTAMP, "not an integer"),
    ],
)
def test_verify_refuses(headers: dict[str, str], body: bytes, now: int, says: str) -> None:
    with pytest.raises(InvalidSignature, match=says):
        verify(SECRET, headers, body, now=now)


def test_one_valid_signature_among_several_is_enough() -> None:
    """During rotation the sender signs with the old and the new secret; either receiver config verifies."""
    new = generate_secret()
    headers = signature_headers([SECRET, new], MSG_ID, BODY, timestamp=TIMESTAMP)
    assert len(headers["webhook-signature"].split(" ")) == 2
    verify(SECRET, headers, BODY, now=TIMESTAMP)
    verify(new, headers, BODY, now=TIMESTAMP)
    verify(SECRET, _headers(signature="v1,bm9wZQ== " + SIGNATURE), BODY, now=TIMESTAMP)
    with pytest.raises(InvalidSignature):
        verify(generate_secret(), headers, BODY, now=TIMESTAMP)


def test_generated_secrets_are_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert secret_key(first) == base64.b64decode(first.removeprefix("whsec_"))


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", ""])
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(InvalidWebhookSecret):
        sign(secret, MSG_ID, TIMESTAMP, BODY)
