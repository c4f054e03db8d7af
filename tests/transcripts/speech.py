"""Real speech for the ASR tests: espeak-ng voices at 8 kHz, assembled with sox.

espeak is robotic, so the assertions are lenient (a key word or two per utterance); it is fast and
deterministic, which is what a plumbing test needs. Quality is measured elsewhere (bench/asr.py).
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

from callplane.core.transcripts import AsrSettings, Transcript
from callplane.core.transcripts.whisper import FasterWhisperEngine, shared_engine

CALLER_SAYS = "Hello, I would like to cancel my subscription please."
AGENT_SAYS = "Certainly, I can help you with that."
GAP_S = 0.6
LEAD_S = 0.5
# The per-call time budget is wall-clock: on a loaded machine (load 20 on 2 cores) a 20 s call ran past its 30 s
# and came back partial. Tests of what is heard pass this, so load never decides their words; the budget has
# its own tests (test_budget.py, test_asr.py) with budgets of 0 and counts instead of times.
UNBOUNDED_S = 3600.0


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def say(text: str, voice: str, out: Path) -> Path:
    """Speak ``text`` into an 8 kHz mono WAV (telephone rate) and return its path."""
    raw = out.with_suffix(".raw.wav")
    _run("espeak-ng", "-v", voice, "-w", str(raw), text)
    _run("sox", str(raw), "-r", "8000", "-b", "16", "-c", "1", str(out), "norm", "-3")
    raw.unlink()
    return out


def duration_s(path: Path) -> float:
    return float(subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True).stdout)


@dataclass(frozen=True)
class StereoCall:
    path: Path
    caller_start_s: float
    agent_start_s: float


@functools.cache
def stereo_call(directory: Path, caller: str = CALLER_SAYS, agent: str = AGENT_SAYS) -> StereoCall:
    """Caller on channel 0 speaks first, then the agent on channel 1; the other side is silent meanwhile."""
    caller_wav = say(caller, "en-us", directory / "caller.wav")
    agent_wav = say(agent, "en-gb", directory / "agent.wav")
    caller_len, agent_len = duration_s(caller_wav), duration_s(agent_wav)
    agent_start = LEAD_S + caller_len + GAP_S
    total = agent_start + agent_len + LEAD_S
    left, right = directory / "left.wav", directory / "right.wav"
    _run("sox", str(caller_wav), str(left), "pad", str(LEAD_S), f"{total - LEAD_S - caller_len:.3f}")
    _run("sox", str(agent_wav), str(right), "pad", f"{agent_start:.3f}", str(LEAD_S))
    call = directory / "call.wav"
    _run("sox", "-M", str(left), str(right), str(call))
    return StereoCall(path=call, caller_start_s=LEAD_S, agent_start_s=agent_start)


@functools.cache
def engine(data_dir: Path) -> FasterWhisperEngine:
    """The real engine with the shipped defaults, loaded once per test process."""
    return shared_engine(AsrSettings(data_dir=data_dir))


@functools.cache
def transcribed(path: Path, language: str, data_dir: Path) -> Transcript:
    return engine(data_dir).transcribe_channels(path, language, budget_s=UNBOUNDED_S)


def words_of(text: str) -> set[str]:
    return {w.strip(".,!?¿¡;:'\"").casefold() for w in text.split()}
