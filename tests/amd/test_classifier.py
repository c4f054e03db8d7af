"""The answering-machine detector on the labelled set (tests/amd/generate.py): accuracy, when it decides, and the
end of the message. Times here are audio time (frames fed), so they do not depend on the machine's load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from callplane.media.amd import FRAME_SAMPLES, AnsweringMachineDetector, Cue, Decision, MessageEnd, Verdict
from tests.amd.generate import Answer, Result, classify, generate


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("amd-voices")


@pytest.fixture(scope="module")
def answers(voices: Path) -> list[Answer]:
    return generate(voices)


@pytest.fixture(scope="module")
def results(answers: list[Answer]) -> list[Result]:
    return [classify(answer) for answer in answers]


def test_the_set_is_40_or_more_answers_of_both_classes(answers: list[Answer]) -> None:
    assert len(answers) >= 40
    assert {a.label for a in answers} == {Verdict.HUMAN, Verdict.MACHINE}
    assert len({a.voice for a in answers}) >= 5
    assert {a.codec for a in answers} == {"PCMU", "PCMA"}


def test_accuracy_is_at_least_90_percent_and_85_per_class(results: list[Result]) -> None:
    assert sum(r.correct for r in results) / len(results) >= 0.9
    for label in Verdict:
        mine = [r for r in results if r.answer.label is label]
        assert sum(r.correct for r in mine) / len(mine) >= 0.85, label


def test_every_answer_is_decided_within_4_seconds_of_audio(results: list[Result]) -> None:
    assert all(r.decision is not None and r.decision.at_ms <= 4000 for r in results)


def test_every_beep_ends_the_message_and_none_is_invented(results: list[Result]) -> None:
    machines = [r for r in results if r.answer.label is Verdict.MACHINE and r.correct]
    for result in machines:
        end = result.message_end
        assert end is not None and end.found, result.answer.name
        if result.answer.beep_hz is not None:
            assert end.cue is Cue.BEEP, result.answer.name
            assert result.answer.message_end_ms is not None
            assert abs(end.at_ms - result.answer.message_end_ms) <= 60  # three frames
        else:
            assert end.cue is Cue.SILENCE_AFTER_GREETING, result.answer.name
    assert not [r for r in results if r.answer.beep_hz is None and r.decision and r.decision.cue is Cue.BEEP]


def test_a_message_that_never_ends_fails_at_the_timeout(answers: list[Answer]) -> None:
    long_greeting = next(a for a in answers if a.label is Verdict.MACHINE and a.beep_hz is None)
    greeting = long_greeting.samples[: long_greeting.message_end_ms * 8]  # type: ignore[operator]
    speech = greeting[np.flatnonzero(np.abs(greeting) > 1000)[0] :]  # without the silence before it
    endless = np.tile(speech, 6)  # speaking on and on, never a long pause
    detector = AnsweringMachineDetector(message_timeout_ms=8000)
    outcomes = detector.feed(endless)
    decision, end = outcomes
    assert isinstance(decision, Decision) and decision.verdict is Verdict.MACHINE
    assert end == MessageEnd(found=False, cue=Cue.TIMEOUT, at_ms=8000)
    assert detector.done and detector.feed(endless) == []


def test_silence_is_a_machine_with_low_confidence_after_the_initial_silence() -> None:
    detector = AnsweringMachineDetector()
    (decision,) = detector.feed(np.zeros(8000 * 5, dtype=np.int16))
    assert isinstance(decision, Decision)
    assert (decision.verdict, decision.cue, decision.at_ms) == (Verdict.MACHINE, Cue.INITIAL_SILENCE, 2500)
    assert decision.confidence["MACHINE"] < 0.6
    assert detector.done  # no message timeout asked for


def test_a_shorter_detection_time_decides_earlier(answers: list[Answer]) -> None:
    machine = next(a for a in answers if a.label is Verdict.MACHINE)
    detector = AnsweringMachineDetector(detection_time_ms=1000)
    (decision,) = detector.feed(machine.samples)
    assert isinstance(decision, Decision) and decision.at_ms <= 1000


def test_any_chunking_gives_the_frames_result(answers: list[Answer]) -> None:
    answer = answers[len(answers) // 2 + 1]
    whole = classify(answer)
    detector = AnsweringMachineDetector(message_timeout_ms=30_000)
    rng = np.random.default_rng(3)
    position = 0
    while position < len(answer.samples) and not detector.done:
        size = int(rng.integers(1, FRAME_SAMPLES * 3))
        detector.feed(answer.samples[position : position + size])
        position += size
    assert (detector.decision, detector.message_end) == (whole.decision, whole.message_end)


def test_the_generator_is_deterministic(voices: Path, answers: list[Answer]) -> None:
    again = generate(voices)  # the same espeak renders; the same noise, levels and codecs drawn
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(answers, again, strict=True))


def test_nothing_heard_then_loud_line_noise_is_not_speech() -> None:
    """Taps give None before RTP flows; line noise at -42 dBFS after that is learnt as the floor, not a greeting."""
    detector = AnsweringMachineDetector()
    outcomes = [outcome for _ in range(25) for outcome in detector.frame(None)]
    noise = np.random.default_rng(5).normal(0, 32768 * 10 ** (-42 / 20), 8000 * 4).astype(np.int16)
    outcomes += detector.feed(noise)
    (decision,) = outcomes
    assert isinstance(decision, Decision)
    assert (decision.verdict, decision.cue) == (Verdict.MACHINE, Cue.INITIAL_SILENCE)


def test_a_person_after_frames_of_nothing_is_a_person(answers: list[Answer]) -> None:
    person = next(a for a in answers if a.text == "Hello?")
    detector = AnsweringMachineDetector()
    for _ in range(10):
        detector.frame(None)
    (decision,) = detector.feed(person.samples)
    assert isinstance(decision, Decision) and decision.verdict is Verdict.HUMAN


def test_a_short_greeting_then_a_beep_after_a_pause_is_a_machine(answers: list[Answer]) -> None:
    """The beep starts 700 ms after "Hello?" and is a beep 160 ms later, past the 800 ms that would make a short
    greeting a person's: a tone going on holds that verdict back."""
    person = next(a for a in answers if a.text == "Hello?")
    greeting = person.samples[: np.flatnonzero(np.abs(person.samples) > 1000)[-1] + 1]
    # the beep starts on a frame boundary: no frame half speech-gap, half tone
    greeting = np.concatenate([greeting, np.zeros(-len(greeting) % FRAME_SAMPLES, dtype=np.int16)])
    beep = (np.sin(2 * np.pi * 440.0 * np.arange(3200) / 8000) * 8000).astype(np.int16)
    silence = np.zeros(5600, dtype=np.int16)
    detector = AnsweringMachineDetector(message_timeout_ms=10_000)
    decision, end = detector.feed(np.concatenate([greeting, silence, beep, silence]))
    assert isinstance(decision, Decision) and (decision.verdict, decision.cue) == (Verdict.MACHINE, Cue.BEEP)
    assert isinstance(end, MessageEnd) and (end.found, end.cue) == (True, Cue.BEEP)
