"""Live transcription: latency from an utterance's end to its COMPLETE event, and CPU per concurrent transcribed
call leg, beside the same calls without transcription (the floor), in one run.

    .venv/bin/python bench/live_transcription.py [--levels 1,2,4] [--seconds 40]

A callplane server with the SIP engine runs in this process (SQLite, a thread; the webhook outbox delivers to a
loopback receiver here). For each level N, one sipp process places N calls to a routed number; each caller plays
the same known English speech (the committed test calls' English channels, 8 kHz PCMA through a telephone channel,
with pauses between turns) and waits for our BYE. Every call is answered through /calls/1; in the transcribed run
each then gets `start-transcription` (en-US, COMPLETE results only). After the speech has played (and the last
decodes have delivered, at most --drain seconds more) every call is hung up through the API.

- Latency: per COMPLETE event, its envelope timestamp (written when the result was ready) minus the result's
  endTime (the utterance's last speech frame), both on the server's clock: p50 / p90 / max.
- CPU per leg: this process's user+system CPU seconds (engine, API, outbox, ASR threads) over the window from the
  last answer until the speech has played, divided by the window and by N, as % of one core; the floor is the
  same calls answered and carried for the same time without transcription. Transcribed - floor = what
  transcribing one leg costs.
- Words: COMPLETE texts of every leg scored against the reference (WER, callplane.testing.wer).

The model is loaded before the first measurement. The machine is shared: read the ratio and the per-leg CPU, and
run it again when the load average (printed) is high.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import resource
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
from benchlib import free_udp_port, load_average, percentile

from callplane.core.transcripts.streaming import LiveAsr
from callplane.runtime import asr_settings
from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.server import running_server
from callplane.testing.sipp import free_even_port_pair, write_rtp_pcap
from callplane.testing.speech_calls import read_references
from callplane.testing.wer import word_error_rate

ROOT = Path(__file__).resolve().parents[1]
TESTSET = ROOT / "tests" / "transcripts" / "testset"
ADMIN_TOKEN = "bench-live-transcription"
# (call, channel) of the English test calls: caller = 0, agent = 1
SPEECH = (("en_us_cancel", 0), ("en_gb_delivery", 1), ("en_us_appointment", 1), ("en_us_cancel", 1))
UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="talking caller">
  <send retrans="500"><![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:bench@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:bench@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[local_ip_type] [local_ip]
      t=0 0
      m=audio [auto_media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000

    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:bench@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:bench@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <nop><action><exec play_pcap_audio="{{PCAP}}"/></action></nop>
  <recv request="BYE" timeout="600000"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:bench@[local_ip]:[local_port]>
      Content-Length: 0

    ]]></send>
</scenario>
"""


def _channel(name: str, channel: int) -> np.ndarray:
    references = {reference.name: reference for reference in read_references(TESTSET / "references.json")}
    with av.open(str(TESTSET / references[name].audio)) as container:
        resampler = av.AudioResampler(format="s16p", layout="stereo", rate=8000)
        frames = []
        for frame in container.decode(container.streams.audio[0]):
            frames += [part.to_ndarray() for part in resampler.resample(frame)]
        frames += [part.to_ndarray() for part in resampler.resample(None)]
    samples: np.ndarray = np.concatenate(frames, axis=1)[channel].astype(np.int16)
    return samples


def speech_track(seconds: float) -> tuple[np.ndarray, str, float]:
    """The callers' audio (1 s of silence, then the English channels in turn, repeated to `seconds`), the reference
    text of the turns it holds completely, and when its speech ends (seconds)."""
    references = {reference.name: reference for reference in read_references(TESTSET / "references.json")}
    parts, texts, at = [np.zeros(8000, np.int16)], [], 1.0
    index = 0
    while at < seconds:
        name, channel = SPEECH[index % len(SPEECH)]
        samples = _channel(name, channel)
        parts.append(samples)
        speaker = ("caller", "agent")[channel]
        texts.append(references[name].text_of(speaker))
        at += len(samples) / 8000
        index += 1
    parts.append(np.zeros(16000, np.int16))
    return np.concatenate(parts), " ".join(texts), at


@dataclass
class Receiver:
    url: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [event for event in self.events if event["type"] == kind]


@contextmanager
def receiving() -> Iterator[Receiver]:
    sink = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with sink.lock:
                sink.events.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/events"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


@dataclass
class Level:
    legs: int
    transcribed: bool
    window_s: float = 0.0
    cpu_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    wer: float | None = None
    complete: int = 0
    answered: int = 0

    @property
    def cpu_percent_per_leg(self) -> float:
        return 100 * self.cpu_s / self.window_s / self.legs if self.window_s else 0.0


def run_level(
    *, sip_port: int, api: httpx.Client, native: httpx.Client, configuration_id: str,
    receiver: Receiver, pcap: Path, workdir: Path, legs: int, transcribed: bool, speech_end_s: float,
    reference: str, drain_s: float,
) -> Level:  # fmt: skip
    level = Level(legs=legs, transcribed=transcribed)
    called = f"talk-{secrets.token_hex(3)}"
    routed = native.post(f"/v1/voice/configurations/{configuration_id}/routes", json={"called_user": called})
    routed.raise_for_status()
    scenario = render_scenario_text(UAC, workdir / f"uac-{called}.xml", PCAP=str(pcap))
    command = [
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mp", str(free_even_port_pair()), "-nostdin", "-m", str(legs), "-l", str(legs), "-r", "20",
        "-s", called, f"127.0.0.1:{sip_port}",
    ]  # fmt: skip
    sipp = subprocess.Popen(
        command,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TERM": "dumb"},
    )
    try:
        answered: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while len(answered) < legs and time.monotonic() < deadline:
            for event in receiver.of_type("CALL_RECEIVED"):
                call_id = event["callId"]
                if event["properties"]["call"]["to"] == called and call_id not in answered:
                    api.post(f"/calls/1/calls/{call_id}/answer", json={}).raise_for_status()
                    answered[call_id] = time.monotonic()
            time.sleep(0.02)
        level.answered = len(answered)
        established: set[str] = set()
        while len(established) < len(answered) and time.monotonic() < deadline:
            established = {e["callId"] for e in receiver.of_type("CALL_ESTABLISHED")} & set(answered)
            time.sleep(0.02)
        if transcribed:
            body = {"transcription": {"language": "en-US"}}
            for call_id in answered:
                api.post(f"/calls/1/calls/{call_id}/start-transcription", json=body).raise_for_status()
        started, cpu_started = time.monotonic(), own_cpu_s()
        # sipp starts playing on the ACK: the speech ends speech_end_s after the first answer
        until = min(answered.values(), default=started) + speech_end_s
        time.sleep(max(0.0, until - time.monotonic()))
        level.window_s, level.cpu_s = time.monotonic() - started, own_cpu_s() - cpu_started
        if transcribed:  # the last utterances' decodes may still be running: wait for them (not measured)
            expected = len(answered) * reference.count(".")  # one COMPLETE per sentence-ending turn, about
            drain_until = time.monotonic() + drain_s
            while time.monotonic() < drain_until and len(_complete(receiver, answered)) < expected:
                time.sleep(0.1)
        for call_id in answered:
            api.post(f"/calls/1/calls/{call_id}/hangup", json={})
        if transcribed:
            time.sleep(1.0)
            results = _complete(receiver, answered)
            level.complete = len(results)
            level.latencies_s = [
                (_at(event["timestamp"]) - _at(event["properties"]["results"][0]["endTime"])).total_seconds()
                for event in results
            ]
            per_call: dict[str, list[tuple[str, str]]] = {}
            for event in results:
                result = event["properties"]["results"][0]
                per_call.setdefault(event["callId"], []).append((result["startTime"], result["text"]))
            scores = [
                word_error_rate(reference, " ".join(text for _, text in sorted(parts))) for parts in per_call.values()
            ]
            level.wer = statistics.mean(scores) if scores else None
    finally:
        try:
            sipp.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sipp.kill()
            sipp.wait()
    return level


def _complete(receiver: Receiver, calls: dict[str, float]) -> list[dict[str, Any]]:
    return [
        event
        for event in receiver.of_type("TRANSCRIPTION")
        if event["callId"] in calls and event["properties"]["results"][0]["type"] == "COMPLETE"
    ]


def render_scenario_text(text: str, target: Path, **values: str) -> Path:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    target.write_text(text)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,2,4", help="concurrent legs per run")
    parser.add_argument("--seconds", type=float, default=40.0, help="speech each caller plays (about)")
    parser.add_argument("--drain", type=float, default=60.0, help="at most this long for the last decodes")
    args = parser.parse_args()
    levels = [int(value) for value in args.levels.split(",")]
    print(f"live transcription bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-live-asr-") as tmp, receiving() as receiver:
        workdir = Path(tmp)
        track, reference, speech_end_s = speech_track(args.seconds)
        pcap = workdir / "speech.pcap"
        write_rtp_pcap(pcap, track)
        print(f"each caller: {len(track) / 8000:.1f} s of audio, speech until {speech_end_s:.1f} s")
        sip_port = free_udp_port()
        low = 30000 + 2 * secrets.randbelow(2000)
        settings = Settings(
            environment="test", data_dir=workdir / "data", admin_token=ADMIN_TOKEN, log_level="WARNING",
            fetch_allowed_networks=["127.0.0.1/32"], workers_enabled=True, transcription_enabled=False,
            delivery_poll_seconds=0.05, voice_enabled=True, sip_port=sip_port, rtp_port_min=low,
            rtp_port_max=low + 2000, voice_node_id="bench-node",
        )  # fmt: skip
        started = time.perf_counter()
        LiveAsr(asr_settings(settings)).engine()  # the process's shared model, loaded once before measuring
        print(f"model ready in {time.perf_counter() - started:.1f} s")
        with running_server(settings) as server:
            account = Admin(server.base_url, ADMIN_TOKEN).network()
            headers = {"Authorization": f"App {account.token}"}
            with (
                httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as api,
                httpx.Client(
                    base_url=server.base_url, headers={"Authorization": f"Bearer {account.token}"}, timeout=60
                ) as native,
            ):
                configuration_id = api.post("/calls/1/configurations", json={"name": "bench"}).json()["id"]
                native.post(
                    f"/v1/voice/configurations/{configuration_id}/subscriptions", json={"url": receiver.url}
                ).raise_for_status()
                rows: list[tuple[Level, Level]] = []
                for legs in levels:
                    measured = {}
                    for transcribed in (False, True):
                        measured[transcribed] = run_level(
                            sip_port=sip_port, api=api, native=native,
                            configuration_id=configuration_id, receiver=receiver, pcap=pcap, workdir=workdir,
                            legs=legs, transcribed=transcribed, speech_end_s=speech_end_s, reference=reference,
                            drain_s=args.drain,
                        )  # fmt: skip
                    rows.append((measured[False], measured[True]))
                    floor, live = measured[False], measured[True]
                    print(
                        f"  {legs} legs: floor {floor.cpu_percent_per_leg:.1f} %/leg, transcribed "
                        f"{live.cpu_percent_per_leg:.1f} %/leg, {live.complete} COMPLETE, {load_average()}",
                        flush=True,
                    )
    print()
    columns = ["legs", "floor CPU %/leg", "transcribed CPU %/leg", "ASR cost %/leg", "latency p50 / p90 / max (s)"]
    print("| " + " | ".join([*columns, "COMPLETE", "WER"]) + " |")
    print("| ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for floor, live in rows:
        lat = live.latencies_s
        latency = f"{percentile(lat, 0.5):.2f} / {percentile(lat, 0.9):.2f} / {max(lat):.2f}" if lat else "n/a"
        wer = f"{100 * live.wer:.1f} %" if live.wer is not None else "n/a"
        print(
            f"| {live.legs} | {floor.cpu_percent_per_leg:.1f} | {live.cpu_percent_per_leg:.1f} | "
            f"{live.cpu_percent_per_leg - floor.cpu_percent_per_leg:.1f} | {latency} | {live.complete} | {wer} |"
        )
    print(f"at the end: {load_average()}")


if __name__ == "__main__":
    main()
