"""Signal AI figures on this machine: the MiniLM embedder's load time, speed and memory; detection on a 5-minute call.

    .venv/bin/python bench/signals.py [--repeat 3] [--minutes 5] [--definitions 10]

Prints: the embedder's load time (reading model.safetensors and tokenizer.json), milliseconds per
sentence for one sentence at a time and for a batch of 64 transcript-like sentences, peak RSS before and
after loading, and the time ``detect_signals`` takes for ``--definitions`` signal definitions (three example
sentences and two phrases each) against a transcript of ``--minutes`` minutes (two speakers, one segment
every 3 seconds per channel, as Whisper cuts conversational speech), with MiniLM, with the hashed
embedder and with phrases only. Best and median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable

from callplane.core.signals import SignalDefinition, detect_signals
from callplane.core.signals.embedding import example_threshold, load_sentence_embedder
from callplane.core.transcripts import ChannelTranscript, Segment, Speaker, Transcript, Word

SAID = [
    "Hi, I am calling about my internet bill, it went up again this month.",
    "I am sorry to hear that. Can I have your account number please?",
    "Sure, it is four five seven two, eight one nine three.",
    "Thank you. I see a promotional discount ended last week.",
    "Then I would like to cancel my subscription, it is too expensive.",
    "Before you go, I can offer you a free upgrade for three months.",
    "What would that cost after the three months are over?",
    "It would be forty dollars a month, the same as your old price.",
    "Okay, that sounds fair. Please go ahead and apply the offer.",
    "Done. You will receive a confirmation email shortly. Anything else?",
    "No, that is all. Thank you for your help, goodbye.",
    "Can I book an appointment for a technician next Tuesday morning?",
]
INTENTS = [
    ("Cancellation", ["Please cancel my account", "I'd like to terminate my plan", "Stop my subscription"]),
    ("Appointment", ["I'd like to book an appointment", "Can someone come out to my house", "Schedule a visit"]),
    ("Price", ["How much does it cost?", "What is the monthly price?", "Is it expensive?"]),
    ("Complaint", ["I'm very unhappy with the service", "This is unacceptable", "I want to complain"]),
    ("Refund", ["I want my money back", "Can I get a refund?", "Please reverse the charge"]),
    ("Escalation", ["I want to speak to a manager", "Transfer me to your supervisor", "Who is in charge?"]),
    ("Sale", ["I'll take it", "Sign me up", "Let's go ahead with the order"]),
    ("Upgrade", ["I want a faster plan", "Can I upgrade my package?", "Give me more speed"]),
    ("Moving", ["I am moving to a new address", "Transfer my service to my new home", "We are relocating"]),
    ("Greeting", ["Thank you for calling", "How can I help you today?", "Good morning, this is support"]),
]


def transcript(minutes: float) -> Transcript:
    duration = minutes * 60

    def channel(index: int, speaker: Speaker) -> ChannelTranscript:
        segments = []
        start = 1.5 * index
        while start + 2.5 < duration:
            text = SAID[(len(segments) * 2 + index) % len(SAID)]
            words = tuple(Word(w, start + i * 0.25, start + i * 0.25 + 0.2, 0.9) for i, w in enumerate(text.split()))
            segments.append(Segment(text, start, words[-1].end_s, 0.9, 0.01, words))
            start += 3.0
        return ChannelTranscript(index, speaker, tuple(segments), duration)

    return Transcript("en-US", (channel(0, Speaker.CALLER), channel(1, Speaker.AGENT)), duration)


def definitions(count: int) -> list[SignalDefinition]:
    chosen = [INTENTS[i % len(INTENTS)] for i in range(count)]
    return [
        SignalDefinition.from_config(
            name=f"{name} {i}",
            examples=examples,
            phrases={"caller": [examples[0].split()[-1].strip("?")], "any": ["thank you"]},
        )
        for i, (name, examples) in enumerate(chosen)
    ]


def timed(function: Callable[[], object], repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        runs.append(time.perf_counter() - started)
    return min(runs), statistics.median(runs)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--definitions", type=int, default=10)
    args = parser.parse_args()

    rss_before = peak_rss_mb()
    started = time.perf_counter()
    minilm = load_sentence_embedder("minilm")
    load_s = time.perf_counter() - started
    assert minilm is not None
    print(f"embedder load (safetensors + tokenizer): {load_s * 1000:.0f} ms")
    print(f"peak RSS: {rss_before:.0f} MB before load, {peak_rss_mb():.0f} MB after")

    one, one_median = timed(lambda: [minilm.embed([s]) for s in SAID], args.repeat)
    print(
        f"one sentence at a time: {one / len(SAID) * 1000:.1f} ms/sentence (median {one_median / len(SAID) * 1000:.1f})"
    )
    batch = (SAID * 6)[:64]
    best, median = timed(lambda: minilm.embed(batch), args.repeat)
    print(
        f"batch of {len(batch)}: {best / len(batch) * 1000:.1f} ms/sentence (median {median / len(batch) * 1000:.1f})"
    )

    call = transcript(args.minutes)
    signal_definitions = definitions(args.definitions)
    segments = sum(len(c.segments) for c in call.channels)
    print(f"{args.minutes:g}-minute transcript: {segments} segments; {len(signal_definitions)} definitions")
    hashed = load_sentence_embedder("hashed")
    for label, embedder, threshold in (
        ("minilm", minilm, example_threshold("minilm")),
        ("hashed", hashed, example_threshold("hashed")),
        ("phrases only", None, 0.0),
    ):
        found: list[int] = []

        def detect(embedder: object = embedder, threshold: float = threshold, found: list[int] = found) -> None:
            results = detect_signals(signal_definitions, call, embedder=embedder, example_threshold=threshold)  # type: ignore[arg-type]
            found[:] = [sum(r.detected for r in results)]

        best, median = timed(detect, args.repeat)
        print(f"detect_signals, {label}: {best * 1000:.0f} ms (median {median * 1000:.0f}); {found[0]} signals fired")
    print(f"peak RSS at the end: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
