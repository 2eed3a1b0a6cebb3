"""Tests for pyweaver.deployers._logstore: storage, rotation, queries and follow."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyweaver.contract._logentry import LogEntry
from pyweaver.deployers._logstore import LogQuery, LogQueryError, LogStore, LogWriter

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


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [e.message for e in SAMPLE]),
        ("component == Cache", ["cache miss", "stored key"]),
        ('component == "app.Cache"', ["cache miss", "stored key"]),
        ("component == ache", []),
        ("component != Cache && source == logger", ["retrying call", "boom: timeout", "at line"]),
        ("level >= warning", ["retrying call", "boom: timeout"]),
        ("level == warn", ["retrying call"]),
        ("level < info", ["cache miss"]),
        ('"timeout"', ["boom: timeout"]),
        ("msg contains miss", ["cache miss"]),
        ('msg ~ "^(cache|stored) "', ["cache miss", "stored key"]),
        ('message ~ "^re"', ["retrying call"]),
        ('attr.user == "ann"', ["stored key"]),
        ("attrs.user != ann", ["retrying call"]),
        ("attr.user ~ b", ["retrying call"]),
        ("replica == 73dd", ["cache miss"]),
        ("replica != 73dd && component == Cache", ["stored key"]),
        ("trace_id == 0af76519", ["at line"]),
        ("file == app.py && line == 42", ["at line"]),
        ("line < 0", ["printed"]),
        ("source == stdout", ["printed"]),
        ('time > "2026-11-25T03:00:30"', ["retrying call", "boom: timeout"]),
        ("time >= 2026-11-25T03:01:00 && time < 2026-11-25T03:02:00", ["retrying call"]),
        ("!(component == Cache) && level >= warning", ["retrying call", "boom: timeout"]),
        ("!component == Cache && level == error", ["boom: timeout"]),
        (
            "component == Cache && level == debug || level == error",
            ["cache miss", "boom: timeout"],
        ),
        (
            "component == Cache && (level == debug || level == error)",
            ["cache miss"],
        ),
        ("!!(level == error)", ["boom: timeout"]),
        ("'single \\'quoted\\''", []),
    ],
)
def test_query_language(query: str, expected: list[str]) -> None:
    assert select(query) == expected


def test_since_is_relative_to_parse_time() -> None:
    assert select("since 90s", now_ns=T0 + 2 * MINUTE) == ["retrying call", "boom: timeout"]
    assert select("since 1.5m", now_ns=T0 + 2 * MINUTE) == ["retrying call", "boom: timeout"]
    assert select("since 1d && level == error", now_ns=T0 + 2 * MINUTE) == ["boom: timeout"]
    assert select("since 500ms", now_ns=T0 + 10 * MINUTE) == []


def test_time_with_a_zone() -> None:
    instant = datetime.fromtimestamp(T0 / 1e9).astimezone().isoformat()
    assert select(f'time == "{instant}" && level == debug') == ["cache miss"]


@pytest.mark.parametrize(
    ("query", "position", "problem"),
    [
        ("level >= loud", 9, "unknown level"),
        ("colour == red", 0, "unknown field 'colour'"),
        ("component < x", 10, "does not apply to text"),
        ("component ==", 12, "expected a value"),
        ("component", 9, "expected an operator"),
        ("(level == info", 14, "expected )"),
        ("level == info)", 13, "expected && or ||"),
        ("level == info &&", 16, "found the end of the query"),
        ('msg ~ "("', 6, "bad regular expression"),
        ('"unterminated', 0, "unterminated string"),
        ("level == info & x", 14, "unexpected '&'"),
        ("since soon", 6, "expected a duration"),
        ("time > yesterday", 7, "ISO 8601"),
        ("line == many", 8, "integer"),
        ("attr. == x", 0, "attribute name"),
        ("&& x", 0, "expected a field"),
        ("time ~ x", 5, "time compares"),
        ("level contains x", 6, "level compares"),
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
    assert [e.message for e in store.read(LogQuery.parse("attr.user == ann"))] == ["stored key"]
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
    query = LogQuery.parse("!(msg contains skip)")

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
