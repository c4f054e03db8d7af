"""HTTP(S) recording download against a real loopback server: access options, redirects, caps, SSRF."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from pathlib import Path

import pytest
from recordings_support import SECRET, AudioFiles, RecordingServer

from callplane.core.recordings.errors import (
    AccessDenied,
    ConnectionFailed,
    FetchTimeout,
    InvalidRecordingLocation,
    RecordingError,
    RecordingNotFound,
    RecordingTooLarge,
    TargetRefused,
    TooManyRedirects,
    UnexpectedResponse,
    UpstreamUnavailable,
)
from callplane.core.recordings.fetch import FetchLimits, FetchResult, HttpAuth, HttpAuthMethod, fetch_http
from callplane.core.recordings.targets import TargetPolicy

LOOPBACK = TargetPolicy.from_config(["127.0.0.1/32"])


def fetch(url: str, dest: Path, policy: TargetPolicy = LOOPBACK, **kwargs: object) -> FetchResult:
    return asyncio.run(fetch_http(url, dest=dest, policy=policy, **kwargs))  # type: ignore[arg-type]


def no_leftovers(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".part")]


def test_public_url_downloads_the_exact_bytes(http_server: RecordingServer, audio: AudioFiles, tmp_path: Path) -> None:
    dest = tmp_path / "rec.bin"
    result = fetch(http_server.url("/files/stereo.wav?X-Amz-Signature=abc"), dest)
    expected = audio.stereo_wav.read_bytes()
    assert dest.read_bytes() == expected
    assert result.size_bytes == len(expected)
    assert result.sha256 == hashlib.sha256(expected).hexdigest()
    assert result.redirects == 0
    assert "X-Amz-Signature" not in result.source and "abc" not in result.source  # presigned query never shown
    assert no_leftovers(tmp_path)


@pytest.mark.parametrize(
    ("auth", "path"),
    [
        (HttpAuth(HttpAuthMethod.BEARER, SECRET), "/auth/bearer/stereo.mp3"),
        (HttpAuth(HttpAuthMethod.QUERY, SECRET, name="api_key"), "/auth/query/stereo.mp3"),
        (HttpAuth(HttpAuthMethod.HEADER, SECRET, name="X-Recording-Key"), "/auth/header/stereo.mp3"),
    ],
    ids=["bearer", "query", "header"],
)
def test_each_auth_configuration_is_verified_by_the_server(
    http_server: RecordingServer, audio: AudioFiles, tmp_path: Path, auth: HttpAuth, path: str
) -> None:
    dest = tmp_path / "rec.mp3"
    with pytest.raises(AccessDenied) as denied:
        fetch(http_server.url(path), dest)
    assert denied.value.permanent and "auth configuration" in denied.value.message
    fetch(http_server.url(path), dest, auth=auth)
    assert dest.read_bytes() == audio.stereo_mp3.read_bytes()


def test_secrets_never_reach_logs_messages_or_reprs(
    http_server: RecordingServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="callplane")
    auth = HttpAuth(HttpAuthMethod.QUERY, SECRET, name="api_key")
    result = fetch(http_server.url("/auth/query/stereo.mp3"), tmp_path / "a.mp3", auth=auth)
    with pytest.raises(RecordingNotFound) as missing:
        fetch(http_server.url("/auth/query/nope.mp3"), tmp_path / "b.mp3", auth=auth)
    logged = " ".join(str(getattr(r, "fields", "")) + r.getMessage() for r in caplog.records)
    for text in (logged, result.source, missing.value.message, repr(auth)):
        assert SECRET not in text


def test_auth_headers_are_not_forwarded_to_another_origin(http_server: RecordingServer, tmp_path: Path) -> None:
    # 127.0.0.1 -> localhost: same server, different origin; localhost may also resolve to ::1, allow both.
    policy = TargetPolicy.from_config(["127.0.0.1/32", "::1/128"])
    target = http_server.url("/files/stereo.wav", host="localhost")
    url = http_server.url(f"/auth-redirect/x?to={target}")
    fetch(url, tmp_path / "rec.wav", policy=policy, auth=HttpAuth(HttpAuthMethod.BEARER, SECRET))
    final = [
        r
        for r in http_server.seen
        if r.path == "/files/stereo.wav" and r.headers.get("host", "").startswith("localhost")
    ]
    assert final and "authorization" not in final[-1].headers


def test_redirect_chain_within_cap_is_followed(http_server: RecordingServer, audio: AudioFiles, tmp_path: Path) -> None:
    result = fetch(http_server.url("/chain/3"), tmp_path / "rec.wav", limits=FetchLimits(max_redirects=4))
    assert result.redirects == 4
    assert (tmp_path / "rec.wav").read_bytes() == audio.stereo_wav.read_bytes()


def test_too_many_redirects_is_permanent(http_server: RecordingServer, tmp_path: Path) -> None:
    with pytest.raises(TooManyRedirects) as caught:
        fetch(http_server.url("/chain/5"), tmp_path / "rec.wav", limits=FetchLimits(max_redirects=3))
    assert caught.value.permanent
    assert not (tmp_path / "rec.wav").exists()


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/rec.wav",
        "http://[::1]:{port}/files/stereo.wav",
        "http://[::ffff:127.0.0.2]:{port}/files/stereo.wav",
        "http://127.0.0.2:{port}/files/stereo.wav",
        "http://0.0.0.0:{port}/files/stereo.wav",
    ],
)
def test_redirect_to_a_forbidden_address_is_refused(http_server: RecordingServer, tmp_path: Path, target: str) -> None:
    before = len(http_server.seen)
    with pytest.raises(TargetRefused) as caught:
        fetch(http_server.url(f"/redirect?to={target.format(port=http_server.port)}"), tmp_path / "rec.wav")
    assert caught.value.permanent
    assert len(http_server.seen) == before + 1  # only the redirecting request reached any server
    assert not (tmp_path / "rec.wav").exists()


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://example.com/rec.wav", "gopher://127.0.0.1:25/"])
def test_redirect_to_another_scheme_is_refused(http_server: RecordingServer, tmp_path: Path, target: str) -> None:
    with pytest.raises(InvalidRecordingLocation, match="http or https"):
        fetch(http_server.url(f"/redirect?to={target}"), tmp_path / "rec.wav")


def test_loopback_is_refused_without_allow_list_and_nothing_connects(
    http_server: RecordingServer, tmp_path: Path
) -> None:
    before = len(http_server.seen)
    for url in (http_server.url("/files/stereo.wav"), f"http://2130706433:{http_server.port}/files/stereo.wav"):
        with pytest.raises(TargetRefused, match="loopback"):
            fetch(url, tmp_path / "rec.wav", policy=TargetPolicy())
    assert len(http_server.seen) == before


@pytest.mark.parametrize("url", ["ftp://example.com/a.wav", "file:///etc/passwd", "/relative/path.wav", "http://"])
def test_only_http_and_https_urls_are_accepted(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidRecordingLocation):
        fetch(url, tmp_path / "rec.wav")


def test_size_cap_aborts_a_stream_without_content_length(http_server: RecordingServer, tmp_path: Path) -> None:
    with pytest.raises(RecordingTooLarge) as caught:
        fetch(http_server.url("/big/5000000"), tmp_path / "rec.wav", limits=FetchLimits(max_bytes=1_000_000))
    assert caught.value.permanent and "1000000-byte limit" in caught.value.message
    assert not (tmp_path / "rec.wav").exists()
    assert no_leftovers(tmp_path)


def test_size_cap_refuses_a_declared_length_before_reading(http_server: RecordingServer, tmp_path: Path) -> None:
    with pytest.raises(RecordingTooLarge, match="1000000000000 bytes"):
        fetch(http_server.url("/declared-big/x"), tmp_path / "rec.wav", limits=FetchLimits(max_bytes=10_000))


def test_total_time_cap_stops_a_trickling_server(http_server: RecordingServer, tmp_path: Path) -> None:
    with pytest.raises(FetchTimeout) as caught:
        fetch(http_server.url("/slow/x"), tmp_path / "rec.wav", limits=FetchLimits(total_timeout_s=0.5))
    assert not caught.value.permanent
    assert no_leftovers(tmp_path)


def test_connection_cut_mid_body_is_transient(http_server: RecordingServer, tmp_path: Path) -> None:
    with pytest.raises(ConnectionFailed) as caught:
        fetch(http_server.url("/reset/x"), tmp_path / "rec.wav")
    assert not caught.value.permanent
    assert not (tmp_path / "rec.wav").exists()


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionFailed) as caught:
        fetch(f"http://127.0.0.1:{port}/rec.wav", tmp_path / "rec.wav")
    assert not caught.value.permanent


@pytest.mark.parametrize(
    ("status", "error", "permanent"),
    [
        (404, RecordingNotFound, True),
        (410, RecordingNotFound, True),
        (403, AccessDenied, True),
        (401, AccessDenied, True),
        (400, UnexpectedResponse, True),
        (204, UnexpectedResponse, True),
        (500, UpstreamUnavailable, False),
        (503, UpstreamUnavailable, False),
        (429, UpstreamUnavailable, False),
    ],
)
def test_status_codes_map_to_permanent_or_transient_errors(
    http_server: RecordingServer, tmp_path: Path, status: int, error: type[RecordingError], permanent: bool
) -> None:
    with pytest.raises(error) as caught:
        fetch(http_server.url(f"/status/{status}"), tmp_path / "rec.wav")
    assert caught.value.permanent is permanent
    assert str(status) in str(caught.value)
    if isinstance(caught.value, UpstreamUnavailable):
        assert caught.value.retry_after_s == 7


def test_https_verifies_the_host_name_while_connecting_to_the_pinned_address(
    tls_server: tuple[RecordingServer, ssl.SSLContext], audio: AudioFiles, tmp_path: Path
) -> None:
    server, client_context = tls_server
    policy = TargetPolicy.from_config(["127.0.0.1/32", "::1/128"])
    dest = tmp_path / "rec.m4a"
    fetch(
        server.url("/files/stereo.m4a", host="localhost", scheme="https"),
        dest,
        policy=policy,
        ssl_context=client_context,
    )
    assert dest.read_bytes() == audio.stereo_m4a.read_bytes()
    assert server.sni[-1] == "localhost"  # SNI carries the name, not the IP we connected to
    assert server.seen[-1].headers["host"] == f"localhost:{server.port}"
    # the certificate names only "localhost": by IP, verification must fail
    with pytest.raises(ConnectionFailed, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        fetch(server.url("/files/stereo.m4a", scheme="https"), dest, policy=policy, ssl_context=client_context)
