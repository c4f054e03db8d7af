"""The labelled answering-machine set: what the far end sends after it answers, person or voicemail.

48 answers rendered with espeak-ng (six voices, 135-195 words a minute), each with its own initial silence,
speech level, line noise (white, some with mains hum) and a G.711 round trip (µ-law or A-law), all drawn from one
seeded generator so the set is the same on every run:

- 24 people: greetings from "Yes?" to "Good afternoon, Smith and Partners, how can I help you?", then the
  silence of someone waiting for the caller (two say "Hello?" again after a pause);
- 24 voicemails: greetings from "Please leave a message." to long ones, 15 of them followed by a beep (one
  frequency between 440 and 1950 Hz, 250-800 ms), then silence.

`python -m tests.amd.generate` classifies the set and prints the figures docs/benchmarks.md reports.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callplane.media.amd import FRAME_SAMPLES, AnsweringMachineDetector, Decision, MessageEnd, Verdict
from callplane.media.audio import decode_to_pcm
from callplane.media.g711 import PayloadType, decode, encode

RATE = 8000
SEED = 16

VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en-029", "en-gb-x-rp+f4")

PEOPLE = (
    "Hello?",
    "Yes?",
    "Hi, this is Anna.",
    "Hello, Mark speaking.",
    "Yeah, hello?",
    "Hi there.",
    "Good morning.",
    "Hello, who is this?",
    "Speaking.",
    "Hey.",
    "Anna Smith.",
    "Hello, yes?",
    "Hi, it's Tom.",
    "Good afternoon, this is Maria.",
    "Yes, hello.",
    "Hello, Peter here.",
    "Hi, who's calling?",
    "Hello.",
    "Yep?",
    "Hello, this is David.",
    "Hi, this is Anna, who's calling please?",
    "Good afternoon, Smith and Partners, how can I help you?",
    "Hello? | Hello?",  # says it again after a pause
    "Yes? | Hello, anyone there?",
)

VOICEMAILS = (
    "Hi, you've reached John Smith. I can't take your call right now, please leave a message after the tone.",
    "Hello, you have reached the voicemail of five five five, zero one three four. Please leave a message.",
    "The person you are calling is not available. Please leave a message after the tone.",
    "Hi, this is Anna. Sorry I missed your call. Leave me a message and I'll get back to you.",
    "You've reached Smith and Partners. Our office is closed. Please leave your name and number after the beep.",
    "Hey, it's Mike, leave a message.",
    "Please leave a message.",
    "Thank you for calling. No one is available to take your call. Please leave a message after the tone.",
    "Hi, you've reached the Garcia family. We can't come to the phone right now, leave us a message.",
    "This is Maria. I'm away from my desk. Leave a message and I will call you back.",
    "The number you have dialed is not available. At the tone, please record your message.",
    "Hi, Tom here. Can't talk now. Leave a message.",
    "Welcome to the voice mailbox of Peter Brown. Please leave a message after the tone.",
    "Hello, I'm not here right now. Please leave a message.",
    "You have reached David. Please leave a short message and your number.",
    "Hi! You've reached Lisa's phone. I'm probably out running, so leave a message and I'll call you back later.",
    "Sorry, I can't answer the phone right now. Leave your message after the beep.",
    "Hello, this is the Miller residence. Nobody is home right now, please leave a message.",
    "You've reached the office of Doctor Jones. Please leave your name, number and a brief message.",
    "Hi, this is Sam. Leave a message.",
    "Your call has been forwarded to an automatic voice message system. The person is not available.",
    "Hello, you've reached Kate and Chris. We'll call you back as soon as we can.",
    "This mailbox belongs to Robert. Please leave a message after the tone, thank you.",
    "Hi, it's Emma, I'm busy, leave a message.",
)
VOICEMAILS_WITH_BEEP = 15
# Written after the detector was finished and run once, never used to tune it: `--held-out` reports on these.
HELD_OUT_PEOPLE = (
    "Hello, Jenny speaking.",
    "Yes, who is it?",
    "Hi.",
    "Hello, this is the front desk.",
    "Morning!",
    "Yeah?",
    "Hi, Carl here, what's up?",
    "Hello, can I help you?",
    "This is Rachel.",
    "Hello, good evening.",
    "Uh, hello?",
    "Hi, sorry, I'm driving, who is this?",
)
HELD_OUT_VOICEMAILS = (
    "Hi, you've reached Paul. I'm not around, leave a message.",
    "The subscriber cannot be reached. Please try again later or leave a message after the tone.",
    "Hey, this is Nina! Leave your name and number and I'll call you back.",
    "You have reached the sales department. All our agents are busy. Please leave a message.",
    "Hello, this is Greg's phone. Beep.",
    "Hi there, we're out at the moment, please leave a message after the beep.",
    "This is the voicemail of Ana Lopez. Please leave a message.",
    "Thanks for calling Bright Dental. Our office is now closed. Our hours are nine to five.",
    "Leave a message.",
    "Hi, it's Joe. You know what to do.",
    "You've reached four one five, five five five, two nine nine zero. Please leave a message.",
    "Hello. I am unable to answer your call. Please leave your message after the signal.",
)
# the first ones of each voice rotation get a beep: see _voicemail


@dataclass(frozen=True)
class Answer:
    name: str
    label: Verdict
    text: str
    voice: str
    words_per_minute: int
    codec: str
    samples: np.ndarray  # 8 kHz int16, from the answer on
    beep_hz: float | None = None
    message_end_ms: int | None = None  # a voicemail's: where the greeting (or its beep) ends


def _speak(text: str, voice: str, words_per_minute: int, cache: Path) -> np.ndarray:
    stored = cache / f"{voice}-{words_per_minute}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.wav"
    if not stored.exists():
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise RuntimeError("espeak-ng is not installed (scripts/install.sh installs it)")
        partial = stored.with_suffix(".part.wav")
        subprocess.run(
            [binary, "-v", voice, "-s", str(words_per_minute), "-w", str(partial), text],
            check=True,
            capture_output=True,
        )
        partial.replace(stored)
    return _trim(decode_to_pcm(stored).astype(np.float64))


def _trim(samples: np.ndarray) -> np.ndarray:
    """espeak's own leading and trailing silence off: the set places the speech itself."""
    loud = np.flatnonzero(np.abs(samples) > 300)
    if len(loud) == 0:
        return samples
    return samples[loud[0] : loud[-1] + 1]


def _at_level(speech: np.ndarray, dbfs: float) -> np.ndarray:
    frames = speech[: len(speech) - len(speech) % FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    power = (frames**2).mean(axis=1)
    active = power[power > power.max() * 0.01]
    rms = np.sqrt(active.mean()) if len(active) else 1.0
    return speech * (32768.0 * 10 ** (dbfs / 20) / rms)


def _silence(ms: int) -> np.ndarray:
    return np.zeros(ms * RATE // 1000)


def _tone(hz: float, ms: int, dbfs: float) -> np.ndarray:
    t = np.arange(ms * RATE // 1000) / RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)  # 5 ms fades, as real beeps have
    tone: np.ndarray = np.sin(2 * np.pi * hz * t) * ramp * 32768.0 * np.sqrt(2) * 10 ** (dbfs / 20)
    return tone


def _line(signal: np.ndarray, rng: np.random.Generator, codec: PayloadType) -> np.ndarray:
    """Line noise (white, sometimes mains hum) and the G.711 round trip."""
    noise_dbfs = rng.uniform(-58, -42)
    noisy = signal + rng.normal(0, 32768.0 * 10 ** (noise_dbfs / 20), len(signal))
    if rng.random() < 0.3:
        t = np.arange(len(signal)) / RATE
        noisy += np.sin(2 * np.pi * 60.0 * t) * 32768.0 * 10 ** (rng.uniform(-50, -40) / 20)
    pcm = np.clip(np.round(noisy), -32768, 32767).astype(np.int16)
    return decode(encode(pcm, codec), codec)


def generate(cache: Path, *, seed: int = SEED, held_out: bool = False) -> list[Answer]:
    """The labelled set (the same on every run); espeak renders are kept in `cache`. Another `seed` draws other
    rates, levels, silences, noise, codecs and beeps for the same texts and voices; `held_out` uses the texts
    written after the detector (24 answers, 9 voicemails with a beep)."""
    cache.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    people, voicemails = (HELD_OUT_PEOPLE, HELD_OUT_VOICEMAILS) if held_out else (PEOPLE, VOICEMAILS)
    answers: list[Answer] = []
    for index, text in enumerate(people):
        answers.append(_person(index, text, rng, cache))
    for index, text in enumerate(voicemails):
        answers.append(_voicemail(index, text, rng, cache))
    return answers


def single(label: Verdict, text: str, cache: Path, *, index: int = 0) -> Answer:
    """One answer outside the set, built the same way (a voicemail gets a beep when `index % 8 < 5`)."""
    cache.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED * 1000 + index)
    return _person(index, text, rng, cache) if label is Verdict.HUMAN else _voicemail(index, text, rng, cache)


def _render(text: str, index: int, rng: np.random.Generator, cache: Path) -> tuple[np.ndarray, str, int, float]:
    voice = VOICES[index % len(VOICES)]
    words_per_minute = int(rng.integers(135, 196))
    level = float(rng.uniform(-26, -14))
    parts = [_at_level(_speak(part.strip(), voice, words_per_minute, cache), level) for part in text.split("|")]
    pieces: list[np.ndarray] = []
    for number, part in enumerate(parts):
        if number:
            pieces.append(_silence(int(rng.integers(1200, 2000))))
        pieces.append(part)
    return np.concatenate(pieces), voice, words_per_minute, level


def _person(index: int, text: str, rng: np.random.Generator, cache: Path) -> Answer:
    speech, voice, wpm, _level = _render(text, index, rng, cache)
    lead = _silence(int(rng.integers(150, 1100)))
    signal = np.concatenate([lead, speech, _silence(6000)])
    codec = PayloadType.PCMU if index % 2 == 0 else PayloadType.PCMA
    return Answer(
        name=f"person-{index:02d}",
        label=Verdict.HUMAN,
        text=text,
        voice=voice,
        words_per_minute=wpm,
        codec=codec.name,
        samples=_line(signal, rng, codec)[: 8 * RATE],
    )


def _voicemail(index: int, text: str, rng: np.random.Generator, cache: Path) -> Answer:
    speech, voice, wpm, level = _render(text, index + 3, rng, cache)
    lead = _silence(int(rng.integers(300, 1500)))
    pieces = [lead, speech]
    beep_hz: float | None = None
    if index % 8 < 5:  # 15 of 24
        beep_hz = float(rng.choice([440.0, 850.0, 1000.0, 1000.0, 1400.0, 1950.0]))
        pieces += [_silence(int(rng.integers(150, 600))), _tone(beep_hz, int(rng.integers(250, 800)), level + 3)]
    end_ms = sum(len(piece) for piece in pieces) * 1000 // RATE
    pieces.append(_silence(5000))
    codec = PayloadType.PCMA if index % 2 == 0 else PayloadType.PCMU
    return Answer(
        name=f"voicemail-{index:02d}",
        label=Verdict.MACHINE,
        text=text,
        voice=voice,
        words_per_minute=wpm,
        codec=codec.name,
        samples=_line(np.concatenate(pieces), rng, codec),
        beep_hz=beep_hz,
        message_end_ms=end_ms,
    )


# ---- classifying the set ------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    answer: Answer
    decision: Decision | None
    message_end: MessageEnd | None

    @property
    def correct(self) -> bool:
        return self.decision is not None and self.decision.verdict is self.answer.label


def classify(answer: Answer, *, message_timeout_ms: int | None = 30_000) -> Result:
    """Feed the answer to a detector the way the engine does: one 20 ms frame at a time."""
    detector = AnsweringMachineDetector(message_timeout_ms=message_timeout_ms)
    samples = answer.samples
    for start in range(0, len(samples) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        detector.frame(samples[start : start + FRAME_SAMPLES])
        if detector.done:
            break
    return Result(answer, detector.decision, detector.message_end)


def report(results: list[Result], *, frame_cost_us: tuple[float, float]) -> str:
    lines: list[str] = []
    for label in Verdict:
        mine = [r for r in results if r.answer.label is label]
        right = sum(r.correct for r in mine)
        lines.append(f"{label.value}: {right}/{len(mine)} correct ({right / len(mine):.1%})")
    right = sum(r.correct for r in results)
    lines.append(f"all: {right}/{len(results)} ({right / len(results):.1%})")
    times = np.array([r.decision.at_ms for r in results if r.decision is not None])
    lines.append(
        f"decision time after the answer (audio ms): p50 {np.percentile(times, 50):.0f}, "
        f"p90 {np.percentile(times, 90):.0f}, max {times.max():.0f}"
    )
    for label in Verdict:
        by_label = np.array([r.decision.at_ms for r in results if r.decision and r.answer.label is label])
        lines.append(f"  {label.value} answers: p50 {np.percentile(by_label, 50):.0f}, max {by_label.max():.0f}")
    cues: dict[str, int] = {}
    for r in results:
        if r.decision is not None:
            cues[r.decision.cue.value] = cues.get(r.decision.cue.value, 0) + 1
    lines.append("decided by: " + ", ".join(f"{cue} {count}" for cue, count in sorted(cues.items())))
    machines = [r for r in results if r.answer.label is Verdict.MACHINE and r.correct]
    found = [r for r in machines if r.message_end is not None and r.message_end.found]
    lines.append(f"end of message (machines detected, timeout 30 s): found {len(found)}/{len(machines)}")
    for cue in ("beep", "silence_after_greeting"):
        by_cue = [r for r in found if r.message_end is not None and r.message_end.cue.value == cue]
        late = np.array([r.message_end.at_ms - (r.answer.message_end_ms or 0) for r in by_cue if r.message_end])
        if len(late):
            lines.append(
                f"  by {cue}: {len(by_cue)}, found minus true end ms: min {late.min():.0f}, "
                f"p50 {np.median(late):.0f}, max {late.max():.0f}"
            )
    beeped = [r for r in machines if r.answer.beep_hz is not None]
    beep_found = [r for r in beeped if r.message_end is not None and r.message_end.cue.value == "beep"]
    lines.append(f"  beeps found: {len(beep_found)}/{len(beeped)}")
    false_beeps = [
        r
        for r in results
        if r.answer.beep_hz is None
        and (
            (r.decision is not None and r.decision.cue.value == "beep")
            or (r.message_end is not None and r.message_end.cue.value == "beep")
        )
    ]
    lines.append(f"beeps reported where there was none: {len(false_beeps)}")
    cost, floor = frame_cost_us
    lines.append(f"CPU per 20 ms frame: {cost:.1f} us (floor, one energy sum per frame: {floor:.1f} us)")
    for r in results:
        if not r.correct:
            cue = r.decision.cue.value if r.decision else "-"
            lines.append(f"  wrong: {r.answer.name} {r.answer.text!r} -> {cue}")
    return "\n".join(lines)


def frame_cost_us(answers: list[Answer]) -> tuple[float, float]:
    """CPU time (process time, whatever the load) per 20 ms frame: the detector, and a floor that only sums each
    frame's energy (the least any voice-activity test does), over the whole set."""
    samples = np.concatenate([a.samples for a in answers])
    frames = samples[: len(samples) - len(samples) % FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    detector = AnsweringMachineDetector(detection_time_ms=10**9, message_timeout_ms=None)
    started = time.process_time()
    for frame in frames:
        detector.frame(frame)
        if detector.done:
            detector = AnsweringMachineDetector(detection_time_ms=10**9, message_timeout_ms=None)
    cost = (time.process_time() - started) / len(frames) * 1e6
    started = time.process_time()
    total = 0.0
    for frame in frames:
        x = frame.astype(np.float64)
        total += float(np.dot(x, x))
    floor = (time.process_time() - started) / len(frames) * 1e6
    return cost, floor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=None, help="where espeak-ng renders are kept")
    parser.add_argument("--seed", type=int, default=SEED, help="another draw of the same texts (default: the set)")
    parser.add_argument("--held-out", action="store_true", help="the texts written after the detector")
    parser.add_argument("--write", type=Path, default=None, help="also write each answer as a WAV here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        answers = generate(args.cache or Path(scratch), seed=args.seed, held_out=args.held_out)
    if args.write:
        from callplane.media.audio import write_wav

        args.write.mkdir(parents=True, exist_ok=True)
        for answer in answers:
            write_wav(args.write / f"{answer.name}.wav", answer.samples)
    results = [classify(answer) for answer in answers]
    print(report(results, frame_cost_us=frame_cost_us(answers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
