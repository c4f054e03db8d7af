"""The numpy all-MiniLM-L6-v2 against sentence-transformers' published numbers, and its tuned threshold."""

from __future__ import annotations

import numpy as np
import pytest

from callplane.core.signals import HashedBagOfWordsEmbedder, SignalDefinition, detect_signals
from callplane.core.signals.embedding import (
    DEFAULT_EXAMPLE_THRESHOLD,
    MiniLmEmbedder,
    UnknownEmbedder,
    example_threshold,
    load_sentence_embedder,
    minilm_model_dir,
    read_safetensors,
)
from callplane.core.transcripts import ChannelTranscript, Segment, Speaker, Transcript
from tests.signals.similarity_pairs import PAIRS

pytestmark = pytest.mark.xdist_group("asr")

# sbert.net, "Quickstart" (all-MiniLM-L6-v2): model.similarity(embeddings, embeddings).
QUICKSTART = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
QUICKSTART_SIMILARITY = [[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]]
# sbert.net, "Semantic Textual Similarity" (all-MiniLM-L6-v2): rows sentences1, columns sentences2.
STS_LEFT = ["The new movie is awesome", "The cat sits outside", "A man is playing guitar"]
STS_RIGHT = ["The dog plays in the garden", "The new movie is so great", "A woman watches TV"]
STS_SIMILARITY = [[0.0543, 0.8939, -0.0502], [0.2838, -0.0029, 0.1310], [0.2277, -0.0136, -0.0327]]


@pytest.fixture(scope="module")
def minilm() -> MiniLmEmbedder:
    embedder = load_sentence_embedder("minilm")
    assert isinstance(embedder, MiniLmEmbedder)
    return embedder


def test_matches_the_published_quickstart_similarities(minilm: MiniLmEmbedder) -> None:
    vectors = minilm.embed(QUICKSTART)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors @ vectors.T, QUICKSTART_SIMILARITY, atol=0.002)


def test_matches_the_published_sts_similarities(minilm: MiniLmEmbedder) -> None:
    np.testing.assert_allclose(minilm.embed(STS_LEFT) @ minilm.embed(STS_RIGHT).T, STS_SIMILARITY, atol=0.002)


def test_padding_in_a_batch_changes_nothing(minilm: MiniLmEmbedder) -> None:
    alone = minilm.embed(["Cancel it."])
    long = "I have been a customer for many years and I am thinking about what to do with my plan next month."
    batched = minilm.embed([long, "Cancel it.", "Hello"])
    np.testing.assert_allclose(batched[1], alone[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_empty_and_overlong_input(minilm: MiniLmEmbedder) -> None:
    assert minilm.embed([]).shape == (0, 384)
    overlong = minilm.embed(["cancel " * 600, ""])  # cut at 256 tokens, as upstream; "" is [CLS][SEP]
    assert np.isfinite(overlong).all()
    np.testing.assert_allclose(np.linalg.norm(overlong, axis=1), 1.0, atol=1e-5)


def test_reads_every_tensor_of_the_safetensors_file() -> None:
    tensors = read_safetensors(minilm_model_dir() / "model.safetensors")
    assert tensors["embeddings.word_embeddings.weight"].shape == (30522, 384)
    assert tensors["embeddings.position_ids"].dtype == np.int64
    assert tensors["embeddings.position_ids"][0, 511] == 511
    parameters = sum(t.size for name, t in tensors.items() if name != "embeddings.position_ids")
    assert parameters == 22_713_216  # all-MiniLM-L6-v2's published 22.7 M, pooler included


def test_kinds_are_loaded_once() -> None:
    assert load_sentence_embedder("minilm") is load_sentence_embedder(" MiniLM ")
    assert isinstance(load_sentence_embedder("hashed"), HashedBagOfWordsEmbedder)
    assert load_sentence_embedder("off") is None
    with pytest.raises(UnknownEmbedder):
        load_sentence_embedder("bert-large")
    assert example_threshold("minilm") == DEFAULT_EXAMPLE_THRESHOLD["minilm"]
    assert example_threshold("hashed") == DEFAULT_EXAMPLE_THRESHOLD["hashed"]


def _similarities(embedder: MiniLmEmbedder | HashedBagOfWordsEmbedder) -> np.ndarray:
    examples = embedder.embed([example for example, _, _ in PAIRS])
    said = embedder.embed([utterance for _, utterance, _ in PAIRS])
    return np.asarray((examples * said).sum(axis=1))


def test_the_tuned_threshold_separates_the_labelled_pairs(minilm: MiniLmEmbedder) -> None:
    labels = np.array([same for _, _, same in PAIRS])
    fired = _similarities(minilm) >= DEFAULT_EXAMPLE_THRESHOLD["minilm"]
    assert not (fired & ~labels).any(), "no false positive on the labelled set"
    assert (fired & labels).sum() / labels.sum() >= 0.75
    # The lexical baseline at its own threshold finds none of these paraphrases: why the real model matters.
    hashed = _similarities(HashedBagOfWordsEmbedder()) >= DEFAULT_EXAMPLE_THRESHOLD["hashed"]
    assert not hashed.any()


def _segment(text: str, start_s: float) -> Segment:
    return Segment(text=text, start_s=start_s, end_s=start_s + 2.0, confidence=0.9, no_speech_probability=0.0)


def test_a_signal_defined_only_by_examples(minilm: MiniLmEmbedder) -> None:
    cancellation = SignalDefinition.from_config(
        name="Cancellation", examples=["Please cancel my account", "I'd like to terminate my plan"]
    )
    call = Transcript(
        language="en-US",
        duration_s=20.0,
        channels=(
            ChannelTranscript(
                0,
                Speaker.CALLER,
                (_segment("Hi there.", 0.5), _segment("I want to end my contract with you.", 6.0)),
                20.0,
            ),
            ChannelTranscript(1, Speaker.AGENT, (_segment("What plans do you have in mind?", 3.0),), 20.0),
        ),
    )
    (detection,) = detect_signals([cancellation], call, embedder=minilm, example_threshold=example_threshold("minilm"))
    (evidence,) = detection.evidence
    assert evidence.speaker is Speaker.CALLER and evidence.start_s == 6.0
    assert evidence.rule == "example: I'd like to terminate my plan" and evidence.score > 0.5
