"""Tests for pyweaver.deployers._logstore: storage, rotation, queries and follow."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyweaver.contract._logentry import LogEntry
from pyweaver.deployers._logstore import LogQuery, LogQueryError, LogStore, LogWriter
from pyweaver.deployers._logstore._query import compile_query

T0 = int(datetime(2026, 11, 25, 3, 0, 0).timestamp()) * 10**9  # local time
MINUTE = 60 * 10**9


def entry(message: str = "hello", **fields: object) -> LogEntry:
    values: dict[str, object] = {"time_ns": T0, "level": "info", "message": message}
    values.update(fields)
    return LogEntry(**values)  # type: ignore[arg-type]


SAMPLE = [
    entry("cache miss", component="app.Cache", replica="73ddcd04-aaaa", level="debug"),
    entry("stored key", component="app.Cache", replica="9f00e1c2-bbbb", attrs={"user": "ann"}),
    entry(
        "retrying call",
        component="app.Frontend",
        level="warning",
        time_ns=T0 + MINUTE,
        attrs={"user": "bob"},
    ),
    entry("boom: timeout", component="app.Frontend", level="error", time_ns=T0 + 2 * MINUTE),
    entry("printed", source="stdout", level="info", line=-1, file=""),
    entry("at line", file="app.py", line=42, trace_id="0af7651916cd43dd8448eb211c80319c"),
]


def select(query: str, *, now_ns: int | None = None) -> list[str]:
    parsed = LogQuery.parse(query, now_ns=now_ns)
    return [e.message for e in SAMPLE if parsed.matches(e)]


T0_UTC = datetime.fromtimestamp(T0 / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
T1_UTC = datetime.fromtimestamp(T0 / 1e9 + 60, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
T2_UTC = datetime.fromtimestamp(T0 / 1e9 + 120, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

QUERIES = [
    ("", [e.message for e in SAMPLE]),
    ('component == "app.Cache"', ["cache miss", "stored key"]),
    ('component.endsWith(".Cache")', ["cache miss", "stored key"]),
    ('component == "Cache"', []),
    ('component.contains("Front") && stream == "logger"', ["retrying call", "boom: timeout"]),
    (
        'component != "app.Cache" && stream == "logger"',
        ["retrying call", "boom: timeout", "at line"],
    ),
    ("severity >= 30", ["retrying call", "boom: timeout"]),
    ('level == "warning"', ["retrying call"]),
    ("severity < 20", ["cache miss"]),
    ('msg.contains("timeout")', ["boom: timeout"]),
    ('msg.matches("^(cache|stored) ")', ["cache miss", "stored key"]),
    ('msg.startsWith("re")', ["retrying call"]),
    ('attrs["user"] == "ann"', ["stored key"]),
    ('attrs.user != "ann"', ["retrying call"]),
    ('!(attrs["user"] == "ann")', ["retrying call"]),
    ('attrs["user"] == "ann" || level == "error"', ["stored key", "boom: timeout"]),
    ('level == "error" || attrs["user"] == "ann"', ["stored key", "boom: timeout"]),
    ('attrs["user"] == "x" && level == "debug"', []),
    ('"user" in attrs', ["stored key", "retrying call"]),
    ("has(attrs.user) && severity > 20", ["retrying call"]),
    ('attrs.user.matches("b")', ["retrying call"]),
    ('replica.startsWith("73dd")', ["cache miss"]),
    ('trace_id.startsWith("0af76519")', ["at line"]),
    ('file == "app.py" && line == 42', ["at line"]),
    ('source == "app.py:42"', ["at line"]),
    ("line < 0", ["printed"]),
    ('stream == "stdout"', ["printed"]),
    (f'time > timestamp("{T0_UTC}")', ["retrying call", "boom: timeout"]),
    (
        f'time >= timestamp("{T1_UTC}") && time < timestamp("{T2_UTC}")',
        ["retrying call"],
    ),
    ('!(component == "app.Cache") && severity >= 30', ["retrying call", "boom: timeout"]),
    (
        'component == "app.Cache" && level == "debug" || level == "error"',
        ["cache miss", "boom: timeout"],
    ),
    ('component == "app.Cache" && (level == "debug" || level == "error")', ["cache miss"]),
    ('!!(level == "error")', ["boom: timeout"]),
    ("true && !false", [e.message for e in SAMPLE]),
    ("'single \\'quoted\\''  == msg", []),
    # Outside the closures' subset: evaluated by cel-python's own program.
    ('attrs.exists(k, k == "user") && size(msg) > 10', ["retrying call"]),
    ('level == "error" ? true : msg == "printed"', ["boom: timeout", "printed"]),
    ("line + 1 == 43", ["at line"]),
]


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_query_language(query: str, expected: list[str]) -> None:
    assert select(query) == expected


@pytest.mark.parametrize(("query", "expected"), [q for q in QUERIES if q[0]])
def test_cel_python_agrees_with_the_fast_path(query: str, expected: list[str]) -> None:
    general = compile_query(query, T0, general=True)
    assert [e.message for e in SAMPLE if general(e)] == expected


def test_now_is_the_compile_time() -> None:
    query = 'time >= now - duration("90s")'
    assert select(query, now_ns=T0 + 2 * MINUTE) == ["retrying call", "boom: timeout"]
    assert select(f"{query} && level == 'error'", now_ns=T0 + 2 * MINUTE) == ["boom: timeout"]
    assert select('time >= now - duration("500ms")', now_ns=T0 + 10 * MINUTE) == []


@pytest.mark.parametrize(
    ("query", "position", "problem"),
    [
        ("colour == 'red'", 0, "unknown field 'colour'"),
        ('level == "info" && size(colour) > 1', 24, "unknown field 'colour'"),
        ('line == "x"', 0, "cannot compare an int with a string"),
        ("level < 3", 0, "cannot compare a string with an int"),
        ("component ==", 12, "ends too early"),
        ("msg", 0, "must be a condition"),
        ("size(msg)", 0, "must be a condition"),
        ('(level == "info"', 16, "ends too early"),
        ('level == "info")', 15, "unexpected ')'"),
        ('msg.matches("(")', 12, "bad regular expression"),
        ('level = "info"', 6, "unexpected '='"),
        ('time > timestamp("yesterday")', 17, "bad timestamp"),
        ('time > now - duration("soon")', 22, "bad duration"),
        ("msg.contains(3)", 13, "takes a string, not an int"),
        ("shout(msg)", 0, "unknown function 'shout'"),
        ("attrs.exists(k, k.shout())", 18, "unknown function 'shout'"),
        ("msg.contains('a') && level", 21, "expected a condition"),
        ("int(msg) == 3", 0, "cannot evaluate"),
    ],
)
def test_query_errors_name_the_position(query: str, position: int, problem: str) -> None:
    with pytest.raises(LogQueryError) as info:
        LogQuery.parse(query)
    assert info.value.position == position
    assert problem in str(info.value)
    assert f"position {position}" in str(info.value)
    assert str(info.value).splitlines()[-1] == "  " + " " * position + "^"


def test_write_and_read_back(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    with store.writer("dep-a") as writer:
        writer.write(SAMPLE[:3])
        writer.write([])
    with store.writer("dep-b") as writer:
        writer.write([entry("other", time_ns=T0 + 30 * 10**9)])
    assert store.deployments() == ["dep-a", "dep-b"]
    assert [e.message for e in store.read()] == [
        "cache miss",
        "stored key",
        "other",
        "retrying call",
    ]
    assert list(store.read(deployments=["dep-a"])) == SAMPLE[:3]
    assert [e.message for e in store.read(LogQuery.parse('attrs["user"] == "ann"'))] == [
        "stored key"
    ]
    assert list(LogStore(tmp_path / "missing").read()) == []


def test_torn_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    with store.writer("dep") as writer:
        writer.write([entry("one")])
    with open(tmp_path / "dep" / "log.jsonl", "ab") as file:
        file.write(b"not json\n[1,2]\n")
    with store.writer("dep") as writer:
        writer.write([entry("two")])
    with open(tmp_path / "dep" / "log.jsonl", "ab") as file:
        file.write(b'{"time_ns": 1, "lev')  # a writer mid-line
    assert [e.message for e in store.read()] == ["one", "two"]


def test_rotation_caps_the_size(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "dep", max_bytes=1000, backups=2)
    for i in range(40):
        writer.write([entry(f"message {i:02d}")])
    writer.close()
    files = sorted(p.name for p in (tmp_path / "dep").iterdir())
    assert files == ["log.1.jsonl", "log.2.jsonl", "log.jsonl"]
    assert all((tmp_path / "dep" / f).stat().st_size <= 1000 for f in files)
    messages = [e.message for e in LogStore(tmp_path).read()]
    assert messages[-1] == "message 39"
    assert messages == sorted(messages)
    assert 3 < len(messages) < 40  # the oldest were dropped
    # Reopening appends to the current file.
    with LogWriter(tmp_path / "dep", max_bytes=1000, backups=2) as again:
        again.write([entry("message 40")])
    assert [e.message for e in LogStore(tmp_path).read()][-1] == "message 40"


def test_rotation_without_backups(tmp_path: Path) -> None:
    with LogWriter(tmp_path / "dep", max_bytes=200, backups=0) as writer:
        for i in range(10):
            writer.write([entry(f"m{i}")])
    assert [p.name for p in (tmp_path / "dep").iterdir()] == ["log.jsonl"]
    assert [e.message for e in LogStore(tmp_path).read()][-1] == "m9"


def test_writer_rejects_bad_limits(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LogWriter(tmp_path, max_bytes=0)


@pytest.mark.anyio
async def test_follow_delivers_old_then_new_entries(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    writer = store.writer("dep-a", max_bytes=1500, backups=5)
    writer.write([entry("old-1"), entry("old-2")])
    stop = anyio.Event()
    seen: list[str] = []
    query = LogQuery.parse('!msg.contains("skip")')

    async def consume() -> None:
        async for found in store.follow(query, stop=stop, poll_interval=0.01):
            seen.append(found.message)  # noqa: PERF401 (seen is watched while it grows)

    try:
        await follow_while_writing(tmp_path, store, writer, consume, seen, stop)
    finally:
        writer.close()
    assert seen[:2] == ["old-1", "old-2"]
    assert sorted(seen[2:]) == sorted([f"new-{i}" for i in range(8)] + ["joined", "from b"])
    assert "skip me" not in seen
    rotated = sorted(p.name for p in (tmp_path / "dep-a").iterdir())
    assert "log.2.jsonl" in rotated  # the follower crossed several rotations


async def follow_while_writing(
    tmp_path: Path,
    store: LogStore,
    writer: LogWriter,
    consume: Callable[[], Coroutine[Any, Any, None]],
    seen: list[str],
    stop: anyio.Event,
) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        with anyio.fail_after(10):
            while len(seen) < 2:
                await anyio.sleep(0.01)
        # New lines, a rotation, a partial line and a deployment that appears later.
        for i in range(8):
            writer.write([entry(f"new-{i}"), entry("skip me")])
        with open(tmp_path / "dep-a" / "log.jsonl", "ab") as file:
            file.write(b'{"time_ns": 1, "level": "info", ')
            await anyio.sleep(0.05)
            file.write(b'"message": "joined"}\n')
        with store.writer("dep-b") as later:
            later.write([entry("from b")])
        with anyio.fail_after(10):
            while len(seen) < 12:
                await anyio.sleep(0.01)
        stop.set()


@pytest.mark.anyio
async def test_follow_from_the_end_and_stop(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    with store.writer("dep") as writer:
        writer.write([entry("before")])
        stop = anyio.Event()
        stop.set()  # already set: one pass, then the end
        assert [e async for e in store.follow(stop=stop, from_start=False)] == []

        stop = anyio.Event()
        seen: list[str] = []

        async def consume() -> None:
            async for found in store.follow(stop=stop, from_start=False, poll_interval=0.01):
                seen.append(found.message)  # noqa: PERF401

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            for i in range(500):
                writer.write([entry(f"after-{i}")])
                await anyio.sleep(0.01)
                if seen:
                    break
            stop.set()
    assert seen
    assert all(message.startswith("after-") for message in seen)
