"""Adaptive busy-polling (``pyweaver.call._spin``): a spinner keeps its loop polling for
its window after a poke and parks otherwise; lone calls poke it, batches do not; the
window comes from the argument, else ``PYWEAVER_SPIN_US``, and a bad value is refused
with the variable's name."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from pyweaver import call
from pyweaver.call._backend import current_backend
from pyweaver.call._spin import (
    DEFAULT_SPIN,
    DEFAULT_SPIN_TRIO,
    PROBE_EVERY,
    SPIN_ENV,
    WASTED_LIMIT,
    Spinner,
    spin_window,
)
from tests.call.test_call import running

pytestmark = pytest.mark.anyio

ECHO = call.method_key("tests.Spin", "echo")


async def echo(payload: bytes) -> bytes:
    return payload


def test_the_window_comes_from_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SPIN_ENV, raising=False)
    assert spin_window() == DEFAULT_SPIN
    assert spin_window(backend="trio") == DEFAULT_SPIN_TRIO > DEFAULT_SPIN
    assert spin_window(0.002) == 0.002
    assert spin_window(0.002, "trio") == 0.002
    monkeypatch.setenv(SPIN_ENV, "250")
    assert spin_window() == pytest.approx(250e-6)
    monkeypatch.setenv(SPIN_ENV, "80")
    assert spin_window(backend="trio") == pytest.approx(80e-6)
    assert spin_window(0) == 0
    monkeypatch.setenv(SPIN_ENV, "0")
    assert spin_window() == 0


@pytest.mark.parametrize("bad", ["fast", "-5", "nan", "inf"])
def test_a_bad_window_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(SPIN_ENV, bad)
    with pytest.raises(ValueError, match=SPIN_ENV):
        spin_window()
    with pytest.raises(ValueError, match="non-negative"):
        spin_window(-1.0)


def parked(spinner: Spinner) -> bool:
    return spinner.parked  # a call: mypy must not narrow it across awaits


async def start_and_park(group: anyio.abc.TaskGroup, spinner: Spinner) -> None:
    """Run ``spinner`` in ``group`` until it parks (nothing poked it yet)."""
    group.start_soon(spinner.run, current_backend())
    with anyio.fail_after(5):
        while not parked(spinner):
            await anyio.sleep(0)


async def test_a_spinner_spins_for_its_window_after_a_poke_then_parks() -> None:
    spinner = Spinner(0.05)
    ticks = 0

    async def count_loop_iterations() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.001)
            ticks += 1

    async with anyio.create_task_group() as group:
        await start_and_park(group, spinner)  # nothing poked it yet
        spinner.poke()
        await anyio.sleep(0)
        assert not parked(spinner)  # spinning
        started = anyio.current_time()
        with anyio.fail_after(5):
            while not parked(spinner):
                await anyio.sleep(0.005)
        spun = anyio.current_time() - started
        assert 0.03 <= spun < 2  # about its window, then it parked by itself
        # Pokes while it spins keep it spinning past one window.
        spinner.poke()
        started = anyio.current_time()
        for _ in range(20):
            await anyio.sleep(0.01)
            spinner.poke()
            assert not parked(spinner)
        assert anyio.current_time() - started > 0.05
        group.start_soon(count_loop_iterations)
        await anyio.sleep(0.2)
        assert ticks > 0  # other tasks still run while it spins or parks
        group.cancel_scope.cancel()


async def test_lone_calls_poke_both_ends_and_batches_do_not() -> None:
    pokes = {"client": 0, "server": 0}
    release = anyio.Event()
    answered: list[bytes] = []

    async def echo(payload: bytes) -> bytes:
        if payload == b"hold":
            await release.wait()
        answered.append(payload)
        return payload

    async with running(
        "tcp://127.0.0.1:0", {ECHO: echo}, server_options={"spin": 0.001}, spin=0.001
    ) as (server, client):
        with anyio.fail_after(10):
            await client.wait_ready()
        assert client._spinner is not None and server._spinner is not None
        client_poke, server_poke = client._spinner.poke, server._spinner.poke

        def count(side: str, poke: object) -> object:
            def counted() -> None:
                pokes[side] += 1
                poke()  # type: ignore[operator]

            return counted

        client._live[server.address].poke = count("client", client_poke)  # type: ignore[assignment]
        (session,) = server._sessions
        session.poke = count("server", server_poke)  # type: ignore[assignment]
        with anyio.fail_after(10):
            for _ in range(3):
                assert await client.call(ECHO, b"x") == b"x"
        assert pokes == {"client": 3, "server": 3}
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(client.call, ECHO, b"hold")
                while client.in_flight(server.address) < 1:
                    await anyio.sleep(0.001)
                for _ in range(5):  # a batch behind a call in flight: no pokes
                    group.start_soon(client.call, ECHO, b"y")
                while answered.count(b"y") < 5:
                    await anyio.sleep(0.001)
                release.set()
        assert pokes == {"client": 4, "server": 4}  # only "hold" went out (and in) alone


async def test_spin_zero_starts_no_spinner() -> None:
    async def echo(payload: bytes) -> bytes:
        return payload

    async with running(
        "tcp://127.0.0.1:0", {ECHO: echo}, server_options={"spin": 0}, spin=0
    ) as (server, client):
        assert client._spinner is None and server._spinner is None
        with anyio.fail_after(10):
            assert await client.call(ECHO, b"z") == b"z"


async def test_a_spinner_whose_spins_find_no_answer_cools_down_and_probes() -> None:
    spinner = Spinner(0.002)

    async def episode(poke: bool = True, hit: bool = False) -> None:
        if poke:
            spinner.poke()
        with anyio.fail_after(5):
            while poke and parked(spinner):
                await anyio.sleep(0)
        if hit:
            spinner.hit()
        with anyio.fail_after(5):
            while not parked(spinner):
                await anyio.sleep(0.001)

    async with anyio.create_task_group() as group:
        group.start_soon(spinner.run, current_backend())
        await episode(poke=False)
        for _ in range(WASTED_LIMIT):
            await episode()  # each spins its window; no answer comes
        assert spinner.episodes == WASTED_LIMIT and spinner.wasted == WASTED_LIMIT
        for _ in range(PROBE_EVERY - 1):
            spinner.poke()  # cooling: these start nothing
            assert parked(spinner)
        assert spinner.episodes == WASTED_LIMIT
        await episode(hit=True)  # the probe: an answer came while it spun
        assert spinner.episodes == WASTED_LIMIT + 1 and spinner.wasted == 0
        await episode()
        assert spinner.episodes == WASTED_LIMIT + 2  # warm again: every poke spins
        group.cancel_scope.cancel()


async def test_a_poke_between_cancelling_a_parked_spinner_and_its_next_step() -> None:
    """Cancelling the spinner's task cancels the future it is parked on at once (on
    asyncio), but the spinner only forgets that future when it next runs: a poke from a
    socket read in between must not resolve the cancelled future (CI once saw
    ``InvalidStateError`` from a connection's read callback at a weavelet's shutdown)."""
    spinner = Spinner(0.002)
    async with anyio.create_task_group() as group:
        await start_and_park(group, spinner)
        group.cancel_scope.cancel()
        spinner.poke()  # before the spinner's task has run again
    assert not parked(spinner)


async def test_a_spinning_loop_offers_its_cpu_to_other_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past its first GIVE_WAY_AFTER, an episode gives way (``sched_yield``) at each
    spin, so a peer process on the same CPU is not kept waiting for the kernel to
    preempt the spinner; a parked spinner does not."""
    calls = 0

    def counting_yield() -> None:
        nonlocal calls
        calls += 1

    monkeypatch.setattr("os.sched_yield", counting_yield)
    spinner = Spinner(0.02)
    async with anyio.create_task_group() as group:
        await start_and_park(group, spinner)
        assert calls == 0
        spinner.poke()
        with anyio.fail_after(5):
            while not parked(spinner):
                await anyio.sleep(0.005)
        assert calls > 0
        spun = calls
        await anyio.sleep(0.05)
        assert calls == spun
        group.cancel_scope.cancel()


async def test_clients_and_servers_take_their_backends_default_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SPIN_ENV, raising=False)
    async with running("tcp://127.0.0.1:0", {ECHO: echo}) as (server, client):
        assert client._spinner is not None and server._spinner is not None
        expected = DEFAULT_SPIN_TRIO if current_backend().name == "trio" else DEFAULT_SPIN
        assert client._spinner.window == server._spinner.window == expected
