"""What ``weaver generate`` checks in Go, done by introspection.

:class:`Registry` turns the registered implementation classes into
:class:`ComponentSpec` records — methods with their parameter and result types,
per-method codecs, method keys, retriability, Ref edges, listeners, config and router
types — and collects every problem it finds as a readable message naming the
component, method, parameter or type at fault. The runtime refuses to start an app
with problems; ``pyweaver check`` prints them all.
"""

from __future__ import annotations

import hashlib
import inspect
import keyword
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, get_args, get_origin, get_type_hints

import attrs

from pyweaver._errors import RegistrationError
from pyweaver._runtime._codec import Codec, MethodCodec
from pyweaver._runtime._component import (
    NOT_RETRIABLE_ATTR,
    Implements,
    Ref,
    WithConfig,
    WithRouter,
    full_name,
    generic_argument,
    implementations,
)
from pyweaver._runtime._listener import Listener
from pyweaver.call import method_key

__all__ = ["ComponentSpec", "MethodSpec", "Registry"]

_ROUTER_KEY_TYPES = (int, float, str)
# Base classes whose own annotations (Instance's runtime slots) are not app fields.
_OWN_MODULES = frozenset({"pyweaver._runtime._component", "typing", "builtins"})


@attrs.frozen(kw_only=True)
class MethodSpec:
    component: str
    name: str
    params: tuple[tuple[str, Any], ...]
    result: Any
    retriable: bool
    key: bytes
    signature: inspect.Signature
    codec: MethodCodec
    router: Callable[..., Any] | None = None

    @property
    def full_name(self) -> str:
        return f"{self.component}.{self.name}"


@attrs.frozen(kw_only=True)
class ComponentSpec:
    name: str
    iface: type[Any]
    impl: type[Any]
    methods: Mapping[str, MethodSpec]
    refs: Mapping[str, str]  # attribute name -> target component full name
    listeners: tuple[str, ...]  # declared `name: weaver.Listener` fields
    config_type: type[Any] | None
    router_type: type[Any] | None


def interface_methods(iface: type[Any]) -> dict[str, Any]:
    """The public methods an interface declares, in definition order, bases first."""
    methods: dict[str, Any] = {}
    for klass in reversed(iface.__mro__):
        if klass in (object, typing.Generic) or getattr(klass, "__module__", "") == "typing":
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or not callable(value):
                continue
            methods[name] = value
    return methods


class Registry:
    """The validated component graph of one app.

    Args:
        impls: interface full name -> implementation class (default: every class
            registered by subclassing ``Implements``).
        codec: the codec that builds per-method codecs and judges types.
    """

    def __init__(
        self, impls: Mapping[str, type[Any]] | None = None, codec: Codec | None = None
    ) -> None:
        self.codec = codec or Codec()
        self.impls = dict(implementations() if impls is None else impls)
        self.errors: list[str] = []
        self.specs: dict[str, ComponentSpec] = {}
        listener_owner: dict[str, str] = {}
        for name, impl in sorted(self.impls.items()):
            spec = self._build(name, impl)
            if spec is None:
                continue
            self.specs[name] = spec
            for listener in spec.listeners:
                if listener in listener_owner:
                    self.errors.append(
                        f"listener {listener!r} is declared by both {listener_owner[listener]}"
                        f" and {name}; listener names are unique in an app"
                    )
                listener_owner[listener] = name
        for spec in self.specs.values():
            for attr, target in spec.refs.items():
                if target not in self.impls:
                    self.errors.append(
                        f"{spec.name} field {attr!r}: Ref[{target}] refers to a component "
                        f"with no implementation (subclass weaver.Implements[{target}])"
                    )
        self.listeners = listener_owner

    # -- queries ---------------------------------------------------------------------

    def raise_errors(self) -> None:
        if self.errors:
            lines = "\n  - ".join(self.errors)
            raise RegistrationError(f"the app has {len(self.errors)} error(s):\n  - {lines}")

    def spec(self, iface_or_name: type[Any] | str) -> ComponentSpec:
        name = iface_or_name if isinstance(iface_or_name, str) else full_name(iface_or_name)
        spec = self.specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self.specs)) or "none"
            raise RegistrationError(
                f"unknown component {name}: no class subclasses weaver.Implements[{name}] "
                f"(known components: {known})"
            )
        return spec

    def edges(self) -> list[tuple[str, str]]:
        """Ref edges of the call graph, (caller, callee), sorted."""
        return sorted(
            (spec.name, target) for spec in self.specs.values() for target in spec.refs.values()
        )

    def cycles(self) -> list[list[str]]:
        """Every elementary Ref cycle, each listed from its smallest name."""
        graph: dict[str, list[str]] = {}
        for caller, callee in self.edges():
            graph.setdefault(caller, []).append(callee)
        found: set[tuple[str, ...]] = set()

        def walk(start: str, node: str, path: list[str]) -> None:
            for nxt in graph.get(node, ()):
                if nxt == start:
                    found.add(tuple(path))
                elif nxt not in path and nxt > start:
                    walk(start, nxt, [*path, nxt])

        for start in sorted(graph):
            walk(start, start, [start])
        return [list(cycle) for cycle in sorted(found)]

    def fingerprint(self) -> bytes:
        """A digest of every component's method signatures: two processes of one
        deployment must agree on it before they exchange calls.

        Built from the codecs' schemas, which spell types by full name (``app.Shape``
        whether ``app.py`` runs as ``__main__`` or is imported) and spell out the
        fields of every class, so any change to what travels changes the digest.
        """
        digest = hashlib.sha256()
        for name in sorted(self.specs):
            for method in self.specs[name].methods.values():
                retriable = "" if method.retriable else " not-retriable"
                line = f"{method.full_name}{method.codec.schema}{retriable};"
                digest.update(line.encode())
        return digest.digest()[:16]

    # -- building --------------------------------------------------------------------

    def _build(self, name: str, impl: type[Any]) -> ComponentSpec | None:
        iface = generic_argument(impl, Implements)
        if iface is None:  # pragma: no cover - Implements only registers with an argument
            return None
        errors_before = len(self.errors)
        self._check_lifecycle(impl)
        methods = self._methods(name, iface, impl)
        refs, listeners = self._fields(name, impl)
        config_type = self._config_type(name, impl)
        router_type = generic_argument(impl, WithRouter)
        if router_type is not None:
            self._attach_routers(name, router_type, methods)
        if len(self.errors) > errors_before:
            return None
        return ComponentSpec(
            name=name,
            iface=iface,
            impl=impl,
            methods=methods,
            refs=refs,
            listeners=tuple(listeners),
            config_type=config_type,
            router_type=router_type,
        )

    def _check_lifecycle(self, impl: type[Any]) -> None:
        """``init``/``shutdown`` hooks are ``async def`` with no parameters, and an own
        ``__init__`` takes none: pyweaver constructs components itself."""
        for hook_name in ("init", "shutdown"):
            hook = getattr(impl, hook_name, None)
            if hook is None:
                continue
            where = f"{full_name(impl)}.{hook_name}"
            if not inspect.iscoroutinefunction(hook):
                self.errors.append(
                    f"{where}: lifecycle hooks must be 'async def' (it would not run)"
                )
            elif _required_parameters(hook):
                self.errors.append(f"{where}: lifecycle hooks take no parameters besides self")
        if impl.__init__ is not object.__init__ and _required_parameters(impl.__init__):
            self.errors.append(
                f"{full_name(impl)}.__init__: must take no parameters besides self "
                "(pyweaver constructs components; use init() and WithConfig instead)"
            )

    def _methods(self, component: str, iface: type[Any], impl: type[Any]) -> dict[str, MethodSpec]:
        declared = interface_methods(iface)
        if not declared:
            self.errors.append(f"component {component} declares no methods")
        methods: dict[str, MethodSpec] = {}
        for method_name, func in declared.items():
            where = f"{component}.{method_name}"
            if not inspect.iscoroutinefunction(func):
                self.errors.append(f"{where}: component methods must be 'async def'")
                continue
            spec = self._method(component, method_name, func, where)
            implementation = getattr(impl, method_name, None)
            if implementation is None or implementation is func:
                self.errors.append(
                    f"{full_name(impl)} does not implement {where} (it implements {component})"
                )
                continue
            if not inspect.iscoroutinefunction(implementation):
                self.errors.append(f"{full_name(impl)}.{method_name}: must be 'async def'")
                continue
            if spec is not None:
                impl_params = list(inspect.signature(implementation).parameters)[1:]
                if impl_params != [p for p, _ in spec.params]:
                    self.errors.append(
                        f"{full_name(impl)}.{method_name}: parameters {impl_params} do not "
                        f"match the interface's {[p for p, _ in spec.params]}"
                    )
                methods[method_name] = spec
        return methods

    def _method(self, component: str, method_name: str, func: Any, where: str) -> MethodSpec | None:
        try:
            hints = get_type_hints(func)
        except Exception as exc:
            self.errors.append(f"{where}: cannot resolve type annotations: {exc}")
            return None
        signature = inspect.signature(func)
        params: list[tuple[str, Any]] = []
        ok = True
        for index, (param_name, param) in enumerate(signature.parameters.items()):
            if index == 0:
                continue  # self
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                self.errors.append(f"{where}: *args and **kwargs are not allowed ({param_name!r})")
                ok = False
                continue
            if param_name not in hints:
                self.errors.append(f"{where}: parameter {param_name!r} has no type annotation")
                ok = False
                continue
            if not self._check_type(hints[param_name], f"{where} parameter {param_name!r}"):
                ok = False
            params.append((param_name, hints[param_name]))
        if "return" not in hints:
            self.errors.append(f"{where}: the return type is not annotated (use '-> None')")
            return None
        result = hints["return"]
        if not self._check_type(result, f"{where} return type") or not ok:
            return None
        try:
            codec = self.codec.method_codec(
                [tp for _, tp in params], result, where, arg_names=[name for name, _ in params]
            )
        except RegistrationError as exc:
            self.errors.append(str(exc))
            return None
        return MethodSpec(
            component=component,
            name=method_name,
            params=tuple(params),
            result=result,
            retriable=not getattr(func, NOT_RETRIABLE_ATTR, False),
            key=method_key(component, method_name),
            signature=signature,
            codec=codec,
        )

    def _check_type(self, tp: Any, where: str) -> bool:
        try:
            self.codec.check_type(tp, where)
        except RegistrationError as exc:
            self.errors.append(str(exc))
            return False
        return True

    def _fields(self, component: str, impl: type[Any]) -> tuple[dict[str, str], list[str]]:
        refs: dict[str, str] = {}
        listeners: list[str] = []
        hints: dict[str, Any] = {}
        try:
            for klass in reversed(impl.__mro__):
                if klass.__module__ in _OWN_MODULES or klass is object:
                    continue
                hints.update(inspect.get_annotations(klass, eval_str=True))
        except Exception as exc:
            self.errors.append(f"{full_name(impl)}: cannot resolve field annotations: {exc}")
            return refs, listeners
        for attr, hint in hints.items():
            if get_origin(hint) is Ref:
                (target,) = get_args(hint) or (None,)
                if not isinstance(target, type):
                    self.errors.append(
                        f"{full_name(impl)} field {attr!r}: Ref needs a component interface, "
                        f"got {target!r}"
                    )
                    continue
                refs[attr] = full_name(target)
            elif hint is Listener:
                if not attr.isidentifier() or keyword.iskeyword(attr) or attr.startswith("_"):
                    self.errors.append(
                        f"{full_name(impl)} listener {attr!r}: listener names are identifiers "
                        "that do not start with '_'"
                    )
                    continue
                listeners.append(attr)
        return refs, listeners

    def _config_type(self, component: str, impl: type[Any]) -> type[Any] | None:
        config_type = generic_argument(impl, WithConfig)
        if config_type is None:
            return None
        if not (isinstance(config_type, type) and attrs.has(config_type)):
            self.errors.append(
                f"{component}: WithConfig[{config_type!r}] needs an attrs class "
                "(decorate it with @attrs.define or @attrs.frozen)"
            )
            return None
        return config_type

    def _attach_routers(
        self, component: str, router_type: Any, methods: dict[str, MethodSpec]
    ) -> None:
        where = f"{component} router {getattr(router_type, '__qualname__', router_type)!r}"
        if not isinstance(router_type, type):
            self.errors.append(f"{where}: WithRouter needs a class")
            return
        key_types: dict[str, Any] = {}  # router method name -> its key type
        router_methods = {
            name: func
            for name, func in vars(router_type).items()
            if not name.startswith("_") and callable(func)
        }
        if not router_methods:
            self.errors.append(f"{where}: the router has no methods")
        router = router_type()
        for name, func in router_methods.items():
            if inspect.iscoroutinefunction(func):
                self.errors.append(f"{where}.{name}: router methods are plain 'def', not async")
                continue
            method = methods.get(name)
            if method is None:
                self.errors.append(f"{where}.{name}: {component} has no method {name!r} to route")
                continue
            try:
                hints = get_type_hints(func)
            except Exception as exc:
                self.errors.append(f"{where}.{name}: cannot resolve annotations: {exc}")
                continue
            params = [(p, hints.get(p)) for p in list(inspect.signature(func).parameters)[1:]]
            if params != list(method.params):
                self.errors.append(
                    f"{where}.{name}: parameters {_show_params(params)} must be the same as "
                    f"{method.full_name}'s {_show_params(method.params)}"
                )
                continue
            key_type = hints.get("return")
            if not _valid_router_key(key_type):
                self.errors.append(
                    f"{where}.{name}: routing key type {key_type!r} must be int, float, str or "
                    "an attrs class whose fields are int, float or str"
                )
                continue
            key_types[name] = key_type
            methods[name] = attrs.evolve(method, router=getattr(router, name))
        if len(set(key_types.values())) > 1:
            shown = ", ".join(
                f"{getattr(key_type, '__name__', repr(key_type))} from {name}"
                for name, key_type in key_types.items()
            )
            self.errors.append(f"{where}: every method must return one key type; got {shown}")


def _required_parameters(function: Any) -> list[str]:
    """Parameters after ``self`` that have no default (and are not *args/**kwargs)."""
    parameters = list(inspect.signature(function).parameters.values())[1:]
    return [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _show_params(params: Iterable[tuple[str, Any]]) -> str:
    return "(" + ", ".join(f"{n}: {getattr(t, '__name__', t)}" for n, t in params) + ")"


def _valid_router_key(key_type: Any) -> bool:
    if key_type in _ROUTER_KEY_TYPES:
        return True
    if isinstance(key_type, type) and attrs.has(key_type):
        hints = get_type_hints(key_type)
        return all(hints.get(f.name) in _ROUTER_KEY_TYPES for f in attrs.fields(key_type))
    return False
