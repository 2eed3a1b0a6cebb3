"""What can cross the wire, and why not: from a type annotation to its shape.

:class:`Shapes` (one per :class:`~._codec.Codec`) judges each annotation once: it strips
what does not change the wire form (``Annotated``, ``NewType``, ``type`` aliases), builds
the :class:`~._shapes.Shape` that encodes the type (recursing into containers, unions and
the fields of AutoMarshal classes) and caches it. A type that cannot cross is an
:class:`~._errors._Unsupported` naming the path to the offending type and what to use
instead, raised to the registry as a :class:`~pyweaver.RegistrationError`::

    app.Shop.order parameter 'o': app.Order -> app.Order.pay -> Callable is not
    serializable (callables cannot cross a process boundary)
"""

from __future__ import annotations

import collections.abc
import functools
import types
import typing
from collections.abc import Iterator
from types import NoneType
from typing import Any

import attrs

from pyweaver._errors import RegistrationError
from pyweaver._runtime._automarshal import AutoMarshal, ensure_attrs, full_name
from pyweaver._runtime._codec._compile import Generator
from pyweaver._runtime._codec._errors import _Unsupported
from pyweaver._runtime._codec._shapes import (
    SCALARS,
    DictShape,
    RecordShape,
    ScalarShape,
    SequenceShape,
    Shape,
    UnionShape,
    converted_shape,
)

__all__ = ["Shapes", "normalize", "type_name"]


_SEQUENCE_ORIGINS: dict[Any, type] = {
    list: list,
    collections.abc.Sequence: list,
    collections.abc.MutableSequence: list,
    set: set,
    collections.abc.Set: set,
    collections.abc.MutableSet: set,
    frozenset: frozenset,
}
_MAPPING_ORIGINS: dict[Any, type] = {
    dict: dict,
    collections.abc.Mapping: dict,
    collections.abc.MutableMapping: dict,
}


def type_name(tp: Any) -> str:
    """A readable name of a type for messages and schemas: ``list[app.Point]``."""
    if tp is None or tp is NoneType:
        return "None"
    if isinstance(tp, str):
        return repr(tp)
    if isinstance(tp, typing.TypeVar):
        return tp.__name__
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(type_name(arg) for arg in typing.get_args(tp))
    if origin is collections.abc.Callable:
        return "Callable"
    if origin is not None:
        args = typing.get_args(tp)
        shown = ", ".join("..." if arg is Ellipsis else type_name(arg) for arg in args)
        return f"{type_name(origin)}[{shown}]"
    if tp is collections.abc.Callable:
        return "Callable"
    if isinstance(tp, type):
        if tp.__module__ in ("builtins", "typing"):
            return tp.__qualname__
        return full_name(tp)
    if isinstance(tp, types.BuiltinFunctionType | types.FunctionType):
        return f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp).removeprefix("typing.")


def normalize(tp: Any) -> Any:
    """Strip what does not change the wire form: Annotated, NewType, aliases."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, typing.NewType):
            tp = tp.__supertype__
        elif type(tp).__name__ == "TypeAliasType":  # ``type X = ...`` (3.12+)
            tp = tp.__value__
        elif tp is None:
            return NoneType
        else:
            return tp


class Shapes:
    """The shape of every type judged so far, built on first use.

    Args:
        generator: where the shapes' generated functions live.
        plain_attrs: also accept attrs classes that do not derive from
            ``weaver.AutoMarshal``.
    """

    def __init__(self, generator: Generator, *, plain_attrs: bool = False) -> None:
        self.plain_attrs = plain_attrs
        self._generator = generator
        self._cache: dict[Any, Shape] = {}
        self._recursive: dict[type, bool] = {}

    def judge(self, tp: Any, where: str) -> Shape:
        """The shape of ``tp``, or a :class:`~pyweaver.RegistrationError` starting with
        ``where`` and naming the offending type and the path to it."""
        try:
            return self.shape(tp, (type_name(tp),))
        except _Unsupported as exc:
            raise RegistrationError(f"{where}: {exc.describe()}") from None

    def shape(self, tp: Any, trail: tuple[str, ...]) -> Shape:
        """The shape of ``tp`` (cached), or :class:`~._errors._Unsupported`; ``trail`` is
        the path that led here, for the message."""
        tp = normalize(tp)
        try:
            cached = self._cache.get(tp)
        except TypeError:  # unhashable (Annotated metadata, odd aliases)
            cached = None
        if cached is not None:
            return cached
        shape = self._build(tp, trail)
        try:
            self._cache[tp] = shape
        except TypeError:
            pass
        return shape

    def _unsupported(self, tp: Any, trail: tuple[str, ...], reason: str) -> _Unsupported:
        return _Unsupported(trail, type_name(tp), reason)

    def _build(self, tp: Any, trail: tuple[str, ...]) -> Shape:
        generator = self._generator
        name = type_name(tp)
        scalar = SCALARS.get(tp)
        if scalar is not None:
            return ScalarShape(name, scalar, generator)
        converted = converted_shape(tp, name, generator)
        if converted is not None:
            return converted
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Union or origin is types.UnionType:
            return self._union(tp, name, args, trail)
        if origin in _SEQUENCE_ORIGINS or tp in _SEQUENCE_ORIGINS:
            if not args:
                raise self._unsupported(
                    tp, trail, f"{name} needs an element type, e.g. {name}[int]"
                )
            element = self.shape(args[0], trail)
            return SequenceShape(name, _SEQUENCE_ORIGINS[origin], element, generator)
        if origin is tuple or tp is tuple:
            return self._tuple(tp, name, args, trail)
        if origin in _MAPPING_ORIGINS or tp in _MAPPING_ORIGINS:
            if len(args) != 2:
                raise self._unsupported(
                    tp, trail, f"{name} needs key and value types, e.g. dict[str, int]"
                )
            key, value = self.shape(args[0], trail), self.shape(args[1], trail)
            return DictShape(name, key, value, generator)
        if isinstance(origin, type) and (issubclass(origin, AutoMarshal) or attrs.has(origin)):
            raise self._unsupported(tp, trail, "generic AutoMarshal classes are not supported")
        if isinstance(tp, type) and self._is_record_class(tp):
            return self._record(tp, name, trail)
        raise self._unsupported(tp, trail, _why_not(tp, origin))

    def _is_record_class(self, cls: type) -> bool:
        if issubclass(cls, AutoMarshal):
            ensure_attrs(cls)
            return True
        return self.plain_attrs and attrs.has(cls)

    def _union(self, tp: Any, name: str, args: tuple[Any, ...], trail: tuple[str, ...]) -> Shape:
        optional = any(normalize(arg) is NoneType for arg in args)
        members = [self.shape(arg, trail) for arg in args if normalize(arg) is not NoneType]
        scalars = [m for m in members if isinstance(m, ScalarShape)]
        if len(scalars) == len(members):
            primaries = [m.accepted[0] for m in scalars]
            if len(set(primaries)) == len(primaries):
                # Told apart by their CBOR type alone: no tag needed.
                accepted = tuple(dict.fromkeys(t for m in scalars for t in m.accepted))
                if optional:
                    accepted = (NoneType, *accepted)
                return ScalarShape(name, accepted, self._generator)
        try:
            return UnionShape(name, members, optional, self._generator)
        except _Unsupported as exc:
            raise _Unsupported(trail, name, exc.reason) from None

    def _tuple(self, tp: Any, name: str, args: tuple[Any, ...], trail: tuple[str, ...]) -> Shape:
        if tp is tuple:
            raise self._unsupported(tp, trail, "tuple needs element types, e.g. tuple[int, ...]")
        if len(args) == 2 and args[1] is Ellipsis:
            element = self.shape(args[0], trail)
            return SequenceShape(name, tuple, element, self._generator)
        if args == ((),):  # tuple[()]
            args = ()
        record = RecordShape(name, tuple, self._generator)
        record.finish([(str(i), self.shape(arg, trail)) for i, arg in enumerate(args)])
        return record

    def _record(self, cls: type, name: str, trail: tuple[str, ...]) -> Shape:
        if getattr(cls, "__parameters__", ()):
            raise self._unsupported(cls, trail, "generic AutoMarshal classes are not supported")
        try:
            hints = typing.get_type_hints(cls)
        except Exception as exc:
            raise self._unsupported(
                cls, trail, f"cannot resolve its annotations: {type(exc).__name__}: {exc}"
            ) from None
        record = RecordShape(name, cls, self._generator, recursive=self._is_recursive(cls))
        # Registered before its fields are built, so a class that contains itself finds
        # itself (boxed) instead of recursing.
        self._cache[cls] = record
        fields: list[tuple[str, Shape]] = []
        try:
            for field in attrs.fields(cls):
                field_trail = (*trail, f"{name}.{field.name}")
                field_type = hints.get(field.name, field.type)
                if field_type is None:
                    raise _Unsupported(
                        field_trail, f"{name}.{field.name}", "the field has no type annotation"
                    )
                fields.append((field.name, self.shape(field_type, field_trail)))
        except BaseException:
            del self._cache[cls]
            raise
        record.finish(fields)
        return record

    def _is_recursive(self, cls: type) -> bool:
        """Whether ``cls`` can contain itself (then it is always boxed)."""
        known = self._recursive.get(cls)
        if known is not None:
            return known
        seen: set[type] = set()
        pending = list(_classes_in_fields(cls))
        recursive = False
        while pending:
            current = pending.pop()
            if current is cls:
                recursive = True
                break
            if current in seen:
                continue
            seen.add(current)
            pending.extend(_classes_in_fields(current))
        self._recursive[cls] = recursive
        return recursive


_CALLABLE_TYPES = (
    collections.abc.Callable,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.LambdaType,
    functools.partial,
)


def _why_not(tp: Any, origin: Any) -> str:
    """Why ``tp`` cannot cross the wire, with what to do instead."""
    if tp is typing.Any:
        return "Any says nothing about the value; use a concrete type"
    if tp is object:
        return "object says nothing about the value; use a concrete type"
    if isinstance(tp, str | typing.ForwardRef):
        return "an unresolved forward reference; define the type before use"
    if isinstance(tp, typing.TypeVar | typing.ParamSpec):
        return "type variables are not supported; use a concrete type"
    if origin is collections.abc.Callable or tp in _CALLABLE_TYPES:
        return "callables cannot cross a process boundary"
    if origin is typing.Literal:
        return "Literal is not supported; use an enum"
    if origin is type or tp is type:
        return "classes cannot cross a process boundary"
    if not isinstance(tp, type) and origin is None:
        return "it is not a type (live objects such as locks and streams cannot cross)"
    if isinstance(tp, type) and attrs.has(tp):
        return "derive it from weaver.AutoMarshal"
    if isinstance(tp, type):
        return (
            "only None, bool, int, float, str, bytes, containers of them, enums, datetime, "
            "date, timedelta, Decimal, UUID and weaver.AutoMarshal classes can; make it a "
            "weaver.AutoMarshal subclass with annotated fields"
        )
    return "not a supported type"


def _classes_in(tp: Any) -> Iterator[type]:
    """Record classes mentioned in a type (not looking into their fields)."""
    tp = normalize(tp)
    if isinstance(tp, type) and (issubclass(tp, AutoMarshal) or attrs.has(tp)):
        yield tp
        return
    for arg in typing.get_args(tp):
        if arg is not Ellipsis:
            yield from _classes_in(arg)


def _classes_in_fields(cls: type) -> Iterator[type]:
    if issubclass(cls, AutoMarshal):
        ensure_attrs(cls)
    if not attrs.has(cls):
        return
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        return  # reported when the shape is built
    for field in attrs.fields(cls):
        yield from _classes_in(hints.get(field.name, field.type))
