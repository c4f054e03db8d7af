"""`callplane phone` in its own process: answering sipp, dialing sipp, and two phones calling each other."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from callplane.media.audio import read_wav
from callplane.testing.sipp import (
    SIPP_PCAPS,
    Sipp,
    dominant_frequency,
    free_even_port_pair,
    free_udp_port,
    render_scenario,
    tone,
    write_rtp_pcap,
)


def _voice_scenario(name: str, directory: Path, **values: str) -> Path:
    text = (Path(__file__).parent / "scenarios" / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    (directory / name).write_text(text)
    return directory / name


async def _start_phone(tmp_path: Path, *args: str) -> asyncio.subprocess.Process:
    low = 31000 + (os.getpid() * 7 + len(args) * 211) % 8000 // 2 * 2
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callplane", "phone", "--rtp-ports", f"{low}-{low + 200}", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "CALLPLANE_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip


async def _wait_started(process: asyncio.subprocess.Process, timeout_s: float = 60) -> list[str]:
    """Read the phone's lines until it reports its SIP port bound (a cold start on a busy machine takes seconds)."""
    stdout = process.stdout
    assert stdout is not None
    lines: list[str] = []

    async def read() -> None:
        while True:
            line = (await stdout.readline()).decode()
            assert line, "the phone exited before it started"
            lines.append(line)
            if line.startswith("{") and json.loads(line)["event"] == "started":
                return

    await asyncio.wait_for(read(), timeout_s)
    return lines


async def _events(
    process: asyncio.subprocess.Process, timeout_s: float = 60, already_read: list[str] | None = None
) -> list[dict[str, Any]]:
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-3000:]
    lines = [*(already_read or []), *out.decode().splitlines()]
    return [json.loads(line) for line in lines if line.startswith("{")]


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["event"] for event in events]


def test_phone_answers_sipp_speaks_and_reports_its_digits(tmp_path: Path) -> None:
    async def scenario() -> None:
        sip_port = free_udp_port()
        write_rtp_pcap(tmp_path / "tone.pcap", tone(700.0, 1.0))
        recording = tmp_path / "heard.wav"
        phone = await _start_phone(
            tmp_path, "--listen", f"127.0.0.1:{sip_port}", "--calls", "1", "--say", "Welcome", "--duration", "5",
            "--record", str(recording),
        )  # fmt: skip
        caller = Sipp(
            render_scenario(
                "uac_ivr.xml", tmp_path, TONE_PCAP=str(tmp_path / "tone.pcap"), TONE_MS="1300",
                PCAPS=str(SIPP_PCAPS), BYE_TIMEOUT_MS="20000",
            ),
            sip_port=free_udp_port(),
            media_port=free_even_port_pair(),
            extra=[f"127.0.0.1:{sip_port}", "-s", "ivr", "-m", "1", "-timeout", "40s"],
        )  # fmt: skip
        try:
            started = await _wait_started(phone)
            await caller.start()
            result = await caller.finished(timeout_s=60)
            events = await _events(phone, already_read=started)
        finally:
            caller.kill()
            if phone.returncode is None:
                phone.kill()
        assert result.returncode == 0, result.output
        incoming = next(event for event in events if event["event"] == "incoming")
        assert (incoming["from"], incoming["to"]) == ("sipp", "ivr")
        assert "".join(event["digit"] for event in events if event["event"] == "dtmf") == "15#"
        hangup = next(event for event in events if event["event"] == "hangup")
        assert hangup["initiator"] == "LOCAL" and hangup["answered"]
        samples, _ = read_wav(recording)
        heard = samples[0::2]
        loud = np.flatnonzero(np.abs(heard) > 2000)
        assert len(loud) > 4000, "sipp's tone was not heard"
        assert abs(dominant_frequency(heard[loud[0] : loud[0] + 4000]) - 700.0) < 10

    asyncio.run(scenario())


def test_phone_dials_sipp_and_hears_its_digits_echoed(tmp_path: Path) -> None:
    async def scenario() -> None:
        callee = Sipp(
            _voice_scenario("uas_echo.xml", tmp_path, BYE_TIMEOUT_MS="30000"),
            sip_port=free_udp_port(),
            media_port=free_even_port_pair(),
            extra=["-m", "1", "-timeout", "40s", "-rtp_echo"],
        )
        try:
            await callee.start()
            await asyncio.sleep(0.3)
            phone = await _start_phone(
                tmp_path, "--dial", f"sip:alice@127.0.0.1:{callee.sip_port}", "--digits", "42#", "--duration", "4"
            )
            events = await _events(phone)
            result = await callee.finished(timeout_s=30)
        finally:
            callee.kill()
        assert result.returncode == 0, result.output
        kinds = _kinds(events)
        assert kinds.index("dialing") < kinds.index("ringing") < kinds.index("answered") < kinds.index("hangup")
        assert "".join(event["digit"] for event in events if event["event"] == "dtmf") == "42#"
        assert next(event for event in events if event["event"] == "hangup")["initiator"] == "LOCAL"

    asyncio.run(scenario())


def test_two_phones_call_each_other(tmp_path: Path) -> None:
    async def scenario() -> None:
        sip_port = free_udp_port()
        listener_dir, dialer_dir = tmp_path / "listener", tmp_path / "dialer"
        listener_dir.mkdir()
        dialer_dir.mkdir()
        listener = await _start_phone(listener_dir, "--listen", f"127.0.0.1:{sip_port}", "--calls", "1")
        try:
            listener_started = await _wait_started(listener)
            dialer = await _start_phone(
                dialer_dir,
                "--dial",
                f"sip:ivr@127.0.0.1:{sip_port}",
                "--digits",
                "7*9",
                "--say",
                "Hi",
                "--duration",
                "3",
            )
            dialed = await _events(dialer)
            answered = await _events(listener, already_read=listener_started)
        finally:
            if listener.returncode is None:
                listener.kill()
        assert "answered" in _kinds(dialed) and "playback_finished" in _kinds(dialed)
        assert "".join(event["digit"] for event in answered if event["event"] == "dtmf") == "7*9"
        assert next(event for event in answered if event["event"] == "hangup")["initiator"] == "REMOTE"

    asyncio.run(scenario())
