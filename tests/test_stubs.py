"""The stubs' success paths (issue 8): what a remote stub hands the call client, the
metrics it records in one call, keyword arguments, the cached client, and stubs built
without their tracing hooks (the benchmarks' yardstick)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pyweaver._errors import RemoteCallError
from pyweaver._runtime import _metrics, _tracing
from pyweaver._runtime._listener import Listener, ListenerOptions
from pyweaver._runtime._registry import Registry
from pyweaver._runtime._stubs import make_stub
from pyweaver.call import _metadata

from .components import GreeterImpl

pytestmark = pytest.mark.anyio

GREETER = "tests.components.Greeter"


class RecordingClient:
    """A call client that answers with the implementation's encoded result."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.calls: list[tuple[bytes, bytes, bool, int]] = []
        self.fail_with: BaseException | None = None

    async def call(
        self, method_key: bytes, payload: bytes, *, retriable: bool = True, shard_key: int = 0
    ) -> bytes:
        self.calls.append((method_key, payload, retriable, shard_key))
        if self.fail_with is not None:
            raise self.fail_with
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
    registry: Registry, requester: str, *, hooks: bool = True
) -> tuple[Any, RecordingClient, OnePlacement]:
    spec = registry.spec(GREETER)
    greet = spec.methods["greet"].codec
    client = RecordingClient(greet.encode_result("Howdy, ann!"))
    placement = OnePlacement(client)
    stub = make_stub(
        spec, requester, remote=True, get_impl=_no_impl, placement=placement, tracing_hooks=hooks
    )
    return stub, client, placement


async def _no_impl(component: str) -> Any:
    raise AssertionError("a remote stub never builds the implementation")


@pytest.mark.parametrize("hooks", [True, False])
async def test_remote_stub_sends_the_encoded_arguments_and_decodes_the_reply(
    registry: Registry, hooks: bool
) -> None:
    stub, client, placement = remote_greeter(registry, f"caller-{hooks}", hooks=hooks)
    method = registry.spec(GREETER).methods["greet"]
    assert await stub.greet("ann") == "Howdy, ann!"
    assert await stub.greet(name="bob") == "Howdy, ann!"  # keywords bind like positionals
    assert client.calls == [
        (method.key, method.codec.encode_args(("ann",)), method.retriable, 0),
        (method.key, method.codec.encode_args(("bob",)), method.retriable, 0),
    ]
    assert placement.client_calls == 1  # the client is looked up once, then kept


@pytest.mark.parametrize("hooks", [True, False])
async def test_remote_stub_records_calls_bytes_and_errors(registry: Registry, hooks: bool) -> None:
    stub, client, _ = remote_greeter(registry, f"metrics-{hooks}", hooks=hooks)
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


async def test_remote_stub_passes_metadata_through_to_the_client(registry: Registry) -> None:
    seen: list[dict[str, str]] = []
    stub, client, _ = remote_greeter(registry, "metadata")
    original = client.call

    async def call(method_key: bytes, payload: bytes, **options: Any) -> bytes:
        seen.append(dict(_metadata.current()))
        return await original(method_key, payload, **options)

    client.call = call  # type: ignore[method-assign]
    with _metadata.metadata.set(user="ann"):
        await stub.greet("x")
    assert seen == [{"user": "ann"}]


@pytest.mark.parametrize("remote", [True, False])
async def test_a_stub_without_tracing_hooks_makes_no_spans(
    registry: Registry, remote: bool
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
    with_hooks = make_stub(spec, "hooks", remote=remote, get_impl=get_impl, placement=placement)
    without = make_stub(
        spec, "nohooks", remote=remote, get_impl=get_impl, placement=placement, tracing_hooks=False
    )
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
    assert calls == 1  # metrics still recorded without the hooks
