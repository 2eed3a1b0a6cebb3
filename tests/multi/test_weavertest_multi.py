"""weavertest's multi mode: every group in two child processes, reached over the call
protocol; fakes in the test process; replicas killed with SIGKILL are replaced while
retriable calls keep succeeding; routed calls keep their replica."""

from __future__ import annotations

import os
import signal
import time

import anyio
import pytest

import pyweaver as weaver
from pyweaver import weavertest
from pyweaver.contract._config import parse_config
from pyweaver.deployers.multi import MultiDeployer
from pyweaver.weavertest._multi import weavertest_deployment
from tests.components import Counter, Greeter, OutOfStock, Shape, Shapes
from tests.multi.routed import Store

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CONFIG = """
["tests.components.Greeter"]
greeting = "Howdy"
"""


async def _distinct(call: object, count: int, *, limit: float = 20.0) -> set[str]:
    """Call ``call()`` until it has returned ``count`` distinct values (bounded)."""
    seen: set[str] = set()
    with anyio.fail_after(limit):
        while len(seen) < count:
            seen.add(str(await call()))  # type: ignore[operator]
    return seen


async def test_components_run_in_other_processes() -> None:
    async with weavertest.Runner("multi", config=CONFIG) as app:
        greeter = await app.get(Greeter)
        assert await greeter.greet("Ann") == "Howdy, Ann!"
        # Two replicas of Greeter's group, neither of them this process.
        pids = {who.split("/")[0] for who in await _distinct(greeter.whoami, 2)}
        assert len(pids) == 2 and str(os.getpid()) not in pids
        # Application exceptions cross processes.
        with pytest.raises(OutOfStock) as stock:
            await greeter.fail("stock")
        assert (stock.value.item, stock.value.wanted) == ("apples", 3)
        with pytest.raises(weaver.RemoteException) as remote:
            await greeter.fail("value")
        assert remote.value.type_name == "builtins.ValueError"
        # AutoMarshal values are copied both ways.
        shapes = await app.get(Shapes)
        assert await shapes.grow(Shape("square", 4)) == Shape("square", 5, ["grown"])
        # Metadata travels with the call, hop after hop.
        with weaver.metadata.set(user="ann"):
            assert (await greeter.echo_metadata())["user"] == "ann"
        # Greeter reaches Counter (another group) through its Ref.
        counter = await app.get(Counter)
        assert await greeter.counter_total() >= 0
        assert await counter.add(0) >= 0


class FakeCounter:
    def __init__(self) -> None:
        self.added: list[int] = []

    async def add(self, n: int) -> int:
        self.added.append(n)
        return sum(self.added)

    async def add_once(self, n: int) -> int:
        return await self.add(n)

    async def calls(self) -> int:
        return len(self.added)


async def test_fakes_live_in_the_test_process() -> None:
    fake = FakeCounter()
    async with weavertest.Runner(
        "multi", config=CONFIG, fakes=[weavertest.fake(Counter, fake)]
    ) as app:
        greeter = await app.get(Greeter)
        for name in ("Ann", "Bob", "Cy"):
            assert await greeter.greet(name) == f"Howdy, {name}!"
        # The child processes called back into this process's fake.
        assert fake.added == [1, 1, 1]
        assert await greeter.counter_total() == 3


async def test_killed_replica_is_replaced_and_calls_keep_succeeding() -> None:
    async with weavertest.Runner("multi", config=CONFIG) as app:
        greeter = await app.get(Greeter)
        before = await _distinct(greeter.whoami, 2)
        victim = int(sorted(before)[0].split("/")[0])
        calls = 0
        failures: list[BaseException] = []
        seen_after: set[str] = set()
        killed_at = 0.0
        replaced_after = 0.0

        async def caller() -> None:
            nonlocal calls
            while not replaced_after:
                try:
                    who = await greeter.whoami()
                except Exception as exc:  # every failure is a test failure
                    failures.append(exc)
                    return
                calls += 1
                if killed_at:
                    seen_after.add(who)

        async def killer() -> None:
            nonlocal killed_at, replaced_after
            await anyio.sleep(0.3)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            while not (seen_after - before):
                await anyio.sleep(0.01)
            replaced_after = time.monotonic() - killed_at

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for _ in range(8):
                    group.start_soon(caller)
                group.start_soon(killer)
        assert failures == []
        new = seen_after - before
        assert new and all(int(who.split("/")[0]) != victim for who in new)
        print(f"replica replaced {replaced_after:.3f} s after SIGKILL; {calls} calls, 0 failed")


async def test_routed_calls_keep_their_replica() -> None:
    async with weavertest.Runner("multi") as app:
        store = await app.get(Store)
        pids = await _distinct(store.pid, 2)
        keys = [f"key-{i}" for i in range(64)]
        owners = {key: await store.owner(key) for key in keys}
        # Same key, same replica; and the keys spread over both replicas.
        for key in keys[:16]:
            assert await store.owner(key) == owners[key]
        assert {str(pid) for pid in owners.values()} == pids
        # Kill one replica: its keys move to the survivor meanwhile, the survivor's
        # keys stay put, and once the slot is filled again its keys come back to it.
        victim = min(owners.values())
        survivor_keys = [k for k, pid in owners.items() if pid != victim]
        os.kill(victim, signal.SIGKILL)
        for key in survivor_keys:
            assert await store.owner(key) == owners[key]
        replacement: set[int] = set()
        with anyio.fail_after(30):
            previous: dict[str, int] = {}
            while True:
                now = {key: await store.owner(key) for key in keys}
                new = set(now.values()) - set(owners.values())
                if new and now == previous:  # the replacement is in and routing settled
                    replacement = new
                    break
                previous = now
                await anyio.sleep(0.05)
        (new_pid,) = replacement
        assert {k for k, pid in now.items() if pid == new_pid} == {
            k for k, pid in owners.items() if pid == victim
        }


async def test_scaling_a_routed_group_moves_a_third_of_the_keys() -> None:
    deployers: list[MultiDeployer] = []
    config = parse_config("")
    async with weavertest_deployment(config, {}, None, on_deployer=deployers.append) as weavelet:
        (deployer,) = deployers
        store = await weavelet.get(Store)  # type: ignore[type-abstract]
        await _distinct(store.pid, 2)
        keys = [f"key-{i}" for i in range(300)]

        async def settled() -> dict[str, int]:
            previous: dict[str, int] = {}
            with anyio.fail_after(30):
                while True:
                    owners = {key: await store.owner(key) for key in keys}
                    if owners == previous:
                        return owners
                    previous = owners
                    await anyio.sleep(0.1)

        before = await settled()
        group = deployer.group_of("tests.multi.routed.Store").name
        assert await deployer.scale(group, 3) == pytest.approx(1 / 3, abs=0.01)
        with anyio.fail_after(30):
            while len(set((await settled()).values())) < 3:
                await anyio.sleep(0.1)
        after = await settled()
        moved = [key for key in keys if after[key] != before[key]]
        (new_pid,) = set(after.values()) - set(before.values())
        assert all(after[key] == new_pid for key in moved)
        assert 0.2 < len(moved) / len(keys) < 0.47
        print(f"adding a third replica moved {len(moved) / len(keys):.1%} of 300 keys")

        assert await deployer.scale(group, 2) == pytest.approx(1 / 3, abs=0.01)
        with anyio.fail_after(30):
            while new_pid in (await settled()).values():
                await anyio.sleep(0.1)
        assert await settled() == before  # every key is back on its first replica


async def test_a_call_waits_for_a_group_whose_replicas_all_died() -> None:
    async with weavertest.Runner("multi") as app:
        greeter = await app.get(Greeter)
        before = await _distinct(greeter.whoami, 2)
        for who in before:
            os.kill(int(who.split("/")[0]), signal.SIGKILL)
        # Retriable: the call waits (bounded) for the deployer to restart the group.
        after = await greeter.whoami()
        assert after not in before
