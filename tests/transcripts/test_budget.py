"""The per-call time budget and decoding loops, on a real French synthetic call (issue 14).

``fr_fr_name`` of the test set, decoded with a 1 s onset lead (``vad_onset_pad_s=1.0``), is a real decoding
loop: the packed window's second part fails its checks at temperature 0, goes through the sampled fallbacks and
the guards drop it, which loses the agent's channel, so it is decoded again on its own. Under load that ran
past the 30 s budget (58 s for 13.7 s of audio) and stored an empty transcript: the second decode found the
deadline gone and the packed decode's words had been thrown away. No timing is asserted: the budget is
either 0 (so every check is past the deadline) or the default, and the counts are of windows, fallbacks and
words.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest

from callplane.core.transcripts import AsrSettings
from callplane.core.transcripts.whisper import FasterWhisperEngine, _Temperatures, max_new_tokens, shared_engine
from callplane.testing.speech_calls import read_references
from callplane.testing.wer import normalize_words

pytestmark = pytest.mark.xdist_group("asr")  # one worker loads the model once

TESTSET = Path(__file__).parent / "testset"
FRENCH = next(reference for reference in read_references(TESTSET / "references.json") if reference.language == "fr-FR")
FALLBACK = re.compile(r"threshold is not met with temperature ([0-9.]+)")


@pytest.fixture(scope="module")
def looping(models_dir: Path) -> FasterWhisperEngine:
    return shared_engine(AsrSettings(data_dir=models_dir, vad_onset_pad_s=1.0))


def test_a_french_call_past_its_budget_keeps_what_it_decoded(
    looping: FasterWhisperEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="faster_whisper")
    result = looping.transcribe_channels(TESTSET / FRENCH.audio, FRENCH.language, budget_s=0.0)
    assert not result.complete
    assert all(channel.stopped_reason == "time budget exceeded" for channel in result.channels)
    # Both speakers keep words: the packed window's first segment, and the lost channel's first segment alone.
    assert all(normalize_words(channel.text, "fr") for channel in result.channels), result.channels
    # Past the deadline: no sampled fallback; one decode for the packed window and one per lost channel, each
    # stopped after its first segment (a Whisper window that yields none moves on to the next: at most two).
    messages = [record.getMessage() for record in caplog.records]
    tried = [float(match.group(1)) for message in messages if (match := FALLBACK.search(message))]
    assert all(temperature == 0.0 for temperature in tried), tried
    decodes = [message for message in messages if message.startswith("Processing audio with duration")]
    windows = [message for message in messages if message.startswith("Processing segment at")]
    assert 1 <= len(decodes) <= 1 + len(result.channels)
    assert len(decodes) <= len(windows) <= 2 * len(decodes)


def test_a_french_decoding_loop_is_cut_and_both_speakers_keep_words(looping: FasterWhisperEngine) -> None:
    # With the default budget the loop is cut by the token bound, and whatever the load (budget hit or not)
    # both channels keep words and none is a loop: at most twice the words that were said.
    result = looping.transcribe_channels(TESTSET / FRENCH.audio, FRENCH.language)
    for channel in result.channels:
        assert channel.speaker is not None
        heard = normalize_words(channel.text, "fr")
        said = normalize_words(FRENCH.text_of(channel.speaker.value), "fr")
        assert 0 < len(heard) <= 2 * len(said), (channel.speaker, channel.text)
        assert channel.complete or channel.stopped_reason == "time budget exceeded"


def test_tokens_per_window_follow_its_length() -> None:
    # The test set needs 3.2-4.4 tokens per second of speech (timestamps included); 8 per second leaves
    # room, and a loop stops there instead of at Whisper's 448.
    assert max_new_tokens(14.0, 8.0, 16) == 16 + 112
    assert max_new_tokens(0.5, 8.0, 16) == 20
    assert max_new_tokens(300.0, 8.0, 16) == 16 + 240  # per Whisper window: at most 30 s
    assert max_new_tokens(30.0, 20.0, 16) == 440  # never past the decoder's length with its prompt


def test_no_fallback_temperature_is_started_past_the_deadline() -> None:
    temperatures = (0.0, 0.2, 0.4)
    assert list(_Temperatures(temperatures, time.monotonic() + 3600)) == [0.0, 0.2, 0.4]
    assert list(_Temperatures(temperatures, time.monotonic() - 1)) == [0.0]  # the first is always tried
    assert isinstance(_Temperatures(temperatures, 0.0), list)  # faster-whisper keeps a list as given
