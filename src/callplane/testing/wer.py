"""Word error rate with the normalisation ASR evaluations use: case, punctuation and numbers.

Numbers are compared as digits, so "two two eight four", "2 2 8 4", "2,284" and "two thousand two hundred
eighty four" all read "2284". A run of single digits is a digit string (an account number); any other run of
number words is a quantity ("twenty one" = 21). English, Spanish and French number words are known (the
language is passed in: Spanish "once" is 11, English "once" is a word).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_EN_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_ES_UNITS = "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince".split()
_FR_UNITS = "zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze seize".split()
_NUMBERS = {
    "en": (
        dict(zip(_EN_UNITS, range(20), strict=True)),
        {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90},
        {"hundred": 100, "thousand": 1000},
        ("one",),
        ("and",),
    ),
    "es": (
        dict(zip(_ES_UNITS, range(16), strict=True)) | {"un": 1, "una": 1},
        {"veinte": 20, "treinta": 30, "cuarenta": 40, "cincuenta": 50, "sesenta": 60, "setenta": 70, "ochenta": 80},
        {"cien": 100, "ciento": 100, "mil": 1000},
        ("uno", "un", "una"),
        ("y",),
    ),
    "fr": (
        dict(zip(_FR_UNITS, range(17), strict=True)) | {"une": 1},
        {"vingt": 20, "trente": 30, "quarante": 40, "cinquante": 50, "soixante": 60},
        {"cent": 100, "mille": 1000},
        ("un", "une"),
        ("et",),
    ),
}
_PUNCTUATION = re.compile(r"[^\w\s']|_")


class _Numbers:
    """Number words of one language."""

    def __init__(self, language: str) -> None:
        units, tens, scales, ambiguous, joiners = _NUMBERS.get(language.split("-")[0].lower(), _NUMBERS["en"])
        self.values = units | tens
        self.scales = scales
        self.ambiguous = ambiguous  # "one"/"un": as often a pronoun or article as a number
        self.joiners = joiners  # "and" inside "two hundred and five"

    def value(self, token: str) -> int | None:
        return int(token) if token.isdigit() else self.values.get(token)

    def is_number(self, token: str) -> bool:
        return self.value(token) is not None or token in self.scales

    def starts_run(self, words: Sequence[str], i: int) -> bool:
        if not self.is_number(words[i]):
            return False
        return words[i] not in self.ambiguous or (i + 1 < len(words) and self.is_number(words[i + 1]))

    def continues_run(self, words: Sequence[str], i: int) -> bool:
        if self.is_number(words[i]):
            return True
        return words[i] in self.joiners and i + 1 < len(words) and self.is_number(words[i + 1])

    def read(self, run: Sequence[str]) -> str:
        values = [self.value(token) for token in run]
        if all(value is not None and (value < 10 or token.isdigit()) for token, value in zip(run, values, strict=True)):
            return "".join(token if token.isdigit() else str(value) for token, value in zip(run, values, strict=True))
        total = current = 0
        for token, value in zip(run, values, strict=True):
            if token in self.scales:
                if self.scales[token] >= 1000:
                    total += max(current, 1) * self.scales[token]
                    current = 0
                else:
                    current = max(current, 1) * self.scales[token]
            elif value is not None:
                current += value
        return str(total + current)


def normalize_words(text: str, language: str = "en") -> list[str]:
    """Lower case, no punctuation (apostrophes kept inside words), numbers as digits."""
    numbers = _Numbers(language)
    text = unicodedata.normalize("NFC", text.casefold())
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)  # 2,284 -> 2284
    words = [w.strip("'") for w in _PUNCTUATION.sub(" ", text.replace("-", " ")).split()]
    words = [w for w in words if w]
    out: list[str] = []
    i = 0
    while i < len(words):
        if not numbers.starts_run(words, i):
            out.append(words[i])
            i += 1
            continue
        run = [words[i]]
        i += 1
        while i < len(words) and numbers.continues_run(words, i):
            if numbers.is_number(words[i]):
                run.append(words[i])
            i += 1
        out.append(numbers.read(run))
    return out


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str, language: str = "en") -> float:
    """(substitutions + deletions + insertions) / reference words, after ``normalize_words``."""
    ref, hyp = normalize_words(reference, language), normalize_words(hypothesis, language)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
