"""``weaver.AutoMarshal``: the base class that makes an application class serializable.

A subclass is an attrs class whose fields cross process boundaries through the codec
(:mod:`pyweaver._runtime._codec`, which reads it; this module never reads the codec).
It may be written three ways, and all behave the same::

    class Point(weaver.AutoMarshal):          # no decorator: acts as @attrs.define(slots=False)
        x: int
        y: int = 0

    @attrs.frozen                             # any attrs decorator works too
    class Pixel(weaver.AutoMarshal):
        x: int
        y: int

    @attrs.define
    class QuotaExceeded(weaver.AutoMarshal, Exception):   # crosses the wire as itself
        limit: int

Theory of operation. attrs decorators run *after* the class statement, so when
``__init_subclass__`` runs it cannot know whether a decorator follows. Decorating eagerly
breaks a decorator that follows (attrs' auto-detection then sees our generated
``__init__``/``__hash__`` as user-written, and class-level defaults are already gone), so an
undecorated class is made an attrs class *lazily*, in place, by :func:`ensure_attrs`:

* on its first instantiation: ``AutoMarshal.__init__`` is a trampoline that prepares
  ``type(self)`` and calls the ``__init__`` attrs just generated. From then on the class
  has its own ``__init__``, so construction costs exactly what attrs costs: nothing of
  ours stays on the path;
* when the codec inspects it (registration), or when a subclass is defined (a base class
  is final by then: its decorators have run).

An undecorated class whose inherited ``__init__`` is not the trampoline (a subclass of an
AutoMarshal class that already has fields, or ``class E(Exception, AutoMarshal)``) gets a
private "shim" base holding the trampoline, removed again as soon as the class is prepared
or an attrs decorator finishes with it (attrs >= 25.4 calls ``__attrs_init_subclass__``).

Every subclass is recorded under its full name (:func:`full_name`), so the codec can turn
an exception's type name back into the class on the receiving side (:func:`lookup`). A
class created twice under one name (attrs' ``slots=True`` rebuilds the class; a test
defines a class in a loop) is recorded as the latest one.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, dataclass_transform

import attr
import attrs

__all__ = ["AutoMarshal", "ensure_attrs", "full_name", "lookup", "registered"]


def full_name(obj: Any) -> str:
    """``module.QualName`` of a class or function, with ``__main__`` replaced by the name
    the main module would have if imported: ``python app.py`` → ``app``, ``python -m
    pkg.app`` → ``pkg.app``. So ``app.py``'s ``Reverser`` is ``app.Reverser`` whether the
    file runs as a script or is imported (by a weavelet, a test, ``pyweaver check``)."""
    module = getattr(obj, "__module__", None) or "__main__"
    if module == "__main__":
        module = _main_module_name()
    return f"{module}.{obj.__qualname__}"


def _main_module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) and spec.name != "__main__":
        return str(spec.name).removesuffix(".__main__")
    file = getattr(main, "__file__", None)
    return Path(file).stem if file else "__main__"


_SHIM_MARK = "__pyweaver_trampoline_shim__"
_registry: dict[str, type[Any]] = {}
_registry_view = MappingProxyType(_registry)
# Preparing mutates classes; two threads constructing the first instance of one class
# at the same time must not both run attrs on it.
_prepare_lock = threading.RLock()


def lookup(name: str) -> type[Any] | None:
    """The AutoMarshal class registered under full name ``name``, if any."""
    return _registry.get(name)


def registered() -> Mapping[str, type[Any]]:
    """A read-only live view: full name → AutoMarshal class."""
    return _registry_view


def _is_shim(cls: type[Any]) -> bool:
    return _SHIM_MARK in cls.__dict__


def _needs_preparing(cls: type[Any]) -> bool:
    return (
        issubclass(cls, AutoMarshal)
        and cls is not AutoMarshal
        and not _is_shim(cls)
        and "__attrs_attrs__" not in cls.__dict__
    )


def ensure_attrs(cls: type[Any]) -> None:
    """Make the AutoMarshal class ``cls`` (and its AutoMarshal bases) attrs classes, in
    place, unless a decorator already did. Idempotent and cheap once done."""
    if "__attrs_attrs__" in cls.__dict__:
        _drop_shim(cls)
        return
    with _prepare_lock:
        for klass in reversed(cls.__mro__):
            if _needs_preparing(klass):
                _drop_shim(klass)
                # In place (slots=False): the class object must stay the one the module
                # already bound to its name.
                attrs.define(klass, slots=False)


def _drop_shim(cls: type[Any]) -> None:
    bases = cls.__bases__
    if len(bases) == 1 and _is_shim(bases[0]):
        cls.__bases__ = bases[0].__bases__


def _resolved_init(cls: type[Any]) -> Any:
    """What ``cls(...)`` would call as ``__init__``."""
    return next(klass.__dict__["__init__"] for klass in cls.__mro__ if "__init__" in klass.__dict__)


def _trampoline_init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    ensure_attrs(cls)
    init = cls.__init__
    if init is _trampoline_init:  # a class we cannot prepare; never loop
        raise TypeError(f"{full_name(cls)} could not be made an attrs class")
    init(self, *args, **kwargs)


@dataclass_transform(field_specifiers=(attrs.field, attr.ib, attr.attrib))
class AutoMarshal:
    """Base class making a class serializable: its attrs fields cross the wire.

    The subclass may or may not be decorated with ``@attrs.define``/``@attrs.frozen``;
    undecorated it behaves as ``@attrs.define(slots=False)``. Field types must be
    serializable (the codec checks at registration and names the class and field at
    fault). An exception class deriving from it is re-raised on the caller's side as the
    same class with the same fields.
    """

    __slots__ = ()
    __init__ = _trampoline_init
    if TYPE_CHECKING:
        # Every subclass is an attrs class (once prepared): let attrs.fields() and
        # friends accept it under mypy.
        __attrs_attrs__: ClassVar[tuple[attrs.Attribute[Any], ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if _is_shim(cls):
            return
        # Bases are final once a subclass statement runs: prepare the undecorated ones so
        # this class (decorated or not) inherits their fields.
        for base in cls.__mro__[1:]:
            if _needs_preparing(base):
                ensure_attrs(base)
        undecorated = "__attrs_attrs__" not in cls.__dict__
        if (
            undecorated
            and "__init__" not in cls.__dict__
            and _resolved_init(cls) is not _trampoline_init
        ):
            metaclass: Any = type(cls)
            shim = metaclass(
                cls.__name__,
                cls.__bases__,
                {
                    _SHIM_MARK: True,
                    "__slots__": (),
                    "__init__": _trampoline_init,
                    "__module__": cls.__module__,
                    "__qualname__": cls.__qualname__,
                },
            )
            cls.__bases__ = (shim,)
        _registry[full_name(cls)] = cls

    @classmethod
    def __attrs_init_subclass__(cls) -> None:
        # attrs finished decorating ``cls``: the trampoline shim (if any) has no job left.
        _drop_shim(cls)
