"""The weavelet: the part of pyweaver that runs inside every app process.

A :class:`Weavelet` owns the components its process hosts. It builds each one lazily
and once (fake → construct → config → logger → Refs → listener fields → ``init``),
hands out stubs, and — when the process serves remote callers — dispatches incoming
calls to the implementations.

Where a component runs is not its business: a :class:`Placement` (supplied by the
deployer: single process, weavertest's rpc mode, a multi-process envelope) says whether
a component is local, gives the call client for remote ones, and decides listener
addresses. A stub is therefore local or remote (see :mod:`._stubs`); the caller cannot tell
them apart except by latency.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

import anyio

from pyweaver._errors import RegistrationError
from pyweaver._runtime._component import Instance, Ref, WeaverInfo
from pyweaver._runtime._listener import Listener, ListenerOptions
from pyweaver._runtime._logging import make_logger
from pyweaver._runtime._placement import Placement
from pyweaver._runtime._registry import ComponentSpec, Registry
from pyweaver._runtime._stubs import Handler, make_stub, method_handler
from pyweaver.contract._config import (
    AppConfig,
    check_sections,
    component_config,
)
from pyweaver.contract._names import MAIN

__all__ = ["Weavelet"]

T = TypeVar("T")




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

    # -- stubs and handlers (the code is in _stubs) ----------------------------------

    def _make_stub(self, spec: ComponentSpec, requester: str) -> Any:
        remote = spec.name not in self.fakes and not self.placement.is_local(spec.name)
        return make_stub(
            spec, requester, remote=remote, get_impl=self.get_impl, placement=self.placement
        )

    def handlers(self, components: list[str] | None = None) -> dict[bytes, Handler]:
        """Call-protocol handlers (method key -> handler) for ``components`` (default:
        every component of the app; unbuilt ones are built on their first call)."""
        handlers: dict[bytes, Handler] = {}
        for name in components if components is not None else list(self.registry.specs):
            spec = self.registry.spec(name)
            for method in spec.methods.values():
                handlers[method.key] = method_handler(spec.name, method, self.get_impl)
        return handlers

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
