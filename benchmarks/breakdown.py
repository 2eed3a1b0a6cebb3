"""Where the microseconds of one remote component call go, layer by layer.

    breakdown.py [--backend asyncio|asyncio+uvloop|trio] [--payload 16|65536] [--seconds S]
                 [--no-end-to-end]

Theory of operation (subtracting variants): every layer of the call path is run, in
this process, in a tight loop with the layer under it replaced by a stub that answers
at once, so its cost is what the loop costs minus the stub's. The layers, in the order a
call meets them:

caller:  stub method (argument handling, codec encode args, clock reads, codec decode
         result, metrics record; the C RemoteMethod when it is built, and its codec
         helpers), and, each timed alone from Python for scale (not added up: the C
         stub calls them for less): codec encode args, codec decode result, metrics
         | call client (deadline, metadata, trace lookup, balancer pick)
         | client session + framing (request id, future, request frame, response parse)
callee:  server session + framing + dispatch (request parse, queue, context copy,
         cancel scope, response frame) | handler (codec decode args, the method,
         codec encode result) | one event-loop wake of the dispatcher

With ``--no-end-to-end`` unset, the same run also measures the real thing (``--rounds``
interleaved rounds, medians): the raw protocol's sequential p50 (``remote_pyweaver.py``
over a Unix socket), the component call's (``remote_component.py``: a 2-process
``pyweaver multi deploy``) and the raw protocol's between that deployment's two
processes, all on the same backend. What the CPU layers above do not explain (drivers, syscalls, the kernel's
loopback, waking the other process: twice per call) is printed as the remainder.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anyio
import benchlib

import pyweaver as weaver
from pyweaver._runtime import _metrics
from pyweaver._runtime._registry import Registry
from pyweaver._runtime._stubs import make_stub, method_handler
from pyweaver.call import _backend, _wire
from pyweaver.call._client import Client
from pyweaver.call._session import ClientSession, ServerSession

HERE = os.path.dirname(os.path.abspath(__file__))
BATCHES = 5


class Echo(Protocol):
    async def echo(self, data: bytes) -> bytes: ...


class EchoImpl(weaver.Implements[Echo]):
    async def echo(self, data: bytes) -> bytes:
        return data


async def per_call(fn: Callable[[], Awaitable[Any]], seconds: float) -> float:
    """Median over BATCHES of ns per ``await fn()`` (loop overhead included)."""
    n = 200
    while True:
        start = time.perf_counter_ns()
        for _ in range(n):
            await fn()
        elapsed = time.perf_counter_ns() - start
        if elapsed > 20e6:
            break
        n *= 4
    n = max(200, int(n * seconds / BATCHES * 1e9 / elapsed))
    samples = []
    for _ in range(BATCHES):
        start = time.perf_counter_ns()
        for _ in range(n):
            await fn()
        samples.append((time.perf_counter_ns() - start) / n)
    return statistics.median(samples)


class FakeDriver:
    """A driver that keeps what the session writes."""

    def __init__(self, spawn: Callable[[Callable[[], Any]], None] | None = None) -> None:
        self.written: list[bytes] = []
        self.congested = False
        self._spawn = spawn

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def cork(self) -> None: ...
    def uncork(self) -> None: ...
    def close(self) -> None: ...

    def spawn(self, function: Callable[[], Any]) -> None:
        assert self._spawn is not None
        self._spawn(function)

    async def drained(self) -> None: ...


#: The stub method's parts, each timed alone (printed for scale, not summed).
STUB_PARTS: dict[str, float] = {}


async def layers(payload_size: int, seconds: float) -> dict[str, float]:
    data = benchlib.payload(payload_size)
    registry = Registry()
    spec = registry.spec(Echo)
    method = spec.methods["echo"]
    codec = method.codec
    encoded_args = codec.encode_args((data,))
    encoded_result = codec.encode_result(data)
    impl = EchoImpl()
    backend = _backend.current_backend()
    out: dict[str, float] = {}
    t = seconds / 10

    async def nothing() -> None:
        return None

    base = await per_call(nothing, t)  # an empty await in the loop
    out["loop"] = base

    # ---- caller: the stub over a client that answers at once
    class NullClient:
        async def call(self, key: bytes, payload: bytes, *, retriable: bool = True,
                       shard_key: int = 0) -> bytes:
            return encoded_result

    null_client = NullClient()

    class NullPlacement:
        def is_local(self, component: str) -> bool:
            return False

        async def activate(self, component: str) -> None: ...

        async def client(self, component: str) -> Any:
            return null_client

        async def listener(self, name: str, options: Any) -> Any: ...

    stub = make_stub(spec, "main", remote=True, get_impl=None,  # type: ignore[arg-type]
                     placement=NullPlacement())
    stub_echo = stub.echo
    stub_total = await per_call(lambda: stub_echo(data), t)
    null_call = await per_call(lambda: null_client.call(method.key, encoded_args), t)
    encode_args = codec.encode_args
    decode_result = codec.decode_result
    args = (data,)
    enc = await per_call(lambda: nothing_after(encode_args, args), t) - base
    dec = await per_call(lambda: nothing_after(decode_result, encoded_result), t) - base
    metrics = _metrics.MethodMetrics("a", "b", "c", True)
    clock = time.perf_counter_ns

    record_remote = getattr(metrics, "record_remote", None)

    def record() -> None:
        start = clock()
        if record_remote is not None:  # one call on the success path (since issue 8)
            record_remote(clock() - start, 100, 100)
        else:
            metrics.record(clock() - start, False)
            metrics.record_bytes(100, 100)

    met = await per_call(lambda: nothing_after(record), t) - base
    out["caller: stub method (encode, clock reads, decode, metrics)"] = stub_total - null_call
    STUB_PARTS.update({"codec encode args": enc, "codec decode result": dec,
                       "metrics (2 clock reads, recording)": met})

    # ---- caller: the call client over a session that answers at once
    class NullSession:
        open = True

        async def call(self, key: bytes, deadline_us: int, payload: bytes, trace: Any,
                       metadata: Any, *, expires: float = float("inf")) -> bytes:
            return encoded_result

    null_session = NullSession()
    # As a weavelet's: the default call deadline (multi's call_timeout) applies.
    client = Client(["unix:///nonexistent"], deployment_id="d", fingerprint=b"f", call_timeout=30.0)
    client._ready = ("unix:///nonexistent",)
    client._live = {"unix:///nonexistent": null_session}  # type: ignore[dict-item]
    client._effective_deadline = backend.effective_deadline
    client._clock = backend.clock
    client_call = client.call
    key = method.key
    with_client = await per_call(lambda: client_call(key, encoded_args, retriable=True, shard_key=0), t)
    session_null = await per_call(lambda: null_session.call(key, 0, encoded_args, None, None), t)
    out["caller: call client (deadline, metadata, balancer)"] = with_client - session_null

    # ---- caller: the client session and its framing, answered by hand
    session = ClientSession("e", deployment_id="d", fingerprint=b"f", max_frame=1 << 26,
                            backend=backend)
    driver = FakeDriver()
    session.attach(driver)  # type: ignore[arg-type]
    session._core._state = session._core._state.__class__.OPEN  # handshake skipped
    session.open = True
    header = _wire.HEADER
    response_type = 2

    async def session_call() -> bytes:
        request_id = session._next_id
        coroutine = session.call(key, 0, encoded_args, None, None)
        coroutine.send(None)  # sends the request; waits on its future
        driver.written.clear()
        session.receive(header.pack(request_id, response_type | (len(encoded_result) << 8))
                        + encoded_result)
        try:
            coroutine.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        raise AssertionError("the session call did not finish")

    frame_cost = await per_call(lambda: nothing_after(
        lambda: header.pack(1, response_type | (len(encoded_result) << 8)) + encoded_result), t) - base
    out["caller: client session + framing"] = await per_call(session_call, t) - base - frame_cost

    # ---- callee: the handler (decode args, the method, encode result)
    async def get_impl(name: str) -> Any:
        return impl

    handler = method_handler(spec.name, method, get_impl)
    await handler(encoded_args)
    handler_cost = await per_call(lambda: handler(encoded_args), t) - base
    out["callee: handler (codec decode args + method + codec encode result)"] = handler_cost

    # ---- callee: the server session: parse, dispatch inline, answer (+ one loop wake)
    async with anyio.create_task_group() as group:
        server_driver = FakeDriver(spawn=lambda function: group.start_soon(function))
        server = ServerSession(handlers={key: handler}, deployment_id="d", fingerprint=b"f",
                               max_frame=1 << 26, driver=server_driver,  # type: ignore[arg-type]
                               backend=backend)
        from pyweaver.call._protocol import Connection, Role

        peer = Connection(Role.CLIENT, deployment_id="d", fingerprint=b"f", max_frame=1 << 26)
        server.start()
        server.receive(peer.hello())
        peer.receive_data(server_driver.written[0])
        for _ in range(3):
            await anyio.sleep(0)
        counter = [0]

        async def serve_one() -> None:
            counter[0] += 1
            server.receive(peer.send_request(counter[0], key, 0, encoded_args))
            await anyio.sleep(0)  # the dispatcher runs the request
            assert server_driver.written, "the dispatcher did not answer in one loop iteration"
            peer.receive_data(server_driver.written.pop())

        async def sleep0() -> None:
            await anyio.sleep(0)

        wake = await per_call(sleep0, t) - base
        served = await per_call(serve_one, t) - base
        request_frame = await per_call(lambda: nothing_after(
            lambda: _wire.encode_request(1, key, 0, encoded_args)), t) - base
        server.close()
        group.cancel_scope.cancel()
    out["callee: server session + framing + dispatch"] = served - wake - handler_cost - request_frame
    out["callee: event-loop wake of the dispatcher (sleep(0))"] = wake
    return out


async def nothing_after(fn: Callable[..., Any], *args: Any) -> None:
    fn(*args)


def run_async(backend: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    if backend == "trio":
        return anyio.run(fn, backend="trio")
    return anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": backend == "asyncio+uvloop"})


def end_to_end(backend: str, payload_size: int, seconds: float, rounds: int,
               pin: str = "none") -> dict[str, float]:
    """Sequential p50s on the same backend over a Unix socket, medians of ``rounds``
    interleaved rounds: the raw protocol between two fresh processes; the component
    call in a 2-process ``pyweaver multi deploy``; and the raw protocol between that
    deployment's two processes (the control that cancels what the deployment's
    processes cost by themselves, so component - deployed protocol is what the
    layers above the protocol cost in place)."""
    samples: dict[str, list[float]] = {"protocol p50": [], "component p50": [],
                                       "deployed protocol p50": []}
    shape = f"seq/{payload_size}"
    server_cpu = ["taskset", "-c", "1"] if pin == "cross" else []
    client_cpu = ["taskset", "-c", "0"] if pin == "cross" else []
    for _ in range(rounds):
        server = subprocess.Popen([*server_cpu, sys.executable, os.path.join(HERE, "remote_pyweaver.py"), "--serve",
                                   "--transport", "unix", "--backend", backend],
                                  stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert server.stdout is not None
            endpoint = server.stdout.readline().split(maxsplit=1)[1].strip()
            client = subprocess.run([*client_cpu, sys.executable, os.path.join(HERE, "remote_pyweaver.py"),
                                     "--connect",
                                     endpoint, "--backend", backend, "--mode", "seq", "--payload",
                                     str(payload_size), "--seconds", f"{seconds:g}"],
                                    capture_output=True, text=True, timeout=60 + 3 * seconds)
            samples["protocol p50"].append(json.loads(client.stdout.strip().splitlines()[-1])["p50_us"] * 1000)
        finally:
            server.terminate()
            server.wait(timeout=10)
        component = subprocess.run([sys.executable, os.path.join(HERE, "remote_component.py"), "--backend",
                                    backend, "--seconds", f"{seconds:g}", "--measure", f"{shape},{shape}@raw",
                                    "--pin", pin],
                                   capture_output=True, text=True, timeout=120 + 10 * seconds)
        found = json.loads(component.stdout.strip().splitlines()[-1])["measurements"]
        samples["component p50"].append(found[shape]["p50_us"] * 1000)
        samples["deployed protocol p50"].append(found[f"{shape}@raw"]["p50_us"] * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["asyncio", "asyncio+uvloop", "trio"], default="asyncio+uvloop")
    parser.add_argument("--payload", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the end-to-end p50s")
    parser.add_argument("--pin", choices=["none", "cross"], default="none",
                        help="cross: this process and clients on CPU 0, servers (Echo) on CPU 1")
    parser.add_argument("--no-end-to-end", action="store_true")
    args = parser.parse_args()
    if args.pin == "cross":
        os.sched_setaffinity(0, {0})
    measured = run_async(args.backend, lambda: layers(args.payload, args.seconds))
    loop_ns = measured.pop("loop")
    total_cpu = sum(measured.values())
    rows = [(name, ns) for name, ns in measured.items()]
    e2e = {} if args.no_end_to_end else end_to_end(args.backend, args.payload, args.seconds, args.rounds, args.pin)
    print(f"Per-layer cost of one remote component call: backend {args.backend}, pin {args.pin}, "
          f"{args.payload}-byte payload, ns (median of {BATCHES} batches; loop cost {loop_ns:.0f} ns "
          f"subtracted; load average {os.getloadavg()[0]:.2f})")
    width = max(len(name) for name, _ in rows) + 2
    for name, ns in rows:
        print(f"  {name:<{width}} {ns / 1000:8.2f} us")
        if name.startswith("caller: stub method"):
            for part, part_ns in STUB_PARTS.items():
                print(f"  {'  alone, for scale: ' + part:<{width}} {part_ns / 1000:8.2f} us")
    print(f"  {'sum of the CPU layers above':<{width}} {total_cpu / 1000:8.2f} us")
    if e2e:
        proto, comp, deployed = e2e["protocol p50"], e2e["component p50"], e2e["deployed protocol p50"]
        print(f"End to end, seq p50, medians of {args.rounds} interleaved rounds:")
        print(f"  {'raw protocol (two fresh processes, Unix socket)':<{width}} {proto / 1000:8.2f} us")
        print(f"  {'raw protocol between the two deployed processes':<{width}} {deployed / 1000:8.2f} us")
        print(f"  {'component call (2-process multi deploy)':<{width}} {comp / 1000:8.2f} us")
        print(f"  {'component - protocol':<{width}} {(comp - proto) / 1000:8.2f} us")
        print(f"  {'component - deployed protocol (the layers, in place)':<{width}} "
              f"{(comp - deployed) / 1000:8.2f} us")
        print(f"  {'remainder: drivers, syscalls, wake-ups (p50 - CPU layers)':<{width}} "
              f"{(comp - total_cpu) / 1000:8.2f} us")
    print(json.dumps({"backend": args.backend, "payload": args.payload, "layers_ns": measured,
                      "stub_parts_ns": STUB_PARTS, "end_to_end_ns": e2e, "loadavg": os.getloadavg()}))


if __name__ == "__main__":
    main()
