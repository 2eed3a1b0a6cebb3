"""The weavelet: the part of pyweaver that runs inside every app process.

A :class:`Weavelet` owns the components its process hosts. It builds each one lazily
and once (fake → construct → config → logger → Refs → listener fields → ``init``),
hands out stubs, and — when the process serves remote callers — dispatches incoming
calls to the implementations.

Where a component runs is not its business: a :class:`Placement` (supplied by the
deployer: single process, weavertest's rpc mode, a multi-process envelope) says whether
a component is local, gives the call client for remote ones, and decides listener
addresses. A stub is therefore either

* a **local stub**: a closure per method that awaits the implementation directly and
  records the built-in method metrics (and a span when tracing is on), or
* a **remote stub**: a closure per method that encodes the arguments with the method's
  codec, sends them through the call client (deadline, metadata, trace context and
  retries are handled there) and decodes the in-band result or exception.

The caller cannot tell them apart except by latency.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import anyio
import sniffio

from pyweaver._errors import PyWeaverError, RegistrationError
from pyweaver._runtime import _metrics, _tracing
from pyweaver._runtime._component import Instance, Ref, WeaverInfo, full_name
from pyweaver._runtime._listener import Listener, ListenerOptions, bind_listener
from pyweaver._runtime._logging import configure_logging, make_logger
from pyweaver._runtime._registry import ComponentSpec, MethodSpec, Registry
from pyweaver.contract._config import (
    AppConfig,
    check_sections,
    component_config,
    load_config,
    parse_config,
)
from pyweaver.contract._names import BOOTSTRAP_ENV, CONFIG_ENV, MAIN
from pyweaver.contract._routing import shard_key

__all__ = [
    "MAIN",
    "CallClient",
    "Placement",
    "SinglePlacement",
    "Weavelet",
    "get",
    "init",
]

T = TypeVar("T")

LOCAL_LATENCY_SAMPLE = 8  # time one local call in this many (see _local_method)

Handler = Callable[[bytes], Awaitable[bytes]]


class CallClient(Protocol):
    """What a remote stub needs from the call protocol's client."""

    async def call(
        self, method_key: bytes, payload: bytes, *, retriable: bool = True, shard_key: int = 0
    ) -> bytes: ...


class Placement(Protocol):
    """The deployer's side of a weavelet: where components run and listeners bind."""

    def is_local(self, component: str) -> bool:
        """Whether ``component`` is hosted in this process (local calls)."""
        ...

    async def activate(self, component: str) -> None:
        """Tell the deployer ``component`` is needed (it may start its group)."""
        ...

    async def client(self, component: str) -> CallClient:
        """The call client that reaches the replicas of a remote ``component``."""
        ...

    async def listener(self, name: str, options: ListenerOptions | None) -> Listener:
        """Bind the listener ``name`` (and export it, e.g. to a proxy)."""
        ...


class SinglePlacement:
    """Everything in this process; listeners bound as ``[single]`` says."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config

    def is_local(self, component: str) -> bool:
        return True

    async def activate(self, component: str) -> None:
        return None

    async def client(self, component: str) -> CallClient:  # pragma: no cover - all local
        raise AssertionError(f"single-process placement has no remote component {component}")

    async def listener(self, name: str, options: ListenerOptions | None) -> Listener:
        configured = self.config.single.listeners.get(name)
        address = (
            configured if configured is not None else (options or ListenerOptions()).local_address
        )
        return bind_listener(name, address)


_FAST_PATH_TEMPLATE = """
def factory(bound, metrics, timed_call{default_names}):
    async def {name}({params}):
        countdown = metrics.countdown
        if countdown:
            metrics.countdown = countdown - 1
            try:
                return await bound({args})
            except Exception:
                metrics.errors += 1
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
    made = namespace["factory"](first_call, metrics, timed_call, *defaults.values())
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


class Weavelet:
    """The components of one process (see the module docstring).

    Args:
        registry: the validated app.
        config: the app's weaver.toml.
        placement: where components run (the deployer's decision).
        fakes: component full name -> object used instead of building the component.
        deployment_id, replica_id, group: identity, shown in logs and ``weaver_info``.
    """

    def __init__(
        self,
        registry: Registry,
        config: AppConfig,
        placement: Placement,
        *,
        fakes: Mapping[str, object] | None = None,
        deployment_id: str = "",
        replica_id: str = "",
        group: str = "",
    ) -> None:
        registry.raise_errors()
        check_sections(config, {name: spec.config_type for name, spec in registry.specs.items()})
        self.registry = registry
        self.config = config
        self.placement = placement
        self.fakes = dict(fakes or {})
        self.deployment_id = deployment_id or uuid.uuid4().hex
        self.replica_id = replica_id or uuid.uuid4().hex[:8]
        self.group = group
        self._impls: dict[str, Any] = {}
        self._building: dict[str, anyio.Event] = {}
        self._failed: dict[str, BaseException] = {}
        self._built_order: list[str] = []
        self._stubs: dict[tuple[str, str], Any] = {}
        self._listeners: list[Listener] = []
        self._main: Instance | None = None

    # -- the main instance -------------------------------------------------------------

    def main_instance(self) -> Instance:
        if self._main is None:
            main = Instance()
            self._fill_identity(main, MAIN)
            self._main = main
        return self._main

    # -- getting components ------------------------------------------------------------

    async def get(self, iface: type[T], requester: str = MAIN) -> T:
        """The stub of ``iface`` for ``requester``; builds the component if local."""
        spec = self.registry.spec(iface)
        await self.placement.activate(spec.name)
        if spec.name in self.fakes or self.placement.is_local(spec.name):
            await self.get_impl(spec.name)
        stub: T = self.stub(spec.name, requester)
        return stub

    def stub(self, component: str, requester: str) -> Any:
        """The stub of ``component`` for ``requester``, without building anything."""
        key = (requester, component)
        stub = self._stubs.get(key)
        if stub is None:
            stub = self._stubs[key] = self._make_stub(self.registry.spec(component), requester)
        return stub

    async def get_impl(self, component: str) -> Any:
        """The implementation of ``component`` in this process, built once."""
        impl = self._impls.get(component)
        if impl is not None:
            return impl
        if component in self._failed:
            raise self._failed[component]
        building = self._building.get(component)
        if building is not None:
            await building.wait()
            return await self.get_impl(component)
        self._building[component] = anyio.Event()
        try:
            impl = await self._build(component)
        except BaseException as exc:
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                self._failed[component] = exc
            raise
        finally:
            self._building.pop(component).set()
        self._impls[component] = impl
        self._built_order.append(component)
        return impl

    def built(self, component: str) -> bool:
        return component in self._impls

    async def _build(self, component: str) -> Any:
        if component in self.fakes:
            return self.fakes[component]
        spec = self.registry.spec(component)
        cls: Any = spec.impl
        impl = cls.__new__(cls)
        if spec.config_type is not None:
            impl.config = component_config(
                spec.config_type,
                self.config.sections.get(component),
                file=str(self.config.path or "<config>"),
                section_name=component,
            )
        self._fill_identity(impl, component)
        for attr, target in spec.refs.items():
            setattr(impl, attr, Ref(self.stub(target, component)))
        if cls.__init__ is not object.__init__:  # an implementation's own no-argument __init__
            impl.__init__()
        for name in spec.listeners:
            setattr(impl, name, await self.listener(component, name, None))
        hook = getattr(impl, "init", None)
        if hook is not None and inspect.iscoroutinefunction(hook):
            try:
                await hook()
            except Exception as exc:
                impl.logger.error("init failed", err=exc)
                raise
        return impl

    def _fill_identity(self, obj: Instance, component: str) -> None:
        obj._pyweaver_weavelet = self
        obj._pyweaver_name = component
        obj.logger = make_logger(
            component,
            replica=self.replica_id,
            group=self.group,
            app=self.config.name,
            deployment=self.deployment_id,
        )
        obj.weaver_info = WeaverInfo(self.deployment_id, self.replica_id, self.group)

    async def listener(
        self, component: str, name: str, options: ListenerOptions | None
    ) -> Listener:
        if not name.isidentifier():
            raise RegistrationError(
                f"{component}: listener name {name!r} is not a valid identifier"
            )
        listener = await self.placement.listener(name, options)
        self._listeners.append(listener)
        return listener

    # -- stubs -------------------------------------------------------------------------

    def _make_stub(self, spec: ComponentSpec, requester: str) -> Any:
        stub = _Stub()
        remote = spec.name not in self.fakes and not self.placement.is_local(spec.name)
        stub._pyweaver_component = spec.name
        stub._pyweaver_remote = remote
        for method in spec.methods.values():
            if remote:
                function = self._remote_method(spec, method, requester)
            else:
                function = self._local_method(spec, method, requester)
            setattr(stub, method.name, function)
        return stub

    def _local_method(
        self, spec: ComponentSpec, method: MethodSpec, requester: str
    ) -> Callable[..., Awaitable[Any]]:
        metrics = _metrics.method_metrics(requester, spec.name, method.name, False)
        metrics.sample_every = LOCAL_LATENCY_SAMPLE
        record = metrics.record
        clock = time.perf_counter_ns
        name = method.name
        component = spec.name
        get_impl = self.get_impl
        span_name = f"{component}.{name}"
        tracing = _tracing.TRACING
        start_span = _tracing.start_span
        reset_to = LOCAL_LATENCY_SAMPLE - 1

        async def first_call(*args: Any, **kwargs: Any) -> Any:
            bound = getattr(await get_impl(component), name)
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
            try:
                if tracing.on:
                    with start_span(span_name):
                        result = await bound(*args, **kwargs)
                else:
                    result = await bound(*args, **kwargs)
            except Exception:
                record(clock() - start, True)
                raise
            record(clock() - start, False)
            return result

        call, rebind, current = _local_fast_path(method, first_call, metrics, timed_call)
        return call

    def _remote_method(
        self, spec: ComponentSpec, method: MethodSpec, requester: str
    ) -> Callable[..., Awaitable[Any]]:
        metrics = _metrics.method_metrics(requester, spec.name, method.name, True)
        record = metrics.record
        record_bytes = metrics.record_bytes
        clock = time.perf_counter_ns
        codec = method.codec
        encode_args = codec.encode_args
        decode_result = codec.decode_result
        key = method.key
        retriable = method.retriable
        router = method.router
        signature = method.signature
        placement = self.placement
        component = spec.name
        span_name = f"{component}.{method.name}"
        tracing = _tracing.TRACING
        start_span = _tracing.start_span
        client_kind = _tracing.SpanKind.CLIENT
        client: CallClient | None = None

        async def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal client
            if kwargs:
                args = signature.bind(None, *args, **kwargs).args[1:]
            if client is None:
                client = await placement.client(component)
            routing = shard_key(router(*args)) if router is not None else 0
            payload = encode_args(args)
            start = clock()
            try:
                if tracing.on:
                    with start_span(span_name, client_kind):
                        reply = await client.call(
                            key, payload, retriable=retriable, shard_key=routing
                        )
                else:
                    reply = await client.call(key, payload, retriable=retriable, shard_key=routing)
                result = decode_result(reply)
            except Exception:
                record(clock() - start, True)
                raise
            record(clock() - start, False)
            record_bytes(len(payload), len(reply))
            return result

        call.__name__ = method.name
        call.__qualname__ = f"{component}.{method.name}"
        return call

    # -- serving remote callers --------------------------------------------------------

    def handlers(self, components: list[str] | None = None) -> dict[bytes, Handler]:
        """Call-protocol handlers (method key -> handler) for ``components`` (default:
        every component of the app; unbuilt ones are built on their first call)."""
        handlers: dict[bytes, Handler] = {}
        for name in components if components is not None else list(self.registry.specs):
            spec = self.registry.spec(name)
            for method in spec.methods.values():
                handlers[method.key] = self._handler(spec.name, method)
        return handlers

    def _handler(self, component: str, method: MethodSpec) -> Handler:
        codec = method.codec
        decode_args = codec.decode_args
        encode_result = codec.encode_result
        encode_exception = codec.encode_exception
        get_impl = self.get_impl
        name = method.name
        span_name = method.full_name
        tracing = _tracing.TRACING
        start_span = _tracing.start_span
        server_kind = _tracing.SpanKind.SERVER
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
                return encode_exception(exc)
            return encode_result(result)

        return handle

    # -- stopping ----------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Run ``shutdown`` hooks of built components (reverse build order), close
        listeners. Errors are logged, not raised: every hook gets its turn."""
        with anyio.CancelScope(shield=True):
            for name in reversed(self._built_order):
                impl = self._impls.get(name)
                hook = getattr(impl, "shutdown", None)
                if impl is None or name in self.fakes or not inspect.iscoroutinefunction(hook):
                    continue
                try:
                    await hook()
                except Exception as exc:
                    impl.logger.error("shutdown failed", err=exc)
            for listener in self._listeners:
                try:
                    await listener.aclose()
                except OSError:
                    pass
            self._listeners.clear()


# -- weaver.init / weaver.get ----------------------------------------------------------

_process_weavelet: Weavelet | None = None
_lifecycle: AsyncGenerator[None, None] | None = None


def default_config() -> AppConfig:
    path = os.environ.get(CONFIG_ENV)
    if path:
        return load_config(path)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None) or "app"
    name = os.path.basename(main_file).removesuffix(".py")
    return parse_config(f'[serviceweaver]\nname = "{name}"\n', path="<defaults>")


async def init() -> Instance:
    """Start this process's part of the app (see ``weaver.init`` in the docs)."""
    global _process_weavelet, _lifecycle
    if os.environ.get(BOOTSTRAP_ENV):
        from pyweaver._runtime._remote import run_weavelet

        return await run_weavelet()
    if _process_weavelet is not None:
        return _process_weavelet.main_instance()
    config = default_config()
    configure_logging()
    weavelet = Weavelet(Registry(), config, SinglePlacement(config), replica_id="0")
    _process_weavelet = weavelet
    _lifecycle = _shutdown_on_exit(weavelet)
    await _lifecycle.__anext__()
    _route_sigterm_like_sigint()
    return weavelet.main_instance()


async def _shutdown_on_exit(weavelet: Weavelet) -> AsyncGenerator[None, None]:
    """Runs the shutdown hooks when the event loop finishes.

    Both asyncio and trio finalize the async generators still alive when ``run()``
    ends — after main returned, raised, or was interrupted by SIGINT/SIGTERM — so the
    hooks run in the app's own event loop without a background task.
    """
    global _process_weavelet
    try:
        yield
    finally:
        await weavelet.shutdown()
        _process_weavelet = None


def _route_sigterm_like_sigint() -> None:
    """Make SIGTERM stop the app the way Ctrl-C does: the event loop's own SIGINT
    handler cancels main, so ``shutdown`` hooks run as it unwinds. The process then
    ends as killed by SIGTERM (status 143 in a shell), without a KeyboardInterrupt
    traceback: being stopped is expected, not an error."""
    try:
        handler = signal.getsignal(signal.SIGINT)
    except ValueError:  # pragma: no cover - not the main thread
        return
    if not callable(handler) or getattr(handler, "_pyweaver_sigterm", False):
        return
    trio = sniffio.current_async_library() == "trio"

    def on_sigterm(signum: int, frame: Any) -> None:
        global _terminated
        _terminated = True
        # (trio's handler insists on being called for SIGINT.)
        handler(signal.SIGINT if trio else signum, frame)

    on_sigterm._pyweaver_sigterm = True  # type: ignore[attr-defined]
    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # pragma: no cover - not the main thread
        return
    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if _terminated and issubclass(kind, KeyboardInterrupt):
            atexit.register(_die_by_sigterm)
            return
        previous_hook(kind, value, tb)

    sys.excepthook = excepthook


_terminated = False


def _die_by_sigterm() -> None:
    """At exit, after SIGTERM unwound main: end the process by that signal."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


async def get(iface: type[T], requester: Instance) -> T:
    """The component ``iface`` as seen from ``requester`` (records the call edge)."""
    weavelet = getattr(requester, "_pyweaver_weavelet", None)
    if weavelet is None:
        raise PyWeaverError(
            f"weaver.get({full_name(iface)}, ...): the requester {requester!r} is not a "
            "component or the Instance returned by weaver.init()"
        )
    result: T = await weavelet.get(iface, requester._pyweaver_name)
    return result
