"""Offline speech-to-text for processed calls: one transcript per channel, merged into a conversation.

No database here: the pipeline stores what ``AsrEngine.transcribe_channels`` returns (as
``transcript_to_dict``) and the surfaces render it with ``render``.
"""

from callplane.core.transcripts.engine import SUPPORTED_LANGUAGES, AsrEngine, AsrSettings, whisper_language
from callplane.core.transcripts.errors import (
    CorruptModel,
    ModelUnavailable,
    TranscriptionFailed,
    UnsupportedAudio,
    UnsupportedLanguage,
)
from callplane.core.transcripts.merge import (
    TranscriptFormat,
    merge_turns,
    render,
    render_text,
    transcript_from_dict,
    transcript_to_dict,
)
from callplane.core.transcripts.model import ensure_registry_model, resolve_model_path
from callplane.core.transcripts.schemas import ChannelTranscript, Segment, Speaker, Transcript, Turn, Word

__all__ = [
    "SUPPORTED_LANGUAGES",
    "AsrEngine",
    "AsrSettings",
    "ChannelTranscript",
    "CorruptModel",
    "ModelUnavailable",
    "Segment",
    "Speaker",
    "Transcript",
    "TranscriptFormat",
    "TranscriptionFailed",
    "Turn",
    "UnsupportedAudio",
    "UnsupportedLanguage",
    "Word",
    "ensure_registry_model",
    "merge_turns",
    "render",
    "render_text",
    "resolve_model_path",
    "transcript_from_dict",
    "transcript_to_dict",
    "whisper_language",
]
