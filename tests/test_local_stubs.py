"""Colocated stub methods (issue 8), in C (``_localcall.c``) and in pure Python: the
same counts, errors, logs, spans and coroutine behaviour, whichever runs.

Every test runs with ``speedups`` on (the C ``LocalMethod``, which the runtime uses
whenever it is built) and off (the pure-Python template it falls back to)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import shutil
import sys
import types
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, Protocol

import anyio
import pytest

import pyweaver as weaver
from pyweaver._runtime import _metrics, _speedups, _tracing
from pyweaver._runtime._logging import _LOGGED
from pyweaver._runtime._registry import Registry
from pyweaver._runtime._stubs import LOCAL_LATENCY_SAMPLE, make_stub

pytestmark = pytest.mark.anyio

BOX = f"{__name__}.Box"


@types.coroutine
def suspend() -> Generator[str, Any, Any]:
    """Yield "suspended" to whoever drives the coroutine; return what it sends back."""
    return (yield "suspended")


class Box(Protocol):
    async def put(self, x: int, *, times: int = 1) -> int: ...

    async def wait(self) -> None: ...

    async def give_up(self) -> None: ...

    async def relay(self) -> int: ...


class BoxImpl(weaver.Implements[Box]):
    async def put(self, x: int, *, times: int = 1) -> int:
        if x % 7 == 0:
            raise ValueError(f"no multiples of seven: {x}")
        return x * times

    async def wait(self) -> None:
        await anyio.sleep_forever()

    async def give_up(self) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            raise ValueError("gave up") from None

    async def relay(self) -> int:
        value: int = await suspend()
        return value


@pytest.fixture(autouse=True)
def fresh_metrics() -> Iterator[None]:
    _metrics.reset_for_tests()
    yield
    _metrics.reset_for_tests()


async def box_stub(speedups: bool, requester: str = "tests.caller") -> Any:
    """A local stub of Box, called once (so the implementation is built and the
    next LOCAL_LATENCY_SAMPLE - 1 calls are counted down)."""
    spec = Registry({BOX: BoxImpl}).spec(BOX)
    impl = BoxImpl.__new__(BoxImpl)

    async def get_impl(component: str) -> Any:
        assert component == BOX
        return impl

    stub = make_stub(
        spec,
        requester,
        remote=False,
        get_impl=get_impl,
        placement=None,  # type: ignore[arg-type]  # a local stub never asks it
        speedups=speedups,
    )
    assert await stub.put(1) == 1
    return stub


def metrics(requester: str = "tests.caller", method: str = "put") -> _metrics.MethodMetrics:
    return _metrics.method_metrics(requester, BOX, method, False)


def test_the_c_module_is_built_here() -> None:
    """`make test` installs pyweaver with a C compiler at hand: the C stubs must be
    what the runtime uses (a broken build hook would otherwise go unnoticed)."""
    if _speedups.speedups_disabled():
        pytest.skip(f"{_speedups.NO_SPEEDUPS_ENV} is set")
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine")
    assert _speedups.LocalMethod is not None
    assert _metrics.MethodMetrics.__mro__[1] is _speedups.CallCounter


async def test_calls_and_errors_are_exact_through_sampling(speedups: bool) -> None:
    stub = await box_stub(speedups)
    raised: list[BaseException] = []
    for x in range(2, 102):  # 100 more calls; 14 multiples of seven fail
        try:
            assert await stub.put(x, times=2) == 2 * x
        except ValueError as exc:
            raised.append(exc)
    assert len(raised) == 14
    assert all(getattr(exc, _LOGGED, False) for exc in raised)  # each one logged
    counted = metrics()
    assert counted.calls == 101 and counted.errors == 14
    # one call in LOCAL_LATENCY_SAMPLE is timed, the first among them
    assert sum(counted.latency_counts) == -(-101 // LOCAL_LATENCY_SAMPLE)


async def test_a_cancelled_call_is_a_call_and_not_an_error(speedups: bool) -> None:
    stub = await box_stub(speedups)
    for _ in range(LOCAL_LATENCY_SAMPLE + 3):  # through a timed call and untimed ones
        with anyio.move_on_after(0.001) as scope:
            await stub.wait()
        assert scope.cancelled_caught
    waited = metrics(method="wait")
    assert waited.calls == LOCAL_LATENCY_SAMPLE + 3 and waited.errors == 0


async def test_an_error_raised_when_cancelled_is_counted(speedups: bool) -> None:
    stub = await box_stub(speedups)
    for _ in range(LOCAL_LATENCY_SAMPLE + 3):
        with pytest.raises(ValueError, match="gave up"):
            with anyio.move_on_after(0.001):
                await stub.give_up()
    gave_up = metrics(method="give_up")
    assert gave_up.calls == gave_up.errors == LOCAL_LATENCY_SAMPLE + 3


async def test_stub_calls_are_coroutines_to_task_groups_and_asyncio(speedups: bool) -> None:
    stub = await box_stub(speedups)
    call = stub.put(3)
    assert inspect.isawaitable(call)
    assert await call == 3
    async with anyio.create_task_group() as group:
        for x in range(3, 6):
            group.start_soon(stub.put, x)
    if sniffed_backend() == "asyncio":
        assert await asyncio.create_task(stub.put(8)) == 8
        assert await asyncio.wait_for(stub.put(9), 5) == 9
        assert list(await asyncio.gather(stub.put(10), stub.put(11))) == [10, 11]
    else:
        import trio

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stub.put, 12)
    assert metrics().calls == (9 if sniffed_backend() == "asyncio" else 6)


def sniffed_backend() -> str:
    import sniffio

    return sniffio.current_async_library()


async def test_wrong_arguments_raise_at_the_call_and_count_nothing(speedups: bool) -> None:
    stub = await box_stub(speedups)
    for _ in range(2):  # a counted-down call, then (countdown at 0) a timed one
        with pytest.raises(TypeError):
            stub.put()
        with pytest.raises(TypeError):
            stub.put(1, 2)
        for x in range(2, LOCAL_LATENCY_SAMPLE + 1):
            with contextlib.suppress(ValueError):
                await stub.put(x)
    assert metrics().calls == 1 + 2 * (LOCAL_LATENCY_SAMPLE - 1)
    assert metrics().errors == 8  # 7, 14, 21, 28 twice; not the wrong arguments
    assert sum(metrics().latency_counts) == 2


async def test_the_method_looks_like_a_coroutine_function_with_the_interfaces_signature(
    speedups: bool,
) -> None:
    stub = await box_stub(speedups)
    parameters = inspect.signature(stub.put).parameters
    assert [(p.name, p.kind, p.default) for p in parameters.values()] == [
        ("x", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("times", inspect.Parameter.KEYWORD_ONLY, 1),
    ]
    assert stub.put.__qualname__ == f"{BOX}.put" and stub.put.__name__ == "put"
    assert inspect.iscoroutinefunction(stub.put)  # frameworks ask before they await
    assert asyncio.iscoroutinefunction(stub.put)


async def test_send_throw_and_close_reach_the_implementation(speedups: bool) -> None:
    stub = await box_stub(speedups)
    relayed = metrics(method="relay")

    call = stub.relay()
    assert call.send(None) == "suspended"
    with pytest.raises(StopIteration) as returned:
        call.send(5)
    assert returned.value.value == 5
    assert (relayed.calls, relayed.errors) == (1, 0)

    call = stub.relay()
    assert call.send(None) == "suspended"
    with pytest.raises(KeyError):
        call.throw(KeyError("thrown in"))
    assert (relayed.calls, relayed.errors) == (2, 1)

    call = stub.relay()
    assert call.send(None) == "suspended"
    call.close()  # a call closed while suspended ran: a call, not an error
    assert (relayed.calls, relayed.errors) == (3, 1)

    call = stub.relay()
    with pytest.raises(KeyError):  # thrown in before it started: it never ran
        call.throw(KeyError("early"))
    call = stub.relay()
    call.close()
    del call
    assert (relayed.calls, relayed.errors) == (3, 1)


async def test_a_call_never_awaited_is_not_a_call(speedups: bool) -> None:
    stub = await box_stub(speedups)
    with pytest.warns(RuntimeWarning, match="never awaited"):
        stub.put(3)  # dropped at once
        gc.collect()
    assert metrics().calls == 1
    assert await stub.put(3) == 3
    assert metrics().calls == 2


async def test_with_tracing_on_every_call_gets_its_span(speedups: bool) -> None:
    stub = await box_stub(speedups)
    finished: list[dict[str, Any]] = []
    _tracing.enable_tracing(finished.append, sample_ratio=1.0, set_global=False)
    try:
        with _tracing.start_span("root", require_parent=False):
            for x in range(2, 7):
                await stub.put(x)
    finally:
        _tracing.disable_tracing()
    assert [span["name"] for span in finished] == [f"{BOX}.put"] * 5 + ["root"]
    assert metrics().calls == 6
    await stub.put(8)  # tracing off again: counted down, no span
    assert len(finished) == 6 and metrics().calls == 7


async def test_stubs_in_reference_cycles_are_collected(speedups: bool) -> None:
    stub = await box_stub(speedups)
    call = stub.relay()
    assert call.send(None) == "suspended"
    stub.me = stub  # a cycle through the stub
    stub.call = call  # and through a suspended call of it
    del stub, call
    gc.collect()  # the suspended implementation is closed, nothing is reported
    assert metrics(method="relay").errors == 0


@pytest.mark.slow
def test_the_c_module_compiles_without_warnings(tmp_path: Path) -> None:
    """-Wall -Wextra -Werror, with the compiler and flags this Python was built with
    (what hatch_build.py uses)."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine")
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    try:
        from hatch_build import SOURCE, compile_extension
    finally:
        sys.path.remove(str(root))
    target = tmp_path / "_localcall.so"
    compile_extension(root / SOURCE, target, ("-Wall", "-Wextra", "-Werror"))
    assert target.stat().st_size > 0
