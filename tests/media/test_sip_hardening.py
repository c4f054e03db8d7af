"""The SIP port under hostile and malformed input (issue 12): bounded logging, RFC 3261 answers, no lost bursts."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from callplane.media.sip import SippyCallEngine
from callplane.media.sip_guard import OTHER_SOURCES, MalformedSipLog, Refusal, raise_receive_buffer, raw_response
from callplane.testing.sipp import Sipp, engine_config, free_even_port_pair, free_udp_port, render_scenario

REPO = Path(__file__).resolve().parents[2]
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


def _request(
    sip_port: int,
    reply_port: int,
    tag: str,
    *,
    method: str = "INVITE",
    version: str = "SIP/2.0",
    max_forwards: str | None = "70",
    cseq: str | None = None,
    from_header: str | None = None,
    to_header: str | None = None,
    media_port: int = 40000,
) -> bytes:
    body = OFFER.format(port=media_port) if method == "INVITE" else ""
    lines = [
        f"{method} sip:svc@127.0.0.1:{sip_port} {version}",
        f"Via: SIP/2.0/UDP 127.0.0.1:{reply_port};branch=z9hG4bK-{tag}",
        f"From: {from_header if from_header is not None else f'<sip:caller@127.0.0.1:{reply_port}>;tag=f{tag}'}",
        f"To: {to_header if to_header is not None else f'<sip:svc@127.0.0.1:{sip_port}>'}",
        f"Call-ID: {tag}@probe",
        f"CSeq: {cseq if cseq is not None else f'1 {method}'}",
        f"Contact: <sip:caller@127.0.0.1:{reply_port}>",
    ]
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines += [f"Content-Length: {len(body)}", "", body]
    return "\r\n".join(lines).encode()


def _replace(datagram: bytes, old: str, new: str) -> bytes:
    assert old.encode() in datagram
    return datagram.replace(old.encode(), new.encode(), 1)


class _Replies:
    """A loopback UDP socket that collects every SIP response's status by Call-ID, in a thread of its own."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        raise_receive_buffer(self.socket, 8 * 1024 * 1024)
        self.socket.settimeout(0.2)
        self.port = int(self.socket.getsockname()[1])
        self.statuses: dict[str, set[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(65535).decode(errors="replace")
            except TimeoutError:
                continue
            status_line, _, rest = data.partition("\r\n")
            call_id = next(
                (line.split(":", 1)[1].strip() for line in rest.split("\r\n") if line.lower().startswith("call-id:")),
                "",
            )
            parts = status_line.split()
            if len(parts) >= 2 and parts[0] == "SIP/2.0" and parts[1].isdigit():
                self.statuses.setdefault(call_id, set()).add(int(parts[1]))

    async def wait_for(self, call_ids: list[str], final_from: int = 200, timeout_s: float = 30) -> None:
        """Until every Call-ID has a final response (or the time runs out: the caller then asserts on counts)."""
        for _ in range(int(timeout_s / 0.05)):
            if all(any(code >= final_from for code in self.statuses.get(c, ())) for c in call_ids):
                return
            await asyncio.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


def test_malformed_invites_are_answered_with_their_rfc3261_status(media_cache: Path) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        replies = _Replies()
        port = engine.config.sip_port
        cases = {
            "version": (_request(port, replies.port, "version", version="SIP/3.0"), 505),
            "hops": (_request(port, replies.port, "hops", max_forwards="0"), 483),
            "nomedia": (_request(port, replies.port, "nomedia", media_port=0), 488),
            "cseq": (_request(port, replies.port, "cseq", cseq="1 BYE"), 400),
            "from-garbage": (_request(port, replies.port, "from-garbage", from_header="garbage<<>>;;;"), 400),
            "from-empty": (_request(port, replies.port, "from-empty", from_header=""), 400),
            "from-control": (_request(port, replies.port, "from-control", from_header="\x01\x02 <sip:@>"), 400),
            "hops-nonsense": (_request(port, replies.port, "hops-nonsense", max_forwards="many"), 400),
            # no Max-Forwards: the To is parsed for the first time when the INVITE is presented
            "to-empty": (_request(port, replies.port, "to-empty", to_header="", max_forwards=None), 400),
            "to-tel": (_request(port, replies.port, "to-tel", to_header="<tel:+15551234567>", max_forwards=None), 400),
            # sippy raised on these inside its transaction or UA: no answer, and a phantom call for the Contact
            "contact-garbage": (
                _replace(_request(port, replies.port, "contact-garbage"), "Contact: <", "Contact: "),
                400,
            ),
            "contact-missing": (_replace(_request(port, replies.port, "contact-missing"), "Contact: ", "X-Was: "), 400),
            "expires-nonsense": (
                _replace(_request(port, replies.port, "expires-nonsense"), "Max-", "Expires: soon\r\nMax-"),
                400,
            ),
            "callid-empty": (_replace(_request(port, replies.port, "callid-empty"), "callid-empty@probe", "    "), 400),
        }
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                for datagram, _ in cases.values():
                    # answers go to the Via address (the reader's port), so any socket may send
                    sender.sendto(datagram, ("127.0.0.1", port))
            call_ids = {name: "" if name == "callid-empty" else f"{name}@probe" for name in cases}
            await replies.wait_for(list(call_ids.values()))
            finals = {
                name: sorted(code for code in replies.statuses.get(call_ids[name], ()) if code >= 200) for name in cases
            }
            assert finals == {name: [status] for name, (_, status) in cases.items()}
            assert not any(code < 200 for codes in replies.statuses.values() for code in codes), replies.statuses
            assert engine.live_call_ids() == []
            assert events.empty()  # none of them was presented as a call
            assert engine.malformed.total == len(cases)
        finally:
            replies.close()
            await engine.stop()

    asyncio.run(scenario())


def test_a_burst_of_cancels_and_invites_is_answered_in_full(media_cache: Path) -> None:
    """1 000 CANCELs (481: no such transaction) and 200 INVITEs without media (488) sent as fast as one
    socket can: every one is answered, so none was lost in the SIP socket's receive buffer."""

    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        replies = _Replies()
        port = engine.config.sip_port
        try:
            assert engine.sip_receive_buffer_bytes is not None
            burst = [(f"cancel{i}", _request(port, replies.port, f"cancel{i}", method="CANCEL")) for i in range(1000)]
            burst += [(f"invite{i}", _request(port, replies.port, f"invite{i}", media_port=0)) for i in range(200)]
            random.Random(12).shuffle(burst)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                for _, datagram in burst:
                    sender.sendto(datagram, ("127.0.0.1", port))
            await replies.wait_for([f"{tag}@probe" for tag, _ in burst], timeout_s=60)
            answered = {tag: replies.statuses.get(f"{tag}@probe", set()) for tag, _ in burst}
            cancels = sum(1 for tag, codes in answered.items() if tag.startswith("cancel") and 481 in codes)
            invites = sum(1 for tag, codes in answered.items() if tag.startswith("invite") and 488 in codes)
            assert (cancels, invites) == (1000, 200)
        finally:
            replies.close()
            await engine.stop()

    asyncio.run(scenario())


def _junk(rng: random.Random, sip_port: int) -> list[bytes]:
    """1 000 datagrams that are not SIP: random bytes, truncated requests, binary after a request line, huge
    header lines (3-12 KB, some larger than sippy's 8 KB read), and requests that make sippy print a repair notice (a
    Content-Length two bytes long, an empty port in From, a missing body with an empty From), each refused
    for its CSeq. All at least 32 bytes (shorter ones are keep-alives to sippy); the few that repeat hit
    sippy's retransmission cache and are counted all the same."""
    template = _request(sip_port, 9, "junk")
    header_end = template.index(b"\r\n\r\n")
    offer_length = len(OFFER.format(port=40000))
    repaired = [
        _request(sip_port, 9, "r{n}", cseq="1 BYE").replace(
            f"Content-Length: {offer_length}".encode(), f"Content-Length: {offer_length + 2}".encode()
        ),
        _request(sip_port, 9, "r{n}", cseq="1 BYE", from_header="<sip:a@127.0.0.1:>;tag=r{n}"),
        _request(sip_port, 9, "r{n}", method="BYE", from_header="").replace(
            b"Content-Length: 0", b"Content-Length: 40"
        ),
    ]
    datagrams: list[bytes] = []
    for index in range(200):
        datagrams.append(rng.randbytes(rng.randrange(32, 1400)))
        cut = rng.randrange(32, header_end)
        datagrams.append(template[:cut].replace(b"junk", f"j{index:04d}".encode()))
        datagrams.append(b"INVITE sip:svc@127.0.0.1 SIP/2.0\r\n" + rng.randbytes(rng.randrange(32, 600)))
        huge = b"Via: " + bytes(rng.choice(b"abcdefgh;=:") for _ in range(rng.randrange(3000, 12000)))
        datagrams.append(template.replace(b"Via: ", huge + b"\r\nVia: ", 1).replace(b"junk", f"h{index:04d}".encode()))
        datagrams.append(repaired[index % 3].replace(b"r{n}", f"r{index:04d}".encode()))
    return datagrams


def test_a_flood_of_junk_datagrams_leaves_a_short_json_log_and_calls_still_work(tmp_path: Path) -> None:
    """The engine in its own process, logging JSON as in production: 1 000 junk datagrams to its SIP port add
    a few JSON lines (under 20 KB in all, sippy's own prints included), and a normal sipp call still works."""
    sip_port = free_udp_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.media.engine_process", str(sip_port), str(random.randrange(20000, 38000, 2)),
         str(tmp_path / "cache")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert json.loads(ready) == {"ready": sip_port}
        datagrams = _junk(random.Random(1000), sip_port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            for datagram in datagrams:
                attacker.sendto(datagram, ("127.0.0.1", sip_port))

        directory = tmp_path / "call"
        directory.mkdir()
        caller = Sipp(
            render_scenario("uac_basic.xml", directory),
            sip_port=free_udp_port(),
            media_port=free_even_port_pair(),
            extra=[f"127.0.0.1:{sip_port}", "-s", "svc", "-m", "1", "-timeout", "30s"],
        )

        async def call() -> int:
            await caller.start()
            result = await caller.finished()
            assert result.returncode == 0, result.output
            return result.returncode

        assert asyncio.run(call()) == 0
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    output = stdout + stderr
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    assert len(output) < 20_000, output[-3000:]
    lines = [json.loads(line) for line in stderr.decode().splitlines()]  # every line is one JSON object
    assert stdout.strip() == b"", stdout[-2000:]  # sippy printed nothing
    malformed = [line for line in lines if line.get("event") == "sip_malformed"]
    assert 1 <= len(malformed) <= 3
    assert all(line["source"] == "127.0.0.1" for line in malformed)
    assert sum(line["count"] for line in malformed) == len(datagrams)


# ---- the log limiter and the raw answer, without sockets -------------------------------------------------


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limiter_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [record.fields for record in caplog.records if hasattr(record, "fields")]  # type: ignore[attr-defined]


def test_malformed_sip_is_logged_once_per_source_per_interval_with_counters(caplog: pytest.LogCaptureFixture) -> None:
    clock = _FakeClock()
    limiter = MalformedSipLog(60.0, max_sources_per_interval=3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="callplane.media.sip_guard"):
        for _ in range(500):
            limiter.record("192.0.2.1", "not UTF-8")
        limiter.record("192.0.2.1", "400: unparsable request")
        clock.now += 30
        limiter.flush()  # nothing is due yet
        assert len(_limiter_lines(caplog)) == 1
        clock.now += 31
        limiter.flush()
        limiter.flush()  # the source went quiet: forgotten, no second summary
        clock.now += 61
        limiter.record("192.0.2.1", "not UTF-8")
    lines = _limiter_lines(caplog)
    assert [(line["source"], line["count"]) for line in lines] == [
        ("192.0.2.1", 1),
        ("192.0.2.1", 500),
        ("192.0.2.1", 1),
    ]
    assert lines[1]["reasons"] == {"not UTF-8": 499, "400: unparsable request": 1}
    assert limiter.total == 502 and limiter.lines == 3


def test_spoofed_sources_share_one_bucket_beyond_the_per_interval_budget(caplog: pytest.LogCaptureFixture) -> None:
    clock = _FakeClock()
    limiter = MalformedSipLog(60.0, max_sources_per_interval=3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="callplane.media.sip_guard"):
        for index in range(1000):
            limiter.record(f"198.51.100.{index % 250}", "not UTF-8")
        limiter.flush(everything=True)
    lines = _limiter_lines(caplog)
    assert len(lines) <= 2 * 4  # three sources and the shared bucket, each a first line and a summary
    assert OTHER_SOURCES in {line["source"] for line in lines}
    assert sum(int(str(line["count"])) for line in lines) == 1000


def test_a_request_sippy_cannot_parse_is_answered_from_its_raw_lines() -> None:
    request = (
        "INVITE sip:svc@127.0.0.1 SIP/3.0\r\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
        "From: \x01garbage\r\nTo: <sip:svc@127.0.0.1>\r\ni: abc@x\r\nCSeq: 1 INVITE\r\nX-Other: 1\r\n\r\nbody"
    )
    answer = raw_response(request, Refusal(505, "Version Not Supported", "SIP/3.0"), "callplane")
    assert answer == (
        "SIP/2.0 505 Version Not Supported\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
        "From: \x01garbage\r\nTo: <sip:svc@127.0.0.1>\r\nCall-ID: abc@x\r\nCSeq: 1 INVITE\r\n"
        "Server: callplane\r\nContent-Length: 0\r\n\r\n"
    )
    bad = Refusal(400, "Bad Request", "x")
    assert raw_response(request.replace("INVITE sip", "ACK sip", 1), bad, "callplane") is None  # never answer an ACK
    assert raw_response(request.replace("i: abc@x\r\n", ""), bad, "callplane") is None  # nothing to match it to
    assert raw_response("\x00\x01 garbage", bad, "callplane") is None
