"""Remote stub methods (issue 8): what a remote stub hands the call client, the metrics
it records in one call, keyword arguments, the cached client, stubs built without their
tracing hooks (the benchmarks' yardstick), and how a call behaves as a coroutine
(cancelled, thrown into, closed, never awaited, a reply that does not decode).

The remote tests run with ``speedups`` on (the C ``RemoteMethod``, which the runtime
uses whenever it is built) and off (the pure-Python closure it falls back to)."""

from __future__ import annotations

import gc
import inspect
import types
from collections.abc import Generator, Iterator
from typing import Any

import anyio
import pytest

from pyweaver._errors import RemoteCallError
from pyweaver._runtime import _metrics, _speedups, _tracing
from pyweaver._runtime._listener import Listener, ListenerOptions
from pyweaver._runtime._registry import Registry
from pyweaver._runtime._stubs import make_stub
from pyweaver.call import _metadata

from .components import GreeterImpl

pytestmark = pytest.mark.anyio

GREETER = "tests.components.Greeter"


@types.coroutine
def suspend() -> Generator[str, Any, Any]:
    """Yield "suspended" to whoever drives the coroutine; return what it sends back."""
    return (yield "suspended")


class RecordingClient:
    """A call client that answers with the implementation's encoded result (after
    ``suspend_first`` suspensions of its own: see :func:`suspend`)."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.calls: list[tuple[bytes, bytes, bool, int]] = []
        self.fail_with: BaseException | None = None
        self.suspend_first = 0
        self.hang = False  # wait (in the event loop) until cancelled
        self.ended: list[str] = []  # how each call's coroutine ended

    async def call(
        self, method_key: bytes, payload: bytes, *, retriable: bool = True, shard_key: int = 0
    ) -> bytes:
        self.calls.append((method_key, payload, retriable, shard_key))
        try:
            for _ in range(self.suspend_first):
                sent = await suspend()
                if sent is not None:
                    return sent  # type: ignore[no-any-return]
            if self.hang:
                await anyio.sleep_forever()
        except GeneratorExit:
            self.ended.append("closed")
            raise
        except BaseException as exc:
            self.ended.append(f"raised {type(exc).__name__}")
            raise
        if self.fail_with is not None:
            raise self.fail_with
        self.ended.append("returned")
        return self.reply


class OnePlacement:
    """Every component is remote and reached through ``client``."""

    def __init__(self, client: RecordingClient) -> None:
        self.client_calls = 0
        self._client = client

    def is_local(self, component: str) -> bool:
        return False

    async def activate(self, component: str) -> None:
        return None

    async def client(self, component: str) -> RecordingClient:
        self.client_calls += 1
        return self._client

    async def listener(self, name: str, options: ListenerOptions | None) -> Listener:
        raise AssertionError("no listeners here")


@pytest.fixture
def registry() -> Registry:
    return Registry({GREETER: GreeterImpl})


@pytest.fixture(autouse=True)
def fresh_metrics() -> Iterator[None]:
    _metrics.reset_for_tests()
    yield
    _metrics.reset_for_tests()


def remote_greeter(
    registry: Registry, requester: str, *, hooks: bool = True, speedups: bool = True
) -> tuple[Any, RecordingClient, OnePlacement]:
    spec = registry.spec(GREETER)
    greet = spec.methods["greet"].codec
    client = RecordingClient(greet.encode_result("Howdy, ann!"))
    placement = OnePlacement(client)
    stub = make_stub(
        spec,
        requester,
        remote=True,
        get_impl=_no_impl,
        placement=placement,
        tracing_hooks=hooks,
        speedups=speedups,
    )
    return stub, client, placement


def greet_metrics(requester: str) -> _metrics.MethodMetrics:
    return _metrics.method_metrics(requester, GREETER, "greet", True)


async def _no_impl(component: str) -> Any:
    raise AssertionError("a remote stub never builds the implementation")


@pytest.mark.parametrize("hooks", [True, False])
async def test_remote_stub_sends_the_encoded_arguments_and_decodes_the_reply(
    registry: Registry, hooks: bool, speedups: bool
) -> None:
    stub, client, placement = remote_greeter(
        registry, f"caller-{hooks}", hooks=hooks, speedups=speedups
    )
    method = registry.spec(GREETER).methods["greet"]
    assert await stub.greet("ann") == "Howdy, ann!"
    assert await stub.greet(name="bob") == "Howdy, ann!"  # keywords bind like positionals
    assert client.calls == [
        (method.key, method.codec.encode_args(("ann",)), method.retriable, 0),
        (method.key, method.codec.encode_args(("bob",)), method.retriable, 0),
    ]
    assert placement.client_calls == 1  # the client is looked up once, then kept
    assert await stub.greet("cy") == "Howdy, ann!"  # (the C method's path, once connected)
    assert client.calls[-1] == (method.key, method.codec.encode_args(("cy",)), method.retriable, 0)
    assert placement.client_calls == 1


@pytest.mark.parametrize("hooks", [True, False])
async def test_remote_stub_records_calls_bytes_and_errors(
    registry: Registry, hooks: bool, speedups: bool
) -> None:
    stub, client, _ = remote_greeter(registry, f"metrics-{hooks}", hooks=hooks, speedups=speedups)
    method = registry.spec(GREETER).methods["greet"]
    await stub.greet("ann")
    await stub.greet("ann")
    client.fail_with = RemoteCallError("broken")
    with pytest.raises(RemoteCallError):
        await stub.greet("ann")
    metrics = _metrics.method_metrics(f"metrics-{hooks}", GREETER, "greet", True)
    assert metrics.calls == 3
    assert metrics.errors == 1
    request = len(method.codec.encode_args(("ann",)))
    assert metrics.request_sum == 2 * request  # bytes are counted for answered calls
    assert metrics.reply_sum == 2 * len(client.reply)
    assert sum(metrics.request_counts) == sum(metrics.reply_counts) == 2


def test_record_remote_is_record_plus_record_bytes() -> None:
    one = _metrics.MethodMetrics("a", "b", "c", True)
    two = _metrics.MethodMetrics("a", "b", "c", True)
    for latency, request, reply in [(0, 0, 0), (1500, 20, 7), (10**9, 65_536, 65_540)]:
        one.record_remote(latency, request, reply)
        two.record(latency, False)
        two.record_bytes(request, reply)
    assert one._samples() == two._samples()


async def test_remote_stub_passes_metadata_through_to_the_client(
    registry: Registry, speedups: bool
) -> None:
    seen: list[dict[str, str]] = []
    stub, client, _ = remote_greeter(registry, "metadata", speedups=speedups)
    original = client.call

    async def call(method_key: bytes, payload: bytes, **options: Any) -> bytes:
        seen.append(dict(_metadata.current()))
        return await original(method_key, payload, **options)

    client.call = call  # type: ignore[method-assign]
    await stub.greet("first")  # connects: the next calls take the C method's path
    with _metadata.metadata.set(user="ann"):
        await stub.greet("x")
    assert seen == [{}, {"user": "ann"}]


@pytest.mark.parametrize("remote", [True, False])
async def test_a_stub_without_tracing_hooks_makes_no_spans(
    registry: Registry, remote: bool, speedups: bool
) -> None:
    finished: list[dict[str, Any]] = []
    spec = registry.spec(GREETER)
    impl = GreeterImpl.__new__(GreeterImpl)

    async def get_impl(component: str) -> Any:
        return impl

    async def greet(name: str) -> str:
        return f"hi {name}"

    impl.greet = greet  # type: ignore[method-assign]
    client = RecordingClient(spec.methods["greet"].codec.encode_result("hi x"))
    placement = OnePlacement(client)
    with_hooks = make_stub(
        spec, "hooks", remote=remote, get_impl=get_impl, placement=placement, speedups=speedups
    )
    without = make_stub(
        spec,
        "nohooks",
        remote=remote,
        get_impl=get_impl,
        placement=placement,
        tracing_hooks=False,
        speedups=speedups,
    )
    await with_hooks.greet("x")  # connected: calls take the C methods' paths
    await without.greet("x")
    _tracing.enable_tracing(finished.append, sample_ratio=1.0, set_global=False)
    try:
        with _tracing.start_span("without", require_parent=False):
            assert await without.greet("x") == "hi x"
        assert [span["name"] for span in finished] == ["without"]
        with _tracing.start_span("with", require_parent=False):
            assert await with_hooks.greet("x") == "hi x"
        assert [span["name"] for span in finished[1:]] == [f"{GREETER}.greet", "with"]
    finally:
        _tracing.disable_tracing()
    calls = _metrics.method_metrics("nohooks", GREETER, "greet", remote).calls
    assert calls == 2  # metrics still recorded without the hooks


async def connected_greeter(registry: Registry, requester: str, speedups: bool) -> Any:
    """A remote Greeter stub that made one call (so the next take the C path)."""
    stub, client, _ = remote_greeter(registry, requester, speedups=speedups)
    assert await stub.greet("warm") == "Howdy, ann!"
    return stub, client


def test_the_c_remote_method_is_used_when_built(registry: Registry) -> None:
    stub, _, _ = remote_greeter(registry, "which")
    if _speedups.RemoteMethod is None:
        pytest.skip("the C module is not built (see test_local_stubs.py)")
    assert type(stub.greet) is _speedups.RemoteMethod
    python, _, _ = remote_greeter(registry, "which", speedups=False)
    assert inspect.iscoroutinefunction(python.greet)


async def test_the_method_looks_like_a_coroutine_function_with_the_interfaces_signature(
    registry: Registry, speedups: bool
) -> None:
    stub, _ = await connected_greeter(registry, "inspect", speedups)
    assert inspect.iscoroutinefunction(stub.greet)
    signature = inspect.signature(stub.greet)
    assert list(signature.parameters) == ["name"]
    assert signature.return_annotation in (str, "str")
    assert stub.greet.__name__ == "greet"
    assert stub.greet.__qualname__.endswith("Greeter.greet")
    call = stub.greet("x")
    assert inspect.isawaitable(call)
    assert await call == "Howdy, ann!"


async def test_a_cancelled_call_reaches_the_client_and_is_not_an_error(
    registry: Registry, speedups: bool
) -> None:
    stub, client = await connected_greeter(registry, "cancelled", speedups)
    client.hang = True
    with anyio.move_on_after(0.01) as scope:
        await stub.greet("x")
    assert scope.cancelled_caught
    assert client.ended[-1] in ("raised CancelledError", "raised Cancelled")
    metrics = greet_metrics("cancelled")
    assert (metrics.calls, metrics.errors) == (1, 0)  # only the warm-up call was timed


async def test_a_reply_that_does_not_decode_is_a_failed_call(
    registry: Registry, speedups: bool
) -> None:
    stub, client = await connected_greeter(registry, "undecodable", speedups)
    client.reply = b"\xff\x00 not cbor"
    with pytest.raises(Exception, match=r"Greeter\.greet"):
        await stub.greet("x")
    metrics = greet_metrics("undecodable")
    assert (metrics.calls, metrics.errors) == (2, 1)


async def test_arguments_that_do_not_encode_raise_when_awaited_and_send_nothing(
    registry: Registry, speedups: bool
) -> None:
    stub, client = await connected_greeter(registry, "unencodable", speedups)
    call = stub.greet(object())  # nothing runs before the call is awaited
    assert len(client.calls) == 1
    with pytest.raises(Exception, match=r"Greeter\.greet"):
        await call
    with pytest.raises(Exception, match=r"Greeter\.greet"):
        await stub.greet("a", "b")  # the wrong number of arguments
    assert len(client.calls) == 1  # nothing was sent
    assert greet_metrics("unencodable").calls == 1  # nor counted


async def test_send_throw_and_close_behave_as_an_async_def(
    registry: Registry, speedups: bool
) -> None:
    stub, client = await connected_greeter(registry, "coroutine", speedups)
    client.suspend_first = 1
    reply = registry.spec(GREETER).methods["greet"].codec.encode_result("sent in")

    call = stub.greet("x")
    assert call.send(None) == "suspended"  # the client's own suspension shows through
    with pytest.raises(StopIteration) as stopped:
        call.send(reply)  # what the client returns is decoded
    assert stopped.value.value == "sent in"

    call = stub.greet("x")
    with pytest.raises(TypeError, match="non-None"):
        call.send("too early")
    call.close()

    call = stub.greet("x")
    with pytest.raises(KeyError):
        call.throw(KeyError("before it started"))  # raises at once: nothing sent
    sent = len(client.calls)
    call.close()

    call = stub.greet("x")
    assert call.send(None) == "suspended"
    with pytest.raises(KeyError):
        call.throw(KeyError("while it waits"))
    assert client.ended[-1] == "raised KeyError"

    call = stub.greet("x")
    assert call.send(None) == "suspended"
    call.close()
    assert client.ended[-1] == "closed"
    assert len(client.calls) == sent + 2

    metrics = greet_metrics("coroutine")
    # the warm-up, the call sent in, the call thrown into while it waited
    assert (metrics.calls, metrics.errors) == (3, 1)


async def test_a_call_never_awaited_sends_nothing(registry: Registry, speedups: bool) -> None:
    stub, client = await connected_greeter(registry, "never", speedups)
    stub.greet("x").close()
    assert len(client.calls) == 1
    assert greet_metrics("never").calls == 1


async def test_an_awaited_call_cannot_be_awaited_again(registry: Registry, speedups: bool) -> None:
    stub, _ = await connected_greeter(registry, "again", speedups)
    call = stub.greet("x")
    assert await call == "Howdy, ann!"
    with pytest.raises(RuntimeError, match="already awaited"):
        await call


async def test_remote_stubs_in_reference_cycles_are_collected(
    registry: Registry, speedups: bool
) -> None:
    stub, client = await connected_greeter(registry, "cycles", speedups)
    client.suspend_first = 1
    call = stub.greet("x")
    call.send(None)
    holder: list[Any] = [call]
    holder.append(holder)
    del call, holder, stub, client
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o).__name__ == "RemoteCall"]
