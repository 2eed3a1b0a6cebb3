"""Stubs: what ``weaver.get`` hands out, and the handlers that answer remote callers.

A stub has one function per interface method:

* a **local** method awaits the implementation directly and records the built-in method
  metrics (and a span when tracing is on). A local call costs about as much as the
  bookkeeping around it, so the method is the C ``LocalMethod`` when it is built (no
  Python frame: see ``_localcall.c``), else compiled once per method from a template
  with the interface method's exact signature;
* a **remote** method encodes the arguments with the method's codec, sends them through
  the placement's call client (deadline, metadata, trace context and retries are handled
  there) and decodes the in-band result or exception: the C ``RemoteMethod`` when it is
  built (one Python frame fewer on every remote call), else a closure.

:func:`method_handler` is the server side of a remote method: decode, run, encode.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pyweaver._runtime import _metrics, _speedups, _tracing
from pyweaver._runtime._logging import method_failure_logger
from pyweaver._runtime._placement import CallClient, Placement
from pyweaver._runtime._registry import ComponentSpec, MethodSpec
from pyweaver.contract._routing import shard_key

__all__ = ["LOCAL_LATENCY_SAMPLE", "GetImpl", "Handler", "make_stub", "method_handler"]

LOCAL_LATENCY_SAMPLE = 32  # time one local call in this many (see local_method)
# (8 cost ~80 ns a call on average on the 2-core benchmark box: two clock reads at
# ~90 ns each, the timed path's extra frame and the record; 32 leaves ~20 ns.)

#: What inspect reads to take an object for a Python function (``__code__`` says
#: "coroutine function"); the C stub methods copy them from the Python ones.
_FUNCTION_LIKE = (
    "__name__",
    "__module__",
    "__doc__",
    "__code__",
    "__defaults__",
    "__kwdefaults__",
    "__annotations__",
)

Handler = Callable[[bytes], Awaitable[bytes]]
GetImpl = Callable[[str], Awaitable[Any]]


_FAST_PATH_TEMPLATE = """
def factory(bound, metrics, timed_call, failed{default_names}):
    async def {name}({params}):
        countdown = metrics.countdown
        if countdown:
            metrics.countdown = countdown - 1
            try:
                return await bound({args})
            except Exception as exc:
                metrics.errors += 1
                failed(exc)
                raise
        return await timed_call({args})

    def rebind(new_bound):
        nonlocal bound
        bound = new_bound

    def current():
        return bound

    return {name}, rebind, current
"""


def _local_fast_path(
    method: MethodSpec,
    first_call: Callable[..., Awaitable[Any]],
    metrics: _metrics.MethodMetrics,
    timed_call: Callable[..., Awaitable[Any]],
    failed: Callable[[BaseException], None],
) -> tuple[Callable[..., Awaitable[Any]], Callable[[Any], None], Callable[[], Any]]:
    """A local stub method with the interface method's exact signature.

    Local calls cost about as much as the bookkeeping around them, so the wrapper is
    compiled once per method from a template: no ``*args``/``**kwargs`` packing, the
    implementation's bound method in a closure cell (rebound once it is built), and
    the metrics countdown protocol (see ``MethodMetrics``): one call in
    ``LOCAL_LATENCY_SAMPLE`` is timed by ``timed_call``, the others only count down.
    Parameter names come from a validated signature; defaults are passed in as
    values, never as source text.
    """
    params: list[str] = []
    args: list[str] = []
    defaults: dict[str, Any] = {}
    saw_keyword_only = False
    parameters = list(method.signature.parameters.values())[1:]
    for index, param in enumerate(parameters):
        text = param.name
        if param.default is not inspect.Parameter.empty:
            default_name = f"_default_{index}"
            defaults[default_name] = param.default
            text = f"{param.name}={default_name}"
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            if not saw_keyword_only:
                params.append("*")
                saw_keyword_only = True
            args.append(f"{param.name}={param.name}")
        else:
            args.append(param.name)
        params.append(text)
        if param.kind is inspect.Parameter.POSITIONAL_ONLY and (
            index + 1 == len(parameters)
            or parameters[index + 1].kind is not inspect.Parameter.POSITIONAL_ONLY
        ):
            params.append("/")
    source = _FAST_PATH_TEMPLATE.format(
        name=method.name,
        params=", ".join(params),
        args=", ".join(args),
        default_names="".join(f", {d}" for d in defaults),
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<pyweaver local stub {method.full_name}>", "exec"), namespace)
    made: tuple[Callable[..., Awaitable[Any]], Callable[[Any], None], Callable[[], Any]]
    made = namespace["factory"](first_call, metrics, timed_call, failed, *defaults.values())
    made[0].__qualname__ = method.full_name
    return made


class _Stub:
    """A component stub: one attribute per method, set by :meth:`Weavelet._make_stub`."""

    __slots__ = ("__dict__", "_pyweaver_component", "_pyweaver_remote")

    _pyweaver_component: str
    _pyweaver_remote: bool

    def __repr__(self) -> str:
        kind = "remote" if self._pyweaver_remote else "local"
        return f"<{kind} stub of {self._pyweaver_component}>"


# -- stub makers -------------------------------------------------------------------------


def make_stub(
    spec: ComponentSpec,
    requester: str,
    *,
    remote: bool,
    get_impl: GetImpl,
    placement: Placement,
    tracing_hooks: bool = True,
    speedups: bool = True,
) -> Any:
    """The stub ``requester`` uses to call ``spec``'s component: one function per
    method, local (awaiting the implementation ``get_impl`` builds) or remote
    (through ``placement``'s call client).

    ``tracing_hooks=False`` builds the stub without its tracing checks (it never makes
    spans): the yardstick the benchmarks measure "tracing off costs almost nothing"
    against. ``speedups=False`` builds the methods in pure Python even when the C
    ``LocalMethod`` and ``RemoteMethod`` are built (tests and benchmarks compare them).
    Neither is used by the runtime."""
    stub = _Stub()
    stub._pyweaver_component = spec.name
    stub._pyweaver_remote = remote
    for method in spec.methods.values():
        if remote:
            function = remote_method(
                spec, method, requester, placement, tracing_hooks, speedups=speedups
            )
        else:
            function = local_method(
                spec, method, requester, get_impl, tracing_hooks, speedups=speedups
            )
        setattr(stub, method.name, function)
    return stub


def local_method(
    spec: ComponentSpec,
    method: MethodSpec,
    requester: str,
    get_impl: GetImpl,
    tracing_hooks: bool = True,
    *,
    speedups: bool = True,
) -> Callable[..., Awaitable[Any]]:
    """A local stub method: awaits the implementation, records the method metrics
    (the C ``LocalMethod`` if built and ``speedups``, else the template's)."""
    metrics = _metrics.method_metrics(requester, spec.name, method.name, False)
    metrics.sample_every = LOCAL_LATENCY_SAMPLE
    record = metrics.record
    clock = time.perf_counter_ns
    name = method.name
    component = spec.name
    span_name = f"{component}.{name}"
    tracing = _tracing.TRACING
    start_span = _tracing.start_span
    reset_to = LOCAL_LATENCY_SAMPLE - 1

    rebinders: list[Callable[[Any], None]] = []  # who holds the bound method

    async def first_call(*args: Any, **kwargs: Any) -> Any:
        bound = getattr(await get_impl(component), name)
        for rebind in rebinders:
            rebind(bound)
        return await bound(*args, **kwargs)

    async def timed_call(*args: Any, **kwargs: Any) -> Any:
        bound = current()
        # With tracing on, the countdown stays at 0, so every call comes here and
        # gets its span (enable_tracing ends running countdowns).
        if not metrics.countdown and not tracing.on:
            metrics.countdown = reset_to
            metrics.countdown_resets += 1
        start = clock()
        error = False
        try:
            if tracing.on:
                with start_span(span_name):
                    return await bound(*args, **kwargs)
            return await bound(*args, **kwargs)
        except Exception as exc:
            error = True
            failed(exc)
            raise
        finally:  # a cancelled call is a call too (as in the C stubs)
            record(clock() - start, error)

    async def timed_call_without_hooks(*args: Any, **kwargs: Any) -> Any:
        bound = current()
        if not metrics.countdown:
            metrics.countdown = reset_to
            metrics.countdown_resets += 1
        start = clock()
        error = False
        try:
            return await bound(*args, **kwargs)
        except Exception as exc:
            error = True
            failed(exc)
            raise
        finally:
            record(clock() - start, error)

    failed = method_failure_logger(component, name)
    timed = timed_call if tracing_hooks else timed_call_without_hooks
    call, rebind, current = _local_fast_path(method, first_call, metrics, timed, failed)
    rebinders.append(rebind)
    local_method_type = _speedups.LocalMethod
    if local_method_type is None or not speedups:
        return call

    def on_error(exc: BaseException) -> None:
        metrics.errors += 1
        failed(exc)

    # The C method counts down and times calls itself; with tracing on, it hands every
    # call to the template's method (which has the interface's exact signature) for
    # its span.
    fast = local_method_type(
        metrics,
        first_call,
        call,
        on_error,
        record,
        tracing if tracing_hooks else None,
        LOCAL_LATENCY_SAMPLE,
        method.full_name,
    )
    _function_like(fast, call, method)
    rebinders.append(functools.partial(setattr, fast, "bound"))
    return fast


def _function_like(fast: Any, template: Any, method: MethodSpec) -> None:
    """Make a C stub method function-like to inspect (as Cython's functions are):
    iscoroutinefunction() is True, signature() is the interface method's."""
    for attribute in _FUNCTION_LIKE:
        setattr(fast, attribute, getattr(template, attribute))
    fast.__signature__ = _stub_signature(method)


def _stub_signature(method: MethodSpec) -> inspect.Signature:
    """The interface method's signature without ``self``."""
    return method.signature.replace(parameters=list(method.signature.parameters.values())[1:])


def remote_method(
    spec: ComponentSpec,
    method: MethodSpec,
    requester: str,
    placement: Placement,
    tracing_hooks: bool = True,
    *,
    speedups: bool = True,
) -> Callable[..., Awaitable[Any]]:
    """A remote stub method: encodes, calls through the placement's call client,
    decodes, records the method metrics.

    The success path is one closure: no keyword binding unless the caller passed
    keywords, no routing unless the method is routed, one clock read on each side of
    the call and one metrics call (:meth:`MethodMetrics.record_remote`). When the C
    ``RemoteMethod`` is built (and ``speedups``), it runs that path without the
    closure's frame for unrouted methods, and hands the closure the calls it does not
    take (keywords, the first call, tracing on)."""
    metrics = _metrics.method_metrics(requester, spec.name, method.name, True)
    record = metrics.record
    record_remote = metrics.record_remote
    clock = time.perf_counter_ns
    codec = method.codec
    encode_args = codec.encode_args
    decode_result = codec.decode_result
    key = method.key
    retriable = method.retriable
    router = method.router
    signature = method.signature
    component = spec.name
    span_name = f"{component}.{method.name}"
    tracing = _tracing.TRACING
    start_span = _tracing.start_span
    client_kind = _tracing.SpanKind.CLIENT
    client_call: Callable[..., Awaitable[bytes]] | None = None

    fast: Any = None  # the C method, which takes the calls once connected

    async def connect() -> Callable[..., Awaitable[bytes]]:
        nonlocal client_call
        client: CallClient = await placement.client(component)
        client_call = client.call
        if fast is not None:
            fast.send = client_call
        return client_call

    async def call(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            args = signature.bind(None, *args, **kwargs).args[1:]
        send = client_call or await connect()
        routing = shard_key(router(*args)) if router is not None else 0
        payload = encode_args(args)
        start = clock()
        try:
            if tracing.on:
                with start_span(span_name, client_kind):
                    reply = await send(key, payload, retriable=retriable, shard_key=routing)
            else:
                reply = await send(key, payload, retriable=retriable, shard_key=routing)
            result = decode_result(reply)
        except Exception:
            record(clock() - start, True)
            raise
        record_remote(clock() - start, len(payload), len(reply))
        return result

    async def call_without_hooks(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            args = signature.bind(None, *args, **kwargs).args[1:]
        send = client_call or await connect()
        routing = shard_key(router(*args)) if router is not None else 0
        payload = encode_args(args)
        start = clock()
        try:
            reply = await send(key, payload, retriable=retriable, shard_key=routing)
            result = decode_result(reply)
        except Exception:
            record(clock() - start, True)
            raise
        record_remote(clock() - start, len(payload), len(reply))
        return result

    function = call if tracing_hooks else call_without_hooks
    function.__name__ = method.name
    function.__qualname__ = f"{component}.{method.name}"
    function.__signature__ = _stub_signature(method)  # type: ignore[attr-defined]
    remote_method_type = _speedups.RemoteMethod
    if remote_method_type is None or not speedups or router is not None:
        return function
    c_method = remote_method_type(
        function,
        encode_args,
        decode_result,
        record,
        record_remote,
        tracing if tracing_hooks else None,
        key,
        retriable,
        method.full_name,
    )
    _function_like(c_method, function, method)
    fast = c_method
    return c_method


def method_handler(component: str, method: MethodSpec, get_impl: GetImpl) -> Handler:
    """The call-protocol handler that runs ``method`` of the local ``component``."""
    codec = method.codec
    decode_args = codec.decode_args
    encode_result = codec.encode_result
    encode_exception = codec.encode_exception
    name = method.name
    span_name = method.full_name
    tracing = _tracing.TRACING
    start_span = _tracing.start_span
    server_kind = _tracing.SpanKind.SERVER
    failed = method_failure_logger(component, name)
    bound: Callable[..., Awaitable[Any]] | None = None

    async def handle(payload: bytes) -> bytes:
        nonlocal bound
        args = decode_args(payload)
        if bound is None:
            bound = getattr(await get_impl(component), name)
        try:
            if tracing.on:
                with start_span(span_name, server_kind):
                    result = await bound(*args)
            else:
                result = await bound(*args)
        except Exception as exc:
            failed(exc)
            return encode_exception(exc)
        return encode_result(result)

    return handle
