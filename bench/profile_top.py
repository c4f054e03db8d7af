"""The top frames of a py-spy profile, as text for docs/benchmarks.md.

    py-spy record --format raw --rate 100 --duration 20 --subprocesses --nonblocking --pid PID -o profile.txt
    .venv/bin/python bench/profile_top.py profile.txt [--top 20]

py-spy's raw format is one collapsed stack per line (``frame;frame;...;frame COUNT``, outermost first). Idle
samples (a thread waiting in epoll, a queue, a lock or a blocking receive) are dropped, so shares are of the samples
that did work. Prints: the top frames by own samples (the innermost frame), the top callplane frames by inclusive
samples (each stack counted once per function), and the share of work under each top-level area of callplane.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# A thread whose innermost frame is one of these is waiting, not working.
IDLE = re.compile(
    r"\b(select|poll|epoll|_run_once|wait|acquire|recvfrom|recv_into|accept|sleep|get|procrastinate|_worker|"
    r"run_forever|_recv_bytes|read|readinto)\b \("
)
FRAME = re.compile(r"^(?P<function>[^ ]+) \((?P<file>[^:)]+)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['function']} ({path}{':' + match['line'] if match['line'] else ''})"


def area(frame: str) -> str | None:
    """callplane's package of a frame (`core/ingestion`, `surfaces/invoca`, `app.py`), None outside callplane."""
    match = FRAME.match(frame.strip())
    marker = "callplane/"
    if not match or marker not in match["file"]:
        return None
    parts = match["file"].split(marker, 1)[1].split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()

    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = idle = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame.strip()]
        total += count
        if not frames or IDLE.search(frames[-1]):
            idle += count
            continue
        own[short(frames[-1])] += count
        callplane_frames = {short(f) for f in frames if "callplane/" in f}
        for frame in callplane_frames:
            inclusive[frame] += count
        innermost_area = next((a for f in reversed(frames) if (a := area(f)) is not None), "(no callplane frame)")
        areas[innermost_area] += count
    working = total - idle
    print(f"{total} samples, {idle} idle, {working} working")
    if not working:
        return

    def show(title: str, counter: Counter[str]) -> None:
        print(f"\n{title}")
        for frame, count in counter.most_common(args.top):
            print(f"{100 * count / working:5.1f}%  {frame}")

    show("own samples (innermost frame), share of working samples", own)
    show("callplane frames, inclusive", inclusive)
    show("innermost callplane package", areas)


if __name__ == "__main__":
    main()
