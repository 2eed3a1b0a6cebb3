"""The runtime through weavertest, in every mode: lazy construction, Refs, config,
errors, metadata, retries, fakes, metrics and shutdown hooks."""

from __future__ import annotations

import anyio
import pytest

import pyweaver as weaver
from pyweaver import weavertest
from pyweaver._runtime._metrics import snapshot
from pyweaver._runtime._weavelet import Weavelet

from .components import Clock, Counter, Greeter, OutOfStock, Shape, Shapes

pytestmark = pytest.mark.anyio

CONFIG = """
["tests.components.Greeter"]
greeting = "Howdy"
"""

IN_PROCESS_MODES = [m for m in weavertest.MODES if m != "multi"]


class FakeClock:
    async def now(self) -> float:
        return 42.0


@pytest.mark.parametrize("mode", IN_PROCESS_MODES)
async def test_calls_refs_and_config(mode: str) -> None:
    async with weavertest.Runner(mode, config=CONFIG) as app:
        greeter = await app.get(Greeter)
        assert await greeter.greet("Ann") == "Howdy, Ann!"
        assert await greeter.greet(name="Bob") == "Howdy, Bob!"
        counter = await app.get(Counter)
        # rpc mode runs every retriable call twice: Greeter.greet's add(1) ran twice per greet.
        expected = 2 if mode == "local" else 8
        assert await counter.add(0) == expected


@pytest.mark.parametrize("mode", IN_PROCESS_MODES)
async def test_rpc_mode_runs_retriable_calls_twice_and_not_retriable_once(mode: str) -> None:
    async with weavertest.Runner(mode) as app:
        counter = await app.get(Counter)
        await counter.add(1)
        await counter.add_once(1)
        calls = await counter.calls()
        assert calls == (2 if mode == "local" else 3)


@pytest.mark.parametrize("mode", weavertest.MODES)
async def test_application_exceptions(mode: str) -> None:
    async with weavertest.Runner(mode, app="tests.components") as app:
        greeter = await app.get(Greeter)
        with pytest.raises(OutOfStock) as stock:
            await greeter.fail("stock")
        assert (stock.value.item, stock.value.wanted) == ("apples", 3)
        if mode == "local":
            with pytest.raises(ValueError, match="bad value"):
                await greeter.fail("value")
        else:
            with pytest.raises(weaver.RemoteException) as remote:
                await greeter.fail("value")
            assert remote.value.type_name == "builtins.ValueError"
            assert remote.value.message == "bad value"
            assert "raise ValueError" in remote.value.remote_traceback


@pytest.mark.parametrize("mode", weavertest.MODES)
async def test_automarshal_arguments(mode: str) -> None:
    async with weavertest.Runner(mode) as app:
        shapes = await app.get(Shapes)
        grown = await shapes.grow(Shape("square", 4))
        assert grown == Shape("square", 5, ["grown"])
        assert await shapes.maybe(None) is None


@pytest.mark.parametrize("mode", weavertest.MODES)
async def test_metadata_travels_with_calls(mode: str) -> None:
    async with weavertest.Runner(mode) as app:
        greeter = await app.get(Greeter)
        with weaver.metadata.set(user="ann", tenant="t1"):
            assert await greeter.echo_metadata() == {"user": "ann", "tenant": "t1"}
        assert await greeter.echo_metadata() == {}


@pytest.mark.parametrize("mode", weavertest.MODES)
async def test_fakes_replace_components(mode: str) -> None:
    async with weavertest.Runner(mode, fakes=[weavertest.fake(Clock, FakeClock())]) as app:
        clock = await app.get(Clock)
        assert await clock.now() == 42.0


async def test_components_are_built_lazily_and_once() -> None:
    async with weavertest.Runner("local") as app:
        weavelet = app._pyweaver_weavelet
        assert isinstance(weavelet, Weavelet)
        assert not weavelet.built("tests.components.Counter")
        greeter = await app.get(Greeter)
        assert weavelet.built("tests.components.Greeter")
        assert not weavelet.built("tests.components.Counter")  # a Ref does not build it
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(greeter.greet, "x")
        assert weavelet.built("tests.components.Counter")
        counter_impl = await weavelet.get_impl("tests.components.Counter")
        assert counter_impl.count == 10  # one instance saw every call


async def test_method_metrics_are_recorded() -> None:
    async with weavertest.Runner("local") as app:
        greeter = await app.get(Greeter)
        await greeter.greet("a")
        with pytest.raises(KeyError):
            await greeter.fail("other")
    rows = {(m["name"], tuple(sorted(m["labels"].items()))): m for m in snapshot()}
    key = (
        "serviceweaver_method_count",
        (
            ("caller", "main"),
            ("component", "tests.components.Greeter"),
            ("method", "greet"),
            ("remote", "false"),
        ),
    )
    assert key in rows, sorted(rows)[:5]
    assert rows[key]["value"] >= 1


async def test_shutdown_hooks_run_when_the_runner_exits() -> None:
    events: list[str] = []

    class Recorder:
        async def now(self) -> float:
            return 0.0

    async with weavertest.Runner("local", fakes=[weavertest.fake(Clock, Recorder())]) as app:
        counter = await app.get(Counter)
        weavelet = app._pyweaver_weavelet
        assert isinstance(weavelet, Weavelet)
        impl = await weavelet.get_impl("tests.components.Counter")

        async def shutdown() -> None:
            events.append("counter shutdown")

        impl.shutdown = shutdown
        await counter.add(1)
    assert events == ["counter shutdown"]


async def test_get_with_a_bad_requester_is_a_clear_error() -> None:
    with pytest.raises(weaver.PyWeaverError, match="requester"):
        await weaver.get(Greeter, object())  # type: ignore[arg-type]


async def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(weaver.PyWeaverError, match="unknown weavertest mode"):
        weavertest.Runner("cloud")


async def test_local_call_counts_stay_exact_while_latency_is_sampled() -> None:
    from pyweaver._runtime._metrics import method_metrics

    async with weavertest.Runner("local") as app:
        greeter = await app.get(Greeter)
        metrics = method_metrics("main", "tests.components.Greeter", "fail", False)
        before_calls, before_errors = metrics.calls, metrics.errors
        for _ in range(21):
            with pytest.raises(KeyError):
                await greeter.fail("x")
        counter = await app.get(Counter)
        count_metrics = method_metrics("main", "tests.components.Counter", "add", False)
        before_adds = count_metrics.calls
        for i in range(13):
            assert await counter.add(1) == i + 1
    assert metrics.calls - before_calls == 21
    assert metrics.errors - before_errors == 21
    assert count_metrics.calls - before_adds == 13
    assert sum(count_metrics.latency_counts) < 13  # only a sample was timed


async def test_local_stubs_keep_the_interface_signature() -> None:
    from typing import Protocol

    from pyweaver._runtime._component import isolated_registrations

    with isolated_registrations():

        class Shaper(Protocol):
            async def shape(self, a: int, /, b: int = 2, *, c: str = "x") -> str: ...

        class ShaperImpl(weaver.Implements[Shaper]):
            async def shape(self, a: int, /, b: int = 2, *, c: str = "x") -> str:
                return f"{a}-{b}-{c}"

        async with weavertest.Runner("local") as app:
            shaper = await app.get(Shaper)
            assert await shaper.shape(1) == "1-2-x"
            assert await shaper.shape(1, 3, c="y") == "1-3-y"
            assert await shaper.shape(1, b=4) == "1-4-x"
            with pytest.raises(TypeError):
                await shaper.shape(a=1)  # type: ignore[call-arg]


@pytest.mark.parametrize("mode", ["rpc", "multi"])
async def test_a_wrongly_typed_remote_argument_is_a_clear_error(mode: str) -> None:
    async with weavertest.Runner(mode) as app:
        greeter = await app.get(Greeter)
        with pytest.raises(weaver.RemoteCallError, match=r"Greeter\.greet.*parameter 'name'"):
            await greeter.greet(123)  # type: ignore[arg-type]
        shapes = await app.get(Shapes)
        with pytest.raises(weaver.RemoteCallError, match=r"Shapes\.grow.*cannot encode"):
            await shapes.grow("not a shape")  # type: ignore[arg-type]
        assert await greeter.greet("still") == "Hello, still!"  # the rest keeps serving
