"""Signal AI figures on this machine: the MiniLM embedder's load time, speed and memory; detection on a 5-minute call.

    .venv/bin/python bench/signals.py [--repeat 3] [--minutes 5] [--definitions 10] [--full]

Prints: the embedder's load time (reading model.safetensors and tokenizer.json), milliseconds per
sentence for one sentence at a time and for a batch of 64 transcript-like sentences, peak RSS before and
after loading, and the time ``detect_signals`` takes for ``--definitions`` signal definitions (three example
sentences and two phrases each) against a transcript of ``--minutes`` minutes (two speakers, one segment
every 3 seconds per channel, as Whisper cuts conversational speech), with MiniLM, with the hashed
embedder and with phrases only. Best and median of ``--repeat`` runs.

The floor, in the same run on the same transcript and definitions: plain numpy and ``re`` doing the same
detection with no evidence kept (one regex per definition and speaker over each channel's joined text; the same
embedder over the same segments and examples, in the same two batches, then one matrix product and a threshold
for every definition at once). Ratio = floor time / callplane time (1.00 = as fast as the floor). ``--full``:
10 repeats and 40 definitions.
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np
from benchlib import best_and_median, load_average, peak_rss_mb, ratio

from callplane.core.signals import SignalDefinition, detect_signals
from callplane.core.signals.embedding import example_threshold, load_sentence_embedder
from callplane.core.signals.matching import SentenceEmbedder
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
        segments: list[Segment] = []
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


def phrase_pattern(words: tuple[str, ...], prefix: tuple[bool, ...]) -> str:
    return r"\b" + r"\W+".join(re.escape(w) + (r"\w*" if p else r"\b") for w, p in zip(words, prefix, strict=True))


def floor_detect(
    signal_definitions: list[SignalDefinition], call: Transcript, embedder: SentenceEmbedder | None, threshold: float
) -> int:
    """The same detection in plain numpy and ``re``, no evidence kept: how many definitions fire."""
    texts = {
        c.speaker.value if c.speaker else "any": " ".join(s.text for s in c.segments).casefold() for c in call.channels
    }
    fired = set()
    for index, definition in enumerate(signal_definitions):
        for speaker, text in texts.items():
            patterns = [phrase_pattern(p.words, p.prefix) for p in definition.phrases if p.speaker in ("any", speaker)]
            if patterns and re.search("|".join(patterns), text):
                fired.add(index)
    if embedder is not None:
        said = [s.text for c in call.channels for s in c.segments if s.text.strip()]
        sentences = sorted({e for d in signal_definitions for e in d.examples})
        column = {sentence: i for i, sentence in enumerate(sentences)}
        similarity = embedder.embed(said) @ embedder.embed(sentences).T
        best = np.stack([similarity[:, [column[e] for e in d.examples]].max(axis=1) for d in signal_definitions])
        fired |= set(np.flatnonzero((best >= threshold).any(axis=1)).tolist())
    return len(fired)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--definitions", type=int, default=10)
    parser.add_argument("--full", action="store_true", help="10 repeats and 40 definitions")
    args = parser.parse_args()
    if args.full:
        args.repeat, args.definitions = 10, 40
    print(load_average())

    rss_before = peak_rss_mb()
    started = time.perf_counter()
    minilm = load_sentence_embedder("minilm")
    load_s = time.perf_counter() - started
    assert minilm is not None
    print(f"embedder load (safetensors + tokenizer): {load_s * 1000:.0f} ms")
    print(f"peak RSS: {rss_before:.0f} MB before load, {peak_rss_mb():.0f} MB after")

    one, one_median = best_and_median(lambda: [minilm.embed([s]) for s in SAID], args.repeat)
    print(
        f"one sentence at a time: {one / len(SAID) * 1000:.1f} ms/sentence (median {one_median / len(SAID) * 1000:.1f})"
    )
    batch = (SAID * 6)[:64]
    best, median = best_and_median(lambda: minilm.embed(batch), args.repeat)
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
        found = [0, 0]  # signals fired: callplane's, the floor's

        def detect(
            embedder: SentenceEmbedder | None = embedder, threshold: float = threshold, found: list[int] = found
        ) -> None:
            results = detect_signals(signal_definitions, call, embedder=embedder, example_threshold=threshold)
            found[0] = sum(r.detected for r in results)

        def floor(
            embedder: SentenceEmbedder | None = embedder, threshold: float = threshold, found: list[int] = found
        ) -> None:
            found[1] = floor_detect(signal_definitions, call, embedder, threshold)

        best, median = best_and_median(detect, args.repeat)
        floor_best, floor_median = best_and_median(floor, args.repeat)
        print(
            f"detect_signals, {label}: {best * 1000:.1f} ms (median {median * 1000:.1f}), {found[0]} fired; "
            f"floor {floor_best * 1000:.1f} ms (median {floor_median * 1000:.1f}), {found[1]} fired; "
            f"ratio {ratio(floor_best, best)}; {load_average()}",
            flush=True,
        )
    print(f"peak RSS at the end: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
