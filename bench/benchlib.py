"""Small helpers the bench scripts share: the load average beside each figure, ratios, timing and CPU readings.

Imported as ``benchlib`` (each script is run as ``python bench/<name>.py``, which puts ``bench/`` on the path).
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: printed beside every figure, since the machine is shared."""
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def ratio(figure: float, floor: float) -> str:
    """figure / floor, two decimals (four below 0.01); 1.00 = the floor's speed; "-" where the floor gave nothing."""
    if floor <= 0:
        return "-"
    return f"{figure / floor:.2f}" if figure / floor >= 0.01 else f"{figure / floor:.4f}"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def best_and_median(function: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Wall seconds of ``repeat`` calls: the best (least disturbed by other load) and the median."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        runs.append(time.perf_counter() - started)
    return min(runs), statistics.median(runs)


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's waited-for children (ffmpeg, curl, sipp)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc), to tell its own cost from the machine's load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ffmpeg_cli_floor(source: Path, dest: Path, *, swap: bool) -> list[str]:
    """The ffmpeg CLI doing callplane's normalization transform: its own filter and encoder arguments, no metering."""
    from callplane.core.recordings.audio import ffmpeg_transform_args  # only the scripts that normalize need it

    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source)]
    return [*command, *ffmpeg_transform_args(channels=2, swap=swap), str(dest)]


def start_profile(pid: int, output: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy sampling `pid` and its children for `seconds` into `output` (raw collapsed stacks, for
    bench/profile_top.py); None, with a note, when py-spy is not installed (`.venv/bin/pip install py-spy`). Costs a
    few percent of a core while it samples: profile in a run of its own, not in one whose figures are recorded."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: no profile (.venv/bin/pip install py-spy)")
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [spy, "record", "--format", "raw", "--rate", "100", "--duration", str(max(1, round(seconds)))]
    command += ["--subprocesses", "--nonblocking", "--pid", str(pid), "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
