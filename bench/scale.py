"""Scale-out (issue 18): calls through the Kamailio front door with one vs two media nodes, and voice file storage
on local disk vs an S3 server; each figure beside its floor, measured in the same run.

Calls. For 1 and then 2 media nodes (`callplane media`) behind `callplane sip-front`, with two `serve --role api`
processes on one PostgreSQL (callplane.testing.front): sipp offers --calls calls at --rate per second, each
--call-seconds long after its answer; the application answers each CALL_RECEIVED through the API processes in
turn. From the database: calls answered, answered per second over the run (first INVITE to last answer),
the peak of concurrent answered calls, answer latency (INVITE to answer, p50/p95: the webhook, the answer request,
the relay to the node, the 200 OK). The floor: the same sipp caller through the same Kamailio config to two sipp
callees that answer at once (`-aa` answers the probes), no callplane: what the front door and sipp do alone.

Storage. --files WAVs of --file-seconds (8 kHz stereo 16-bit) are stored and fetched back through
VoiceFileStore (core/recordings/voice_files.py): local disk (LocalRecordingStorage: a copy with fsync) vs moto's S3
server on loopback (`python -m moto.server`: HTTP, one PUT per file, a GET per fetch into the working copy). The
floor: a plain copy of the same bytes on the same disk (shutil.copyfile, no fsync) and a plain read.

Run: .venv/bin/python bench/scale.py [--calls 200] [--rate 20] [--call-seconds 5] [--files 40] [--file-seconds 30]
     [--skip-calls] [--skip-storage]   (PostgreSQL on CALLPLANE_TEST_POSTGRES_URL or 127.0.0.1:5432; kamailio, sipp)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
import wave
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from benchlib import free_udp_port, load_average, percentile, ratio
from sipp_floor import FLOOR_CALLEE, sipp_counter

from callplane.core.recordings.s3 import S3RecordingStorage
from callplane.core.recordings.storage import LocalRecordingStorage
from callplane.core.recordings.voice_files import VoiceFileStore
from callplane.sipfront import FrontDoor, parse_address
from callplane.testing.front import CALLER_SCENARIO, cluster, sip_options
from callplane.testing.s3 import moto_server
from callplane.testing.sipp import free_even_port_pair


def _calls_run(work: Path, nodes: int, args: argparse.Namespace) -> dict[str, float]:
    names = ("media-a", "media-b")[:nodes]
    with cluster(work, nodes=names) as front:
        started = time.monotonic()
        code, _output = front.finished(
            front.callers(args.calls, rate=args.rate, call_ms=int(args.call_seconds * 1000), name=f"{nodes}-nodes"),
            timeout_s=args.calls / args.rate + args.call_seconds + 600,
        )
        wall = time.monotonic() - started
        time.sleep(1)
        rows = [(row.created_at, row.answered_at, row.ended_at, row.node_id) for row in front.calls()]
    return _figures(rows, wall, code)


Row = tuple[datetime, datetime | None, datetime | None, str]  # created, answered, ended, node


def _figures(rows: list[Row], wall: float, code: int) -> dict[str, float]:
    answered = [row for row in rows if row[1] is not None]
    if not answered:
        return {"answered": 0, "cps": 0.0, "peak": 0, "p50": 0.0, "p95": 0.0, "wall": wall, "sipp_rc": code}
    first = min(row[0] for row in rows)
    last = max(row[1] for row in answered if row[1] is not None)
    latencies = [(row[1] - row[0]).total_seconds() * 1000 for row in answered if row[1] is not None]
    events = sorted(
        [(row[1], 1) for row in answered if row[1] is not None]
        + [(row[2], -1) for row in answered if row[2] is not None]
    )
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    per_node: dict[str, int] = {}
    for row in answered:
        per_node[row[3]] = per_node.get(row[3], 0) + 1
    return {
        "answered": len(answered),
        "cps": len(answered) / max((last - first).total_seconds(), 1e-3),
        "peak": peak,
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "wall": wall,
        "sipp_rc": code,
        "spread": min(per_node.values()) / max(per_node.values()) if len(per_node) > 1 else 1.0,
    }


def _floor_run(work: Path, args: argparse.Namespace) -> dict[str, float]:
    """The front door alone: sipp -> Kamailio -> two sipp callees that answer at once."""
    work.mkdir(parents=True, exist_ok=True)
    callee_xml = work / "callee.xml"
    # the floor's callee answers at once; its 200 keeps the front door's Record-Route, so the ACK and BYE come back
    callee_xml.write_text(FLOOR_CALLEE.replace("[last_Via:]\n", "[last_Via:]\n      [last_Record-Route:]\n", 1))
    caller_xml = work / "caller.xml"
    caller_xml.write_text(CALLER_SCENARIO.replace("{{CALL_MS}}", str(int(args.call_seconds * 1000))))
    callee_ports = [free_udp_port(), free_udp_port()]
    callees = [
        subprocess.Popen(
            [
                "sipp",
                "-sf",
                str(callee_xml),
                "-i",
                "127.0.0.1",
                "-p",
                str(port),
                "-mp",
                str(free_even_port_pair()),
                "-nostdin",
                "-aa",
            ],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in callee_ports
    ]
    time.sleep(1)
    listen = free_udp_port()
    door = FrontDoor(
        listen=parse_address(f"127.0.0.1:{listen}"),
        nodes=[parse_address(f"127.0.0.1:{port}") for port in callee_ports],
        work_dir=work / "front",
    )
    log = (work / "front.log").open("wb")
    kamailio = subprocess.Popen(door.prepare(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while sip_options(listen, timeout_s=0.5) != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the floor's Kamailio did not start")
        started = time.monotonic()
        caller = subprocess.run(
            [
                "sipp",
                "-sf",
                str(caller_xml),
                "-i",
                "127.0.0.1",
                "-p",
                str(free_udp_port()),
                "-mp",
                str(free_even_port_pair()),
                "-nostdin",
                "-m",
                str(args.calls),
                "-r",
                str(args.rate),
                "-l",
                str(args.calls),
                "-timeout",
                "600s",
                "-timeout_error",
                "-s",
                "floor",
                f"127.0.0.1:{listen}",
                "-trace_stat",
                "-fd",
                "1",
            ],
            cwd=work,
            capture_output=True,
            check=False,
        )
        wall = time.monotonic() - started
    finally:
        kamailio.terminate()
        kamailio.wait(timeout=30)
        log.close()
        for callee in callees:
            with contextlib.suppress(ProcessLookupError):
                callee.kill()
            callee.wait()
    successful = sipp_counter(caller.stdout.decode(errors="replace"), "Successful call")
    window = max(wall - args.call_seconds, 1e-3)  # first INVITE to the last answer, as for callplane's figure
    return {"answered": successful, "cps": successful / window, "wall": wall, "sipp_rc": caller.returncode}


# ---- storage ------------------------------------------------------------------------------------


def _wav(path: Path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(int(8000 * seconds) * 2) * 3000).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(samples.tobytes())


async def _store_and_fetch(store: VoiceFileStore, sources: list[Path]) -> tuple[float, float]:
    """Seconds to publish every file (from its working copy) and to fetch every one back into an empty working
    copy."""
    keys = [f"voice-recordings/bench/{path.name}" for path in sources]
    for key, source in zip(keys, sources, strict=True):
        store.local_path(key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, store.local_path(key))
    started = time.perf_counter()
    if store.shared is None:  # local disk: the store is a second directory, written with fsync
        local = LocalRecordingStorage(store.data_dir / "store")
        for key in keys:
            await local.put_file(key, store.local_path(key))
    else:
        for key in keys:
            await store.publish(key)
    stored = time.perf_counter() - started
    started = time.perf_counter()
    if store.shared is None:
        local = LocalRecordingStorage(store.data_dir / "store")
        for key in keys:
            async for _ in local.open_read(key):
                pass
    else:
        for key in keys:
            await store.fetch(key)
    fetched = time.perf_counter() - started
    return stored, fetched


def _storage(work: Path, args: argparse.Namespace) -> None:
    sources_dir = work / "sources"
    sources_dir.mkdir(parents=True)
    sources = [sources_dir / f"rec-{index:03d}.wav" for index in range(args.files)]
    for index, path in enumerate(sources):
        _wav(path, args.file_seconds, index)
    megabytes = sum(path.stat().st_size for path in sources) / 1e6
    # the floor: a plain copy and a plain read of the same bytes
    floor_dir = work / "floor"
    floor_dir.mkdir()
    started = time.perf_counter()
    for path in sources:
        shutil.copyfile(path, floor_dir / path.name)
    copy_s = time.perf_counter() - started
    started = time.perf_counter()
    for path in sources:
        (floor_dir / path.name).read_bytes()
    read_s = time.perf_counter() - started

    local_store, local_fetch = asyncio.run(_store_and_fetch(VoiceFileStore(work / "local"), sources))
    with moto_server(work) as moto:  # the tests' S3 server (callplane.testing.s3)
        config = moto.config(moto.new_bucket())
        s3 = S3RecordingStorage(config)
        try:
            s3_store, s3_fetch = asyncio.run(_store_and_fetch(VoiceFileStore(work / "s3", s3), sources))
        finally:
            s3.close()
    print(f"\nvoice files: {args.files} WAVs of {args.file_seconds:g} s, {megabytes:.1f} MB in all ({load_average()})")
    print("| path | store MB/s | files/s | fetch MB/s | files/s | store vs floor | fetch vs floor |")
    print("|---|---|---|---|---|---|---|")
    floor_store, floor_fetch = megabytes / copy_s, megabytes / read_s
    for name, store_s, fetch_s in (
        ("floor: copy / read", copy_s, read_s),
        ("local disk (copy + fsync / open_read)", local_store, local_fetch),
        ("S3 (moto, loopback HTTP)", s3_store, s3_fetch),
    ):
        print(
            f"| {name} | {megabytes / store_s:.1f} | {args.files / store_s:.1f} | {megabytes / fetch_s:.1f} | "
            f"{args.files / fetch_s:.1f} | {ratio(megabytes / store_s, floor_store)} | "
            f"{ratio(megabytes / fetch_s, floor_fetch)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--call-seconds", type=float, default=5)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--file-seconds", type=float, default=30)
    parser.add_argument("--skip-calls", action="store_true")
    parser.add_argument("--skip-storage", action="store_true")
    args = parser.parse_args()
    print(f"bench/scale.py {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {load_average()}")
    with tempfile.TemporaryDirectory(prefix="callplane-scale-") as tmp:
        work = Path(tmp)
        if not args.skip_calls:
            print(f"calls: {args.calls} offered at {args.rate:g}/s, {args.call_seconds:g} s each")
            floor = _floor_run(work / "floor", args)
            results = {}
            for nodes in (1, 2):
                results[nodes] = _calls_run(work / f"nodes-{nodes}", nodes, args)
                print(f"  {nodes} node(s) done ({load_average()})")
            print("| setup | answered | answered/s | peak concurrent | answer p50 ms | p95 ms | vs floor | spread |")
            print("|---|---|---|---|---|---|---|---|")
            print(
                f"| floor: Kamailio + sipp callees | {floor['answered']} | {floor['cps']:.1f} | - | - | - | 1.00 | - |"
            )
            for nodes, figures in results.items():
                print(
                    f"| {nodes} media node(s) | {figures['answered']} | {figures['cps']:.1f} | {figures['peak']} | "
                    f"{figures['p50']:.0f} | {figures['p95']:.0f} | {ratio(figures['cps'], floor['cps'])} | "
                    f"{figures.get('spread', 1.0):.2f} |"
                )
            print(f"two nodes / one node, answered per second: {ratio(results[2]['cps'], results[1]['cps'])}")
            print(f"two nodes / one node, peak concurrent: {ratio(results[2]['peak'], results[1]['peak'])}")
        if not args.skip_storage:
            _storage(work / "storage", args)


if __name__ == "__main__":
    main()
