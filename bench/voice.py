"""Programmable-voice load: concurrent calls that each answer, play, record and collect DTMF, and call setup rate.

sipp (pinned to CPU 1) calls the media engine (this process, pinned to CPU 0). Every call is answered, hears a
looped espeak-ng prompt, is recorded (MONO WAV) and has a DTMF collection running; sipp streams a PCMA tone and
then sends RFC 4733 digits 1, 2, # (one generated pcap) before hanging up. A call counts as good only when sipp
completed it *and* the engine collected exactly "12" ended by "#".

Two measurements, both bounded in calls and time:
1. `--levels` (concurrency): sipp holds each target number of calls (`-l`), each lasting `--hold` seconds, for
   2 x target calls. The engine's CPU (all threads) is sampled once a second while concurrency is >= 90% of the
   target. The last level with zero failures is the "max concurrent calls".
2. `--rates` (setup rate): new calls per second for `--rate-seconds`, each call `--rate-hold` seconds long.

The floor, in the same run after each level (skip with --no-floor): the same calls between two sipps, no engine
in the path - a callee on CPU 0 that answers and echoes every RTP packet (-rtp_echo), a caller on CPU 1 that
streams a PCMA tone (rtp_stream) and the same RFC 4733 pcap. With --api each level is also run by the engine alone
(a fresh `bench/voice.py --levels N` process; skip with --no-engine), and a last table sets CPU per call side by
side with the ratios api/engine, engine/floor and api/floor: on a shared machine the ratio is the figure to read.

Run: .venv/bin/python bench/voice.py [--levels 50,100,200] [--hold 8] [--rates 10,20,30] [--max-seconds 600]

The engine is driven directly (as bench/media.py), not through /calls/1: the control plane's call flows are
measured separately once they exist. The machine is shared with other work, so figures vary run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import free_port, free_udp_port, own_cpu_seconds, process_cpu_seconds, start_profile
from sipp_floor import FLOOR_CALLEE, caller_scenario, sipp_counter, sipp_current_calls, tone_pcap

from callplane.media import g711
from callplane.media.engine import (
    CallEnded,
    EngineConfig,
    IncomingCall,
    RecordingChannels,
    SpeechSource,
)
from callplane.media.g711 import PayloadType

EXPECTED_DIGITS = "12"

SCENARIO = caller_scenario(
    "  TONE_PLAY\n"
    '  <pause milliseconds="TONE_MS"/>\n'
    '  <nop><action><exec play_pcap_audio="DTMF_PCAP"/></action></nop>\n'
    '  <pause milliseconds="1400"/>\n'
)
DTMF_TAIL_S = 1.4  # the digits' pcap (about 1 s) and the pause before BYE


def _pcap(path: Path, packets: list[tuple[int, bytes]]) -> None:
    """A pcap sipp's play_pcap_audio replays: (milliseconds from start, RTP packet) over Ethernet/IPv4/UDP."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for index, (at_ms, rtp) in enumerate(packets):
        udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index, 0, 64, 17, 0, b"\x7f\0\0\1", b"\x7f\0\0\1")
        frame = b"\0" * 12 + b"\x08\x00" + ip + udp
        out.append(struct.pack("<IIII", at_ms // 1000, at_ms % 1000 * 1000, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def _dtmf_pcap(path: Path, digits: str) -> None:
    """RFC 4733 digits in one pcap (one sipp thread per call instead of one per digit): per digit 100 ms of
    event packets sharing one timestamp, three end packets, then 200 ms of nothing."""
    codes = {str(n): n for n in range(10)} | {"*": 10, "#": 11}
    packets: list[tuple[int, bytes]] = []
    seq, at_ms, timestamp = 1000, 0, 16000
    for digit in digits:
        for step in range(8):
            end = step >= 5
            duration = min(step + 1, 5) * 160
            payload = struct.pack("!BBH", codes[digit], (0x80 if end else 0) | 10, duration)
            marker = 0x80 if step == 0 else 0
            packets.append((at_ms, struct.pack("!BBHII", 0x80, marker | 101, seq, timestamp, 0x5EED) + payload))
            seq += 1
            at_ms += 20 if step < 5 else 0
        at_ms += 200
        timestamp += 8000  # a new event: a new timestamp
    _pcap(path, packets)


class _ReceiveMeter:
    """RTP packets received by the live channels since the last look (a diagnostic: did sipp's media arrive?)."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.seen: dict[int, int] = {}

    def delta(self) -> int:
        channels = self.engine.clock._channels  # type: ignore[attr-defined]
        now = {key: channel.stats.packets_received for key, channel in channels.items()}
        total = sum(count - self.seen.get(key, 0) for key, count in now.items())
        self.seen = now
        return int(total)


@dataclass
class Run:
    label: str
    target: int  # concurrent calls (levels) or calls per second (rates)
    calls: int
    peak: int = 0
    answered: int = 0
    sipp_ok: int = 0
    sipp_failed: int = 0
    dtmf_ok: int = 0
    engine_failures: int = 0
    cpu_samples: list[float] = field(default_factory=list)
    concurrency_samples: list[int] = field(default_factory=list)
    seconds: float = 0.0
    hold_s: float = 0.0
    misses: Counter[str] = field(default_factory=Counter)
    lateness_p99_ms: float = float("nan")  # clock tick lateness at steady state (20 ms = one frame)
    event_lag_ms: list[float] = field(default_factory=list)  # API mode: event time -> webhook received
    capture_after_ms: list[float] = field(default_factory=list)  # API mode: CALL_RECEIVED -> capture/dtmf answered
    rx_samples: list[float] = field(default_factory=list)  # RTP packets/s received per live call (50 = all)
    # CPU seconds the measured process used from the first call to the last (the API run: until the last event
    # was delivered) per call: unlike CPU % per concurrent call it holds when other work starves the process
    cpu_s_total: float = float("nan")

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_s_total / max(self.calls, 1)

    @property
    def failures(self) -> int:
        return max(self.sipp_failed, 0) + (self.calls - self.dtmf_ok) + self.engine_failures

    @property
    def cpu_percent(self) -> float:
        return statistics.median(self.cpu_samples) if self.cpu_samples else float("nan")

    @property
    def cpu_per_call(self) -> float:
        if not self.cpu_samples:
            return float("nan")
        return statistics.median(
            cpu / max(n, 1) for cpu, n in zip(self.cpu_samples, self.concurrency_samples, strict=True)
        )


async def _run(
    label: str, *, limit: int, rate: float, total: int, hold_s: float, workdir: Path, caller_audio: str
) -> Run:
    """One sipp run against a fresh engine; `limit` concurrent at most, `rate` new calls/s, `total` calls."""
    from callplane.media.sip import SippyCallEngine  # imported after main() pinned us; sippy starts threads

    engine = SippyCallEngine(
        EngineConfig(sip_port=free_udp_port(), rtp_port_range=(20000, 28000), cache_dir=workdir / "cache")
    )
    await engine.start()
    events = engine.subscribe()
    prompt = SpeechSource("Thank you for calling. Please enter your account number, then press the pound key.")
    await engine.load(prompt)
    run = Run(label, int(limit if label == "level" else rate), total)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(call_id: str) -> None:
        try:
            await engine.answer(call_id)
            await engine.start_recording(call_id, workdir / f"{call_id}.wav", RecordingChannels.MONO)
            await engine.play(call_id, prompt, loop_count=1000)
            collected = await engine.collect_dtmf(
                call_id, max_length=4, terminator="#", first_digit_timeout_s=hold_s + 30, inter_digit_timeout_s=5
            )
            if collected.digits == EXPECTED_DIGITS:
                run.dtmf_ok += 1
            else:
                run.misses[f"{collected.digits!r} ended by {collected.ended_by}"] += 1
        except Exception as error:  # a call ended under us counts as a missing DTMF result
            run.misses[type(error).__name__] += 1

    async def dispatcher() -> None:
        while True:
            event = await events.get()
            if isinstance(event, IncomingCall):
                run.answered += 1
                task = asyncio.create_task(handle(event.call_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif isinstance(event, CallEnded):
                if event.initiator == "ENGINE":
                    run.engine_failures += 1
                (workdir / f"{event.call_id}.wav").unlink(missing_ok=True)

    pcap = workdir / "tone.pcap"
    dtmf_pcap = workdir / "dtmf.pcap"
    _dtmf_pcap(dtmf_pcap, EXPECTED_DIGITS + "#")
    tone_s = max(0.5, hold_s - DTMF_TAIL_S)
    tone_pcap(pcap, tone_s)
    scenario = workdir / "voice.xml"
    tone_play = f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>' if caller_audio == "pcap" else ""
    scenario.write_text(
        SCENARIO.replace("TONE_PLAY", tone_play)
        .replace("TONE_MS", str(int(tone_s * 1000)))
        .replace("DTMF_PCAP", str(dtmf_pcap))
    )
    sipp = await asyncio.create_subprocess_exec(
        "taskset", "-c", "1", "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mp", str(free_udp_port() & ~1), f"127.0.0.1:{engine.config.sip_port}", "-s", "bench",
        "-l", str(limit), "-r", f"{rate:.2f}", "-m", str(total), "-nostdin",
        *(["-rtp_echo"] if caller_audio == "echo" else []),
        "-timeout", f"{int(total / rate + hold_s * 4 + 60)}s",
        cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    runner = asyncio.create_task(dispatcher())
    started = time.monotonic()
    cpu_before, wall_before = own_cpu_seconds(), time.monotonic()
    cpu_start = cpu_before
    meter = _ReceiveMeter(engine)
    steady_from = 0.9 * (limit if label == "level" else rate * hold_s)
    while sipp.returncode is None:
        try:
            await asyncio.wait_for(sipp.wait(), 1.0)
        except TimeoutError:
            pass
        cpu_now, wall_now = own_cpu_seconds(), time.monotonic()
        received = meter.delta()
        concurrency = engine.clock.channel_count
        run.peak = max(run.peak, concurrency)
        steady = concurrency >= steady_from
        engine.clock._keep_lateness = 1_000_000 if steady else 0  # only steady-state ticks count
        if steady:
            run.cpu_samples.append(100 * (cpu_now - cpu_before) / (wall_now - wall_before))
            run.concurrency_samples.append(concurrency)
            run.rx_samples.append(received / (wall_now - wall_before) / max(concurrency, 1))
        cpu_before, wall_before = cpu_now, wall_now
    run.seconds = time.monotonic() - started
    run.cpu_s_total = own_cpu_seconds() - cpu_start
    run.lateness_p99_ms = engine.clock.stats.lateness_percentiles()["p99"]
    run.hold_s = hold_s
    output = (await sipp.stdout.read()).decode(errors="replace") if sipp.stdout else ""
    run.sipp_ok = sipp_counter(output, "Successful call")
    run.sipp_failed = sipp_counter(output, "Failed call")
    await asyncio.sleep(0.5)  # the last collections finish
    runner.cancel()
    for task in list(tasks):
        task.cancel()
    await engine.stop()
    return run


# ---- through the Calls API ----------------------------------------------------------------------


class _Application:
    """The customer's application: a webhook receiver that drives each call through /calls/1."""

    def __init__(self, api: Any, run: Run, hold_s: float) -> None:
        self.api = api
        self.run = run
        self.hold_s = hold_s
        self.finished: set[str] = set()
        self.failed_requests: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()
        self.received_at: dict[str, float] = {}

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        try:
            response = await self.api.post(path, json=body)
        except Exception as error:  # a request the server could not answer in time is a failure we count
            self.failed_requests[type(error).__name__] += 1
            return
        if response.status_code >= 300:
            self.failed_requests[f"{path.rsplit('/', 1)[-1]} {response.status_code}"] += 1

    async def _established(self, call_id: str) -> None:
        timeout_ms = int((self.hold_s + 30) * 1000)
        await self._post(
            f"/calls/1/calls/{call_id}/capture/dtmf", {"maxLength": 4, "timeout": timeout_ms, "terminator": "#"}
        )
        if call_id in self.received_at:  # the whole control loop; the caller sends its digits hold - 1.4 s in
            self.run.capture_after_ms.append((time.monotonic() - self.received_at[call_id]) * 1000)
        await self._post(
            f"/calls/1/calls/{call_id}/say",
            {"text": "Thank you for calling. Please enter your account number.", "language": "en", "loopCount": 50},
        )

    def on_event(self, event: dict[str, Any]) -> None:
        call_id, kind = event.get("callId", ""), event.get("type")
        with contextlib.suppress(KeyError, ValueError):  # how late the outbox delivered it
            happened = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            self.run.event_lag_ms.append((datetime.now(UTC) - happened).total_seconds() * 1000)
        work = None
        if kind == "CALL_RECEIVED":
            self.run.answered += 1
            self.received_at[call_id] = time.monotonic()
            work = self._post(f"/calls/1/calls/{call_id}/answer", {"recording": {"recordingType": "AUDIO"}})
        elif kind == "CALL_ESTABLISHED":
            work = self._established(call_id)
        elif kind == "DTMF_CAPTURED":
            digits = event.get("properties", {}).get("dtmf")
            if digits == EXPECTED_DIGITS:
                self.run.dtmf_ok += 1
            else:
                self.run.misses[repr(digits)] += 1
        elif kind in ("CALL_FINISHED", "CALL_FAILED"):
            self.finished.add(call_id)
            if kind == "CALL_FAILED":
                self.run.engine_failures += 1
        if work is not None:
            task = asyncio.create_task(work)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


async def _serve_webhooks(application: _Application, port: int) -> tuple[Any, asyncio.Task[None]]:
    import json

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def receive(request: Request) -> Response:
        application.on_event(json.loads(await request.body()))
        return Response(status_code=200)

    app = Starlette(routes=[Route("/events", receive, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    serving = asyncio.create_task(server.serve())
    for _ in range(200):  # uvicorn has no started event to await
        if server.started or serving.done():
            break
        await asyncio.sleep(0.05)
    return server, serving


async def _api_run(
    *, limit: int, rate: float, total: int, hold_s: float, workdir: Path, database_url: str, profile: Path | None = None
) -> Run:
    """`callplane serve` (voice on, pinned to CPU 0) answers sipp's calls as the application commands."""
    import httpx

    http_port, sip_port, hook_port = free_port(), free_udp_port(), free_port()
    env = {
        **os.environ,
        "CALLPLANE_ENVIRONMENT": "development",
        "CALLPLANE_DATA_DIR": str(workdir / "data"),
        "CALLPLANE_ADMIN_TOKEN": "voice-bench-admin",
        "CALLPLANE_VOICE_ENABLED": "true",
        "CALLPLANE_SIP_PORT": str(sip_port),
        "CALLPLANE_RTP_PORT_MIN": "20000",
        "CALLPLANE_RTP_PORT_MAX": "28000",
        "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "CALLPLANE_TRANSCRIPTION_ENABLED": "false",
        "CALLPLANE_LOG_LEVEL": "WARNING",
        # one key for every level: with --database-url the levels share a database (and its secrets)
        "CALLPLANE_SECRET_KEY": "dm9pY2UtYmVuY2gtZml4ZWQta2V5LTMyLWJ5dGVzISE=",
    }
    if database_url:
        env["CALLPLANE_DATABASE_URL"] = database_url
    server = await asyncio.create_subprocess_exec(
        "taskset", "-c", "0", sys.executable, "-m", "callplane", "serve", "--port", str(http_port),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=(workdir / "server.log").open("wb"),
    )  # fmt: skip
    base = f"http://127.0.0.1:{http_port}"
    run = Run("api", limit, total)
    admin = httpx.AsyncClient(base_url=base, headers={"Authorization": "Bearer voice-bench-admin"}, timeout=30)
    try:
        for _ in range(1200):  # a loaded machine takes a minute to import and migrate
            try:
                if (await admin.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        account = (await admin.post("/v1/admin/accounts", json={"kind": "network", "name": "bench"})).json()
        token = (await admin.post(f"/v1/admin/accounts/{account['id']}/tokens", json={"name": "bench"})).json()["token"]
        limits = httpx.Limits(max_connections=200)
        api = httpx.AsyncClient(base_url=base, headers={"Authorization": f"App {token}"}, timeout=60, limits=limits)
        native = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        configuration = (await api.post("/calls/1/configurations", json={"name": "bench"})).json()["id"]
        await native.post(
            f"/v1/voice/configurations/{configuration}/subscriptions",
            json={"url": f"http://127.0.0.1:{hook_port}/events"},
        )
        called = f"bench-{limit}-{os.getpid()}"  # routes are per called user: each level has its own
        await native.post(f"/v1/voice/configurations/{configuration}/routes", json={"called_user": called})
        application = _Application(api, run, hold_s)
        hooks, serving = await _serve_webhooks(application, hook_port)

        dtmf_pcap, scenario = workdir / "dtmf.pcap", workdir / "voice.xml"
        _dtmf_pcap(dtmf_pcap, EXPECTED_DIGITS + "#")
        tone_s = max(0.5, hold_s - DTMF_TAIL_S)
        scenario.write_text(
            SCENARIO.replace("TONE_PLAY", "")
            .replace("TONE_MS", str(int(tone_s * 1000)))
            .replace("DTMF_PCAP", str(dtmf_pcap))
        )
        sipp = await asyncio.create_subprocess_exec(
            "taskset", "-c", "1", "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port()),
            "-mp", str(free_udp_port() & ~1), f"127.0.0.1:{sip_port}", "-s", called, "-rtp_echo",
            "-l", str(limit), "-r", f"{rate:.2f}", "-m", str(total), "-nostdin",
            "-timeout", f"{int(total / rate + hold_s * 4 + 90)}s",
            cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        started = time.monotonic()
        cpu_before, wall_before = process_cpu_seconds(server.pid), time.monotonic()
        cpu_start = cpu_before
        live_before = 0
        spy: subprocess.Popen[bytes] | None = None
        while sipp.returncode is None:
            try:
                await asyncio.wait_for(sipp.wait(), 1.0)
            except TimeoutError:
                pass
            cpu_now, wall_now = process_cpu_seconds(server.pid), time.monotonic()
            live = run.answered - len(application.finished)
            run.peak = max(run.peak, live)
            if live >= 0.9 * limit and live_before >= 0.9 * limit:
                if profile is not None and spy is None:  # at the target: py-spy the serve process for one call's length
                    spy = start_profile(server.pid, profile / f"voice-api-{limit}.txt", hold_s)
                run.cpu_samples.append(100 * (cpu_now - cpu_before) / (wall_now - wall_before))
                run.concurrency_samples.append(live)
            cpu_before, wall_before, live_before = cpu_now, wall_now, live
        run.seconds = time.monotonic() - started
        if spy is not None:  # off the loop: the webhook receiver serves from it meanwhile
            await asyncio.to_thread(spy.wait)
        run.hold_s = hold_s
        output = (await sipp.stdout.read()).decode(errors="replace") if sipp.stdout else ""
        run.sipp_ok = sipp_counter(output, "Successful call")
        run.sipp_failed = sipp_counter(output, "Failed call")
        for _ in range(600):  # the last events drain through the outbox
            if len(application.finished) >= total:
                break
            await asyncio.sleep(0.1)
        run.cpu_s_total = process_cpu_seconds(server.pid) - cpu_start
        missing_terminal = total - len(application.finished)
        run.engine_failures += max(missing_terminal, 0)
        if missing_terminal:
            run.misses["no terminal event"] += missing_terminal
        run.misses.update(application.failed_requests)
        hooks.should_exit = True
        await serving
        await api.aclose()
        await native.aclose()
    finally:
        await admin.aclose()
        server.terminate()
        await server.wait()
    return run


# ---- the floor: sipp calling sipp, no engine in the path ------------------------------------------


async def _floor_run(*, limit: int, rate: float, total: int, hold_s: float, workdir: Path) -> Run:
    """The same calls between two sipps: the callee (CPU 0, where the engine runs) answers and echoes every RTP
    packet back (a receive and a send per packet, the least any media server does); the caller (CPU 1) places the
    calls as the engine runs do, streaming a PCMA tone (sipp's rtp_stream, a shared thread pool) and then the same
    RFC 4733 pcap. Nobody records, decodes or collects digits: this is what SIP + RTP over loopback cost alone."""
    tone = np.sin(2 * np.pi * 700 * np.arange(8000 * 4) / 8000.0)
    tone_file, dtmf_pcap = workdir / "tone.alaw", workdir / "dtmf.pcap"
    tone_file.write_bytes(bytes(g711.encode((6000 * tone).astype(np.int16), PayloadType.PCMA)))
    _dtmf_pcap(dtmf_pcap, EXPECTED_DIGITS + "#")
    tone_s = max(0.5, hold_s - DTMF_TAIL_S)
    caller, callee = workdir / "floor-caller.xml", workdir / "floor-callee.xml"
    stream = f'<nop><action><exec rtp_stream="{tone_file},-1,8"/></action></nop>'
    caller.write_text(
        SCENARIO.replace("TONE_PLAY", stream)
        .replace("TONE_MS", str(int(tone_s * 1000)))
        .replace("DTMF_PCAP", str(dtmf_pcap))
    )
    callee.write_text(FLOOR_CALLEE)
    sip_port = free_udp_port()
    run = Run("floor", limit, total)
    stat_file = workdir / "callee-stat.csv"
    answering = await asyncio.create_subprocess_exec(
        "taskset", "-c", "0", "sipp", "-sf", str(callee), "-i", "127.0.0.1", "-p", str(sip_port),
        "-mp", str(free_udp_port() & ~1), "-rtp_echo", "-m", str(total), "-nostdin",
        "-trace_stat", "-stf", str(stat_file), "-fd", "1",
        "-timeout", f"{int(total / rate + hold_s * 4 + 60)}s",
        cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(0.5)
    calling = await asyncio.create_subprocess_exec(
        "taskset", "-c", "1", "sipp", "-sf", str(caller), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mp", str(free_udp_port() & ~1), f"127.0.0.1:{sip_port}", "-s", "floor",
        "-l", str(limit), "-r", f"{rate:.2f}", "-m", str(total), "-nostdin",
        "-timeout", f"{int(total / rate + hold_s * 4 + 60)}s",
        cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    started = time.monotonic()
    cpu_before, wall_before = process_cpu_seconds(answering.pid), time.monotonic()
    cpu_start = cpu_before
    while calling.returncode is None:
        try:
            await asyncio.wait_for(calling.wait(), 1.0)
        except TimeoutError:
            pass
        if answering.returncode is not None:
            break
        cpu_now, wall_now = process_cpu_seconds(answering.pid), time.monotonic()
        concurrency = sipp_current_calls(stat_file)
        run.peak = max(run.peak, concurrency)
        if concurrency >= 0.9 * limit:
            run.cpu_samples.append(100 * (cpu_now - cpu_before) / (wall_now - wall_before))
            run.concurrency_samples.append(concurrency)
        cpu_before, wall_before = cpu_now, wall_now
    run.seconds = time.monotonic() - started
    run.hold_s = hold_s
    with contextlib.suppress(OSError):  # the callee may be gone already: then its last sample stands
        cpu_before = process_cpu_seconds(answering.pid)
    run.cpu_s_total = cpu_before - cpu_start
    output = (await calling.stdout.read()).decode(errors="replace") if calling.stdout else ""
    await calling.wait()
    run.sipp_ok = sipp_counter(output, "Successful call")
    run.sipp_failed = sipp_counter(output, "Failed call")
    run.answered = run.sipp_ok + max(run.sipp_failed, 0)
    run.dtmf_ok = run.sipp_ok  # nobody collects digits on the floor: a completed call is a good one
    try:
        await asyncio.wait_for(answering.wait(), 10)
    except TimeoutError:
        answering.terminate()
        await answering.wait()
    return run


def _engine_subprocess(level: int, hold_s: float, caller_audio: str) -> Run | None:
    """The engine alone at one level, in a fresh process (it pins itself to CPU 0 before sippy starts threads)."""
    import subprocess

    command = [sys.executable, __file__, "--levels", str(level), "--rates", "", "--hold", f"{hold_s:g}",
               "--caller-audio", caller_audio, "--no-floor"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=int(hold_s * 8 + 300))
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 9 and parts[0] == str(level) and "/" in parts[4]:
            run = Run("level", level, int(parts[1]))
            run.peak, run.answered = int(parts[2]), int(parts[3])
            ok, failed = parts[4].split("/")
            run.sipp_ok, run.sipp_failed, run.dtmf_ok = int(ok), int(failed), int(parts[5])
            run.engine_failures = int(parts[6]) - run.failures  # what the row counted beyond sipp and digits
            run.cpu_samples, run.concurrency_samples = [float(parts[8].rstrip("%")) * level], [level]
            run.hold_s = hold_s  # so that _row prints the setup rate the engine run printed
            run.seconds = run.calls / max(float(parts[9]), 1e-9) + hold_s + DTMF_TAIL_S
            run.rx_samples, run.lateness_p99_ms = [float(parts[10])], float(parts[11])
            run.cpu_s_total = float(parts[12]) * run.calls / 1000
            return run
    print(f"         engine-only run at {level} gave no row: {done.stdout[-400:]} {done.stderr[-400:]}")
    return None


def _ratio(numerator: float, denominator: float) -> str:
    if not (denominator > 0) or not (numerator >= 0):  # nan on either side: no ratio
        return "n/a"
    return f"{numerator / denominator:5.2f}"


def _print_comparison(rows: list[tuple[int, Run | None, Run | None, Run | None]]) -> None:
    """One line per level: failures and CPU of each run, and the ratios that count on a noisy machine (API columns
    only when the API ran). The ratios divide CPU ms per call over the whole run, which other work on the machine
    does not distort the way it distorts CPU % per concurrent call (a starved process does less per second)."""
    api = any(main_run is not None for _, main_run, _, _ in rows)
    names = (["api"] if api else []) + ["engine", "floor"]
    print(
        "\nside by side (same run): failures / CPU % of a core per concurrent call / CPU ms per call (whole run)\n"
        " target"
        + "".join(f"  {name + ' fail / %/call / ms/call':>31}" for name in names)
        + ("  api/engine" if api else "")
        + "  engine/floor"
        + ("  api/floor" if api else "")
    )

    def cell(run: Run | None) -> str:
        return f"{run.failures:5d} / {run.cpu_per_call:7.3f}% / {run.cpu_ms_per_call:7.1f}" if run else "-"

    def ms(run: Run | None) -> float:
        return run.cpu_ms_per_call if run else float("nan")

    for level, main_run, engine, floor in rows:
        print(
            f" {level:6d}"
            + (f"  {cell(main_run):>31}" if api else "")
            + f"  {cell(engine):>31}  {cell(floor):>31}"
            + (f"  {_ratio(ms(main_run), ms(engine)):>10}" if api else "")
            + f"  {_ratio(ms(engine), ms(floor)):>12}"
            + (f"  {_ratio(ms(main_run), ms(floor)):>9}" if api else "")
        )


def _row(run: Run) -> str:
    return (
        f" {run.target:6d}  {run.calls:5d}  {run.peak:4d}  {run.answered:8d}  {run.sipp_ok:5d}/{run.sipp_failed:<5d}"
        f"  {run.dtmf_ok:7d}  {run.failures:8d}  {run.cpu_percent:7.1f}  {run.cpu_per_call:8.3f}%"
        f"  {run.calls / max(run.seconds - run.hold_s - DTMF_TAIL_S, 1.0):7.1f}"
        f"  {statistics.median(run.rx_samples) if run.rx_samples else float('nan'):9.1f}"
        f"  {run.lateness_p99_ms:8.1f}  {run.cpu_ms_per_call:9.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="50,100,200", help="target concurrent calls")
    parser.add_argument("--hold", type=float, default=8.0, help="seconds each call lasts in the concurrency runs")
    parser.add_argument("--rates", default="10,20", help="new calls per second for the setup-rate runs")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="how long each rate is offered")
    parser.add_argument("--rate-hold", type=float, default=3.0, help="seconds each call lasts in the rate runs")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="no new run starts after this")
    parser.add_argument(
        "--caller-audio",
        choices=("echo", "pcap"),
        default="echo",
        help="what the caller sends besides its digits: our own audio echoed back by sipp (-rtp_echo, one sipp"
        " thread) or a tone pcap per call (a sipp thread per call: on a shared 2-core machine sipp falls behind first)",
    )
    parser.add_argument(
        "--api",
        action="store_true",
        help="through /calls/1: callplane serve (voice on) on CPU 0; this process (the application: webhook"
        " receiver + API client) and sipp on CPU 1; --levels only",
    )
    parser.add_argument("--database-url", default="", help="with --api: CALLPLANE_DATABASE_URL (default SQLite)")
    parser.add_argument("--stop-on-failure", action="store_true", help="skip higher levels after a failing one")
    parser.add_argument(
        "--profile", type=Path, default=None, help="with --api: py-spy serve at each level's target into this folder"
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor (sipp calling sipp, no engine) run after each level"
    )
    parser.add_argument(
        "--no-engine", action="store_true", help="with --api: skip the engine-alone run after each level"
    )
    args = parser.parse_args()
    if args.api:
        _api_main(args)
        return
    os.sched_setaffinity(0, {0})  # before sippy starts any thread: every engine thread inherits CPU 0
    if shutil.which("sipp") is None:
        sys.exit("sipp (Debian sip-tester) is needed")
    deadline = time.monotonic() + args.max_seconds
    print(
        f"engine pinned to CPU 0, sipp to CPU 1; {os.cpu_count()} CPUs; Python {sys.version.split()[0]};"
        " per call: answer + looped TTS prompt + MONO recording + DTMF collection of sipp's RFC 4733 '12#'"
    )
    header = (
        " target  calls  peak  answered  sipp ok/fail  dtmf ok  failures  CPU%     per call  setup/s  rx pkt/s"
        "  p99 late ms  CPU ms/call"
    )
    best_level = 0
    compared: list[tuple[int, Run | None, Run | None, Run | None]] = []
    with tempfile.TemporaryDirectory(prefix="voice-bench-") as scratch:
        workdir = Path(scratch)
        levels = [int(value) for value in args.levels.split(",") if value]
        if levels:
            print(f"\nconcurrency ({args.hold:.0f} s calls, 2 x target calls per level)\n{header}")
        for level in levels:
            if time.monotonic() > deadline:
                print(f" {level:6d}  skipped (time budget)")
                continue
            level_dir = workdir / f"level{level}"
            level_dir.mkdir()
            run = asyncio.run(
                _run("level", limit=level, rate=max(1.0, level / args.hold), total=2 * level, hold_s=args.hold,
                     workdir=level_dir, caller_audio=args.caller_audio)
            )  # fmt: skip
            print(_row(run), flush=True)
            if run.misses:
                print(f"         DTMF misses: {dict(run.misses.most_common(4))}")
            floor = None
            if not args.no_floor:
                floor = asyncio.run(
                    _floor_run(limit=level, rate=max(1.0, level / args.hold), total=2 * level, hold_s=args.hold,
                               workdir=level_dir)
                )  # fmt: skip
                print(_row(floor).replace("nan", "  -") + "  floor: sipp -> sipp", flush=True)
            compared.append((level, run, None, floor))
            if run.failures == 0:
                best_level = max(best_level, level)
            elif args.stop_on_failure:
                break
        if compared and not args.no_floor:
            _print_comparison([(level, None, run, floor) for level, run, _, floor in compared])
        rates = [float(value) for value in args.rates.split(",") if value]
        if rates:
            print(f"\nsetup rate ({args.rate_seconds:.0f} s at each rate, {args.rate_hold:.0f} s calls)\n{header}")
        best_rate = 0.0
        for rate in rates:
            if time.monotonic() > deadline:
                print(f" {rate:6.0f}  skipped (time budget)")
                continue
            rate_dir = workdir / f"rate{rate:g}"
            rate_dir.mkdir()
            total = int(rate * args.rate_seconds)
            run = asyncio.run(
                _run("rate", limit=int(rate * args.rate_hold * 3) + 10, rate=rate, total=total,
                     hold_s=args.rate_hold, workdir=rate_dir, caller_audio=args.caller_audio)
            )  # fmt: skip
            print(_row(run), flush=True)
            if run.failures == 0:
                best_rate = max(best_rate, rate)
        print(
            f"\nmax concurrent calls with zero failures: {best_level}; setup rate with zero failures: {best_rate:g}/s"
        )


def _api_main(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {1})
    deadline = time.monotonic() + args.max_seconds
    database = args.database_url.split("@")[-1] if args.database_url else "SQLite"
    print(
        f"callplane serve pinned to CPU 0 ({database}); application + sipp on CPU 1; per call through /calls/1:"
        " CALL_RECEIVED -> answer with recording -> CALL_ESTABLISHED -> capture/dtmf + say (looped)"
        " -> DTMF_CAPTURED '12' -> caller's BYE -> CALL_FINISHED"
    )
    print(f"\nconcurrency ({args.hold:.0f} s calls, 2 x target calls per level); CPU = the serve process")
    print(
        " target  calls  peak  answered  sipp ok/fail  dtmf ok  failures  CPU%     per call  setup/s"
        "  rx pkt/s  p99 late ms  CPU ms/call (rx, lateness: engine mode only)"
    )
    best = 0
    compared: list[tuple[int, Run | None, Run | None, Run | None]] = []
    with tempfile.TemporaryDirectory(prefix="voice-api-bench-") as scratch:
        for level in (int(value) for value in args.levels.split(",") if value):
            if time.monotonic() > deadline:
                print(f" {level:6d}  skipped (time budget)")
                continue
            level_dir = Path(scratch) / f"level{level}"
            level_dir.mkdir()
            run = asyncio.run(
                _api_run(limit=level, rate=max(1.0, level / args.hold), total=2 * level, hold_s=args.hold,
                         workdir=level_dir, database_url=args.database_url, profile=args.profile)
            )  # fmt: skip
            print(_row(run), flush=True)
            if run.event_lag_ms:
                lag = np.percentile(run.event_lag_ms, [50, 99])
                print(f"         webhook delivery lag p50 {lag[0]:.0f} ms, p99 {lag[1]:.0f} ms")
            if run.capture_after_ms:
                loop_ms = np.percentile(run.capture_after_ms, [50, 99])
                print(
                    f"         CALL_RECEIVED received -> capture/dtmf answered p50 {loop_ms[0]:.0f} ms,"
                    f" p99 {loop_ms[1]:.0f} ms (digits come {max(0.5, args.hold - DTMF_TAIL_S):.1f} s after answer)"
                )
            if run.misses:
                print(f"         misses: {dict(run.misses.most_common(5))}")
            engine = None if args.no_engine else _engine_subprocess(level, args.hold, args.caller_audio)
            if engine is not None:
                print(_row(engine).replace("nan", "  -") + "  engine alone", flush=True)
            floor = None
            if not args.no_floor:
                floor = asyncio.run(
                    _floor_run(limit=level, rate=max(1.0, level / args.hold), total=2 * level, hold_s=args.hold,
                               workdir=level_dir)
                )  # fmt: skip
                print(_row(floor).replace("nan", "  -") + "  floor: sipp -> sipp", flush=True)
            compared.append((level, run, engine, floor))
            if run.failures == 0:
                best = max(best, level)
            elif args.stop_on_failure:
                break
    if compared:
        _print_comparison(compared)
    print(f"\nmax concurrent calls through the API with zero failures: {best}")


if __name__ == "__main__":
    main()
