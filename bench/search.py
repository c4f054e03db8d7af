"""Transcript search latency over 100,000 stored transcripts, beside a plain LIKE scan of the same data, same run.

    .venv/bin/python bench/search.py [--calls 100000] [--runs 100] [--like-runs 5] [--backends sqlite postgresql]

For each backend: migrates a fresh database, stores ``--calls`` calls of one tenant, each with a stereo transcript
(six turns, ~70 words with word timings, from a 5,000-word vocabulary drawn Zipf-like, as speech is), through the
triggers that keep the search index (the seeding rate is the write path's cost with the index). Some phrases are
planted in a known number of calls. Then, for each query kind (a phrase in 20 calls, a phrase in 1% of calls, the
most common word, a rare word, two words, a prefix, a word in no call), times:

- ``index``: the page query alone (the first 50 matching calls, newest first) through ``core.search``
  (``planned_call_matches``: on SQLite its probe of the index, then the page);
- ``search``: ``search_calls`` whole (that query, then each call's matches located: times and snippets);
- ``like``: the floor, the same page by ``LIKE '%words%'`` over the transcript text (ILIKE on PostgreSQL),
  ``--like-runs`` times per kind (a scan over everything for the rare kinds: slow, so fewer runs).

Every answer is checked (the calls a phrase was planted in, and nothing for the missing word). Then it starts
``callplane serve`` on the same database and times ``GET /v1/calls`` (the call list's first page, 50 calls) and
``GET /v1/calls?q=...`` over loopback (``--runs`` requests each, one at a time). Prints p50 / p99 in ms, the
ratios to the floor, the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Select, Text, and_, cast, insert, select

from callplane.core.calls.models import Call
from callplane.core.search import SearchQuery, parse_query, planned_call_matches, search_calls
from callplane.core.tenancy import service as tenancy
from callplane.core.tenancy.models import AccountKind, OrganizationKind
from callplane.core.transcripts.merge import transcript_to_dict
from callplane.core.transcripts.models import CallTranscript
from callplane.core.transcripts.schemas import ChannelTranscript, Segment, Speaker, Transcript, Word
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.settings import Settings

CALLPLANE = [sys.executable, "-m", "callplane"]
CHUNK = 1000
PAGE = 50
VOCABULARY = 5000
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
# Planted phrases: (query, how many calls say it). Their words are outside the generated vocabulary.
RARE_PHRASE = ("refund for the blue kettle", 20)
COMMON_PHRASE = ("cancel my subscription", 1000)


def vocabulary(rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3)))))
    return sorted(words, key=lambda w: (len(w), w))  # short words are the frequent ones, as in speech


@dataclass
class Corpus:
    words: list[str]
    cumulative: list[float]
    planted: dict[str, set[int]] = field(default_factory=dict)  # phrase -> indexes of the calls that say it

    def sentence(self, rng: random.Random, size: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cumulative, k=size)


def corpus(calls: int, rng: random.Random) -> Corpus:
    words = vocabulary(rng)
    total = 0.0
    cumulative = []
    for rank in range(1, len(words) + 1):
        total += 1 / rank
        cumulative.append(total)
    result = Corpus(words, cumulative)
    for phrase, count in (RARE_PHRASE, COMMON_PHRASE):
        result.planted[phrase] = set(rng.sample(range(calls), count))
    return result


def transcript_for(index: int, words: Corpus, rng: random.Random) -> dict[str, Any]:
    """Six turns (caller, agent, ...) of 8-16 words, a word every 0.4 s; planted phrases in the 2nd and 3rd."""
    turns = [words.sentence(rng, rng.randint(8, 16)) for _ in range(6)]
    for number, (phrase, indexes) in enumerate(words.planted.items(), start=1):
        if index in indexes:  # each phrase in a turn of its own, so one never overwrites the other
            turns[number][2 : 2 + len(phrase.split())] = phrase.split()
    segments: dict[Speaker, list[Segment]] = {Speaker.CALLER: [], Speaker.AGENT: []}
    clock = 1.0
    for number, turn in enumerate(turns):
        timed = []
        for word in turn:
            timed.append(Word(word, round(clock, 2), round(clock + 0.3, 2), 0.9))
            clock += 0.4
        speaker = Speaker.CALLER if number % 2 == 0 else Speaker.AGENT
        segments[speaker].append(Segment(" ".join(turn), timed[0].start_s, timed[-1].end_s, 0.9, 0.01, tuple(timed)))
        clock += 0.8
    channels = tuple(
        ChannelTranscript(channel, speaker, tuple(segments[speaker]), clock)
        for channel, speaker in enumerate((Speaker.CALLER, Speaker.AGENT))
    )
    return transcript_to_dict(Transcript("en-US", channels, clock, model="bench"))


async def seed(settings: Settings, calls: int, words: Corpus) -> tuple[str, str, list[str]]:
    """The tenant's id and token, and the call ids by index (call i was received i seconds after the first)."""
    rng = random.Random(7)
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            account = await tenancy.create_account(
                session=session, kind=AccountKind.NETWORK, name="bench", external_id="bench-net"
            )
            advertiser = await tenancy.create_organization(
                session=session, account_id=account.id, kind=OrganizationKind.ADVERTISER, external_id="adv-1"
            )
            _, token = await tenancy.issue_token(session=session, account_id=account.id)
            account_id, organization_id = account.id, advertiser.id
        ids = [str(uuid.uuid4()) for _ in range(calls)]
        first = datetime(2026, 1, 1, tzinfo=UTC)
        for start in range(0, calls, CHUNK):
            call_rows: list[dict[str, Any]] = []
            transcript_rows: list[dict[str, Any]] = []
            for index in range(start, min(calls, start + CHUNK)):
                received = first + timedelta(seconds=index)
                call_rows.append(
                    {
                        "id": ids[index], "account_id": account_id, "organization_id": organization_id,
                        "origin": "single_ingest", "external_id": f"bench-{index}", "direction": "inbound",
                        "from_e164": f"+1415{2000000 + index:07d}", "to_e164": "+18885550111",
                        "contact_e164": f"+1415{2000000 + index:07d}", "started_at": received, "status": "completed",
                        "agent": {"name": "Agent Smith"}, "customer": {}, "call_metadata": {"queue": "support"},
                        "extras": {}, "received_at": received, "updated_at": received,
                    }
                )  # fmt: skip
                transcript_rows.append(
                    {
                        "id": str(uuid.uuid4()), "call_id": ids[index], "account_id": account_id,
                        "status": "completed", "language_code": "en-US", "model": "bench",
                        "transcript": transcript_for(index, words, rng), "complete": True, "dropped_segments": 0,
                        "signals_evaluated": 0, "created_at": received,
                    }
                )  # fmt: skip
            async with sessions() as session, session.begin():
                await session.execute(insert(Call), call_rows)
                await session.execute(insert(CallTranscript), transcript_rows)
        return account_id, token, ids
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Kind:
    name: str
    q: str
    like: list[str]  # the LIKE patterns' words (each must appear)
    expected: set[int] | None  # the call indexes that must be found (None: not checked beyond the floor's answer)


def kinds(words: Corpus) -> list[Kind]:
    rare, mid = words.words[3999], words.words[100]
    common = words.words[0]
    return [
        Kind("phrase in 20 calls", f'"{RARE_PHRASE[0]}"', [RARE_PHRASE[0]], words.planted[RARE_PHRASE[0]]),
        Kind("phrase in 1% of calls", f'"{COMMON_PHRASE[0]}"', [COMMON_PHRASE[0]], words.planted[COMMON_PHRASE[0]]),
        Kind("most common word", common, [f" {common} "], None),
        Kind("rare word", rare, [f" {rare} "], None),
        Kind("two words", f"{mid} {words.words[101]}", [f" {mid} ", f" {words.words[101]} "], None),
        Kind("prefix", "subscr*", ["subscr"], words.planted[COMMON_PHRASE[0]]),
        Kind("word in no call", "xylophone", ["xylophone"], set()),
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(latencies: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(latencies), "p99_ms": percentile(latencies, 99), "runs": len(latencies)}


def like_page(account_id: str, patterns: list[str], dialect: str) -> Select[Call]:
    """The floor: the same page by a substring scan of each call's transcript JSON text."""
    text = cast(CallTranscript.transcript, Text)  # SQLite stores the JSON as text; PostgreSQL's json prints as it
    # SQLite's LIKE ignores ASCII case, as the index does; PostgreSQL's needs ILIKE for that.
    conditions = [text.like(f"%{p}%") if dialect == "sqlite" else text.ilike(f"%{p}%") for p in patterns]
    return (
        select(Call)
        .join(CallTranscript, CallTranscript.call_id == Call.id)
        .where(Call.account_id == account_id, and_(*conditions))
        .order_by(Call.received_at.desc(), Call.id.desc())
        .limit(PAGE + 1)
    )


async def timed(runs: int, work: Callable[[], Awaitable[list[str]]]) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    answer: list[str] = []
    for _ in range(runs):
        began = time.perf_counter()
        answer = await work()
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies, answer


async def measure_queries(
    settings: Settings, account_id: str, ids: list[str], words: Corpus, runs: int, like_runs: int
) -> list[dict[str, object]]:
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    index_of = {call_id: i for i, call_id in enumerate(ids)}
    rows: list[dict[str, object]] = []
    try:
        async with sessions() as session:
            dialect = session.get_bind().dialect.name
            for kind in kinds(words):
                query = parse_query(kind.q)

                async def by_index(parsed: SearchQuery = query) -> list[str]:
                    matching = await planned_call_matches(session, parsed, account_id=account_id)
                    statement = (
                        select(Call).where(matching).order_by(Call.received_at.desc(), Call.id.desc()).limit(PAGE + 1)
                    )
                    return [call.id for call in await session.scalars(statement)]

                async def whole(text: str = kind.q) -> list[str]:
                    found = await search_calls(session, account_id=account_id, query=text, limit=PAGE)
                    return [hit.call.id for hit in found.hits]

                async def floor(patterns: list[str] = kind.like) -> list[str]:
                    return [call.id for call in await session.scalars(like_page(account_id, patterns, dialect))]

                await by_index()  # warm up
                index_ms, found = await timed(runs, by_index)
                search_ms, _ = await timed(runs, whole)
                like_ms, floor_found = await timed(like_runs, floor)
                if kind.expected is not None:
                    newest = sorted(kind.expected, reverse=True)[:PAGE]
                    assert [index_of[c] for c in found[:PAGE]] == newest, (kind.name, found[:5])
                    if kind.name != "prefix":  # the floor's substring is the phrase itself: the same page
                        assert floor_found == found, kind.name
                else:  # the floor matches substrings (a word inside a longer one too): ours are a subset of its calls
                    assert found, kind.name
                assert len(found) <= PAGE + 1 and len(floor_found) <= PAGE + 1
                index, whole_, like = summary(index_ms), summary(search_ms), summary(like_ms)
                rows.append(
                    {
                        "kind": kind.name,
                        "index p50/p99": f"{index['p50_ms']:.1f} / {index['p99_ms']:.1f}",
                        "search p50/p99": f"{whole_['p50_ms']:.1f} / {whole_['p99_ms']:.1f}",
                        "LIKE p50/p99": f"{like['p50_ms']:.1f} / {like['p99_ms']:.1f}",
                        "LIKE/index p50": round(like["p50_ms"] / index["p50_ms"], 1),
                        "LIKE/search p50": round(like["p50_ms"] / whole_["p50_ms"], 1),
                    }
                )
                print(dialect, rows[-1], flush=True)
                await session.rollback()
    finally:
        await engine.dispose()
    return rows


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def measure_http(settings: Settings, env: dict[str, str], token: str, runs: int) -> list[dict[str, object]]:
    """The call list's first page and a search's, from `callplane serve` over loopback, one request at a time."""
    port = free_port()
    server = subprocess.Popen(
        [*CALLPLANE, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.5)
        rows: list[dict[str, object]] = []
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
            for name, params in (
                ("GET /v1/calls (first page, 50)", {}),
                (f"GET /v1/calls?q={COMMON_PHRASE[0]!r}", {"q": f'"{COMMON_PHRASE[0]}"'}),
                (f"GET /v1/calls?q={RARE_PHRASE[0]!r}", {"q": f'"{RARE_PHRASE[0]}"'}),
            ):
                latencies = []
                for attempt in range(runs + 5):
                    began = time.perf_counter()
                    response = client.get("/v1/calls", params=params)
                    elapsed = (time.perf_counter() - began) * 1000
                    if response.status_code != 200 or not response.json()["calls"]:
                        raise AssertionError(f"{name}: {response.status_code} {response.text[:300]}")
                    if attempt >= 5:  # the first few warm the connection and caches
                        latencies.append(elapsed)
                result = summary(latencies)
                rows.append({"request": name, "p50/p99 ms": f"{result['p50_ms']:.1f} / {result['p99_ms']:.1f}"})
                print(settings.resolved_database_url.split(":")[0], rows[-1], flush=True)
        return rows
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="callplane-search-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")}
    env |= {"CALLPLANE_DATA_DIR": str(data_dir), "CALLPLANE_LOG_LEVEL": "WARNING", "CALLPLANE_WORKERS_ENABLED": "false"}
    database = None
    if backend == "postgresql":
        database = f"callplane_bench_{secrets.token_hex(4)}"
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'CREATE DATABASE "{database}"'], check=True
        )
        env["CALLPLANE_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{database}"
    settings = Settings(environment="development", data_dir=data_dir, database_url=env.get("CALLPLANE_DATABASE_URL"))
    try:
        upgrade(settings)
        words = corpus(args.calls, random.Random(11))
        load_before = load()
        began = time.perf_counter()
        account_id, token, ids = asyncio.run(seed(settings, args.calls, words))
        seeded_s = time.perf_counter() - began
        if backend == "postgresql":
            # VACUUM as autovacuum would after a bulk load: it also moves the GIN index's pending list (up to 4 MB of
            # fresh entries, read in full by every query: +4 ms per query here) into the index proper.
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database or "", "-qc", "VACUUM ANALYZE"], check=True
            )
            size = subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database or "", "-Atc",
                 "SELECT pg_size_pretty(pg_total_relation_size('call_transcripts')) || ' transcripts, ' || "
                 "pg_size_pretty(pg_total_relation_size('call_search')) || ' index table'"],
                check=True, capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
        else:
            size = f"{(data_dir / 'callplane.db').stat().st_size / 2**20:.0f} MiB database file"
        print(backend, f"seeded {args.calls} calls in {seeded_s:.0f} s ({args.calls / seeded_s:.0f}/s); {size}")
        queries = asyncio.run(measure_queries(settings, account_id, ids, words, args.runs, args.like_runs))
        http = measure_http(settings, env, token, args.runs)
        return {
            "backend": backend,
            "seeded_per_s": round(args.calls / seeded_s),
            "size": size,
            "queries": queries,
            "http": http,
            "load": f"{load_before} -> {load()}",
        }
    finally:
        if backend == "postgresql":
            subprocess.run(
                [
                    "psql",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-qc",
                    f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
                ],
                check=False,
            )
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--like-runs", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load {load()}", flush=True)
    for backend in args.backends:
        result = bench_backend(backend, args)
        seeded = f"seeded {result['seeded_per_s']}/s, {result['size']}"
        print(f"\n== {backend}: {args.calls} calls, {seeded}, load {result['load']}")
        for row in result["queries"]:
            print("  " + " | ".join(f"{key}: {value}" for key, value in row.items()))
        for row in result["http"]:
            print("  " + " | ".join(f"{key}: {value}" for key, value in row.items()))
        print(flush=True)


if __name__ == "__main__":
    main()
