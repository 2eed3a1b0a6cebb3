"""`pyweaver multi logs`: CEL queries, time order across replicas and deployments, the
deployment shown on each line, --since, and clear query errors (run in-process with
click's runner against an isolated registry)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from pyweaver.contract._logentry import LogEntry
from pyweaver.deployers._logstore import LogStore
from pyweaver.deployers._registry import DATA_DIR_ENV, Registry
from pyweaver.deployers.multi._cli import multi

SECOND = 10**9


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LogStore:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    return LogStore(Registry().logs_root)


def entry(message: str, time_ns: int, **fields: object) -> LogEntry:
    values: dict[str, object] = {"time_ns": time_ns, "level": "info", "message": message}
    values.update(fields)
    return LogEntry(**values)  # type: ignore[arg-type]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(multi, ["logs", *args])
    return result.exit_code, result.output


def test_entries_come_in_time_order_across_replicas_with_the_deployment(
    store: LogStore,
) -> None:
    now = time.time_ns()
    with store.writer("aaaaaaaa1111") as writer:
        # Batches from two replicas arrive out of time order.
        writer.write(
            [entry("r1 second", now - 8 * SECOND, replica="r1", deployment="aaaaaaaa1111")]
        )
        writer.write([entry("r2 first", now - 9 * SECOND, replica="r2", deployment="aaaaaaaa1111")])
        writer.write(
            [entry("r1 fourth", now - 6 * SECOND, replica="r1", deployment="aaaaaaaa1111")]
        )
    with store.writer("bbbbbbbb2222") as writer:
        writer.write([entry("b third", now - 7 * SECOND, deployment="bbbbbbbb2222")])
    code, output = run()
    assert code == 0, output
    lines = output.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "r2 first",
        "r1 second",
        "b third",
        "r1 fourth",
    ]
    assert lines[0].split()[2] == "aaaaaaaa"  # level+date, time, deployment
    assert lines[2].split()[2] == "bbbbbbbb"


def test_cel_query_and_since(store: LogStore) -> None:
    now = time.time_ns()
    with store.writer("dep") as writer:
        writer.write(
            [
                entry("old error", now - 3600 * SECOND, level="error", component="shop.Cart"),
                entry("new error", now - 60 * SECOND, level="error", component="shop.Cart"),
                entry("new info", now - 60 * SECOND, component="shop.Cart"),
                entry("ann", now - 30 * SECOND, attrs={"user": "ann"}),
            ]
        )
    code, output = run('level == "error" && component.contains("Cart")', "--json")
    assert code == 0, output
    assert [json.loads(line)["message"] for line in output.splitlines()] == [
        "old error",
        "new error",
    ]
    code, output = run('level == "error"', "--since", "10m", "--json")
    assert [json.loads(line)["message"] for line in output.splitlines()] == ["new error"]
    code, output = run('attrs["user"] == "ann"', "--json")
    assert [json.loads(line)["message"] for line in output.splitlines()] == ["ann"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now / 1e9 - 45))
    code, output = run("--since", stamp, "--json")
    assert [json.loads(line)["message"] for line in output.splitlines()] == ["ann"]


def test_query_and_since_errors_are_clear(store: LogStore) -> None:
    code, output = run('level == "error" &&')
    assert code != 0
    assert "log query error at position 19: the query ends too early" in output
    code, output = run("colour == 'red'")
    assert code != 0 and "unknown field 'colour'" in output
    code, output = run("--since", "yesterday")
    assert code != 0 and "neither a duration" in output


def test_help_lists_the_fields_and_examples() -> None:
    result = CliRunner().invoke(multi, ["logs", "--help"])
    assert result.exit_code == 0
    for text in ("attrs", "severity", "trace_id", 'attrs["user"] == "ann"', "--since"):
        assert text in result.output


@pytest.mark.anyio
async def test_follow_with_since_replays_history_since_then_then_follows(
    store: LogStore,
) -> None:
    now = time.time_ns()
    writer = store.writer("dep")
    writer.write([entry("too old", now - 600 * SECOND), entry("recent", now - 10 * SECOND)])
    stop = anyio.Event()
    seen: list[str] = []
    try:
        async with anyio.create_task_group() as tasks:

            async def consume() -> None:
                follow = store.follow(
                    stop=stop, from_start=True, since_ns=now - 60 * SECOND, poll_interval=0.01
                )
                async for found in follow:
                    seen.append(found.message)  # noqa: PERF401 (watched while it grows)

            tasks.start_soon(consume)
            with anyio.fail_after(10):
                while seen != ["recent"]:
                    await anyio.sleep(0.01)
            writer.write([entry("live", time.time_ns())])
            with anyio.fail_after(10):
                while seen != ["recent", "live"]:
                    await anyio.sleep(0.01)
            stop.set()
    finally:
        writer.close()


@pytest.mark.anyio
async def test_follow_from_now_skips_history(store: LogStore) -> None:
    writer = store.writer("dep")
    writer.write([entry("history", time.time_ns())])
    stop = anyio.Event()
    seen: list[str] = []
    try:
        async with anyio.create_task_group() as tasks:

            async def consume() -> None:
                async for found in store.follow(stop=stop, from_start=False, poll_interval=0.01):
                    seen.append(found.message)  # noqa: PERF401 (watched while it grows)

            tasks.start_soon(consume)
            with anyio.fail_after(10):
                # Until the follower has had its first look, what is written is
                # history to it: write until something new shows up.
                while not seen:
                    writer.write([entry("new", time.time_ns())])
                    await anyio.sleep(0.05)
            stop.set()
    finally:
        writer.close()
    assert seen and set(seen) == {"new"}
