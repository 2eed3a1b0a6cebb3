"""weaver.AutoMarshal: undecorated and decorated subclasses, exceptions, inheritance,
the class registry and full names."""

from __future__ import annotations

import sys
import types

import attrs
import pytest

from pyweaver._runtime._automarshal import AutoMarshal, ensure_attrs, full_name, lookup, registered


class Point(AutoMarshal):
    x: int
    y: int = 0


# Constructed at import time, before anything registers or inspects the class.
ORIGIN = Point(0, 0)


@attrs.frozen
class Pixel(AutoMarshal):
    x: int
    y: int
    tags: list[str] = attrs.field(factory=list)


@attrs.define
class Mutable(AutoMarshal):
    x: int


@attrs.define(slots=False, kw_only=True)
class KeywordOnly(AutoMarshal):
    x: int
    y: str = "y"


class Point3(Point):
    z: int = 0


class FrozenChild(Pixel):
    z: int = 7


@attrs.frozen
class DecoratedChild(Point):
    z: int = 3


class GrandChild(Point3):
    w: int = 4


@attrs.define
class QuotaExceeded(AutoMarshal, Exception):
    limit: int
    used: int = 0


class Undecorated(AutoMarshal, Exception):
    code: int
    reason: str = ""


class ExceptionFirst(Exception, AutoMarshal):
    code: int


@attrs.frozen
class FrozenError(AutoMarshal, Exception):
    code: int


def _mro_has_shim(cls: type) -> bool:
    return any("__pyweaver_trampoline_shim__" in k.__dict__ for k in cls.__mro__)


def test_undecorated_class_acts_as_attrs_define() -> None:
    assert Point(0, 0) == ORIGIN
    p = Point(1, y=2)
    assert (p.x, p.y) == (1, 2)
    assert repr(p) == "Point(x=1, y=2)"
    assert Point(5) == Point(5, 0)
    assert Point(1, 2) != Point(2, 1)
    p.x = 9  # mutable, like @attrs.define
    assert p.x == 9
    assert [a.name for a in attrs.fields(Point)] == ["x", "y"]
    with pytest.raises(TypeError):
        hash(p)  # eq without frozen: unhashable, like @attrs.define


def test_preparation_leaves_nothing_on_the_construction_path() -> None:
    Point(1, 2)
    # attrs' own __init__, not the trampoline, and no extra class in the MRO.
    assert "__init__" in Point.__dict__
    assert Point.__init__ is not AutoMarshal.__init__
    assert Point.__mro__ == (Point, AutoMarshal, object)


def test_decorated_classes_keep_their_decorator_semantics() -> None:
    pixel = Pixel(1, 2)
    assert pixel.tags == []
    assert pixel == Pixel(1, 2)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        pixel.x = 3  # type: ignore[misc]
    assert not hasattr(pixel, "__dict__")  # slotted
    m = Mutable(1)
    m.x = 2
    assert m.x == 2
    assert KeywordOnly(x=1).y == "y"
    with pytest.raises(TypeError):
        KeywordOnly(1)  # type: ignore[misc, unused-ignore]


def test_inheritance_all_ways() -> None:
    assert Point3(1, 2, 3) == Point3(x=1, y=2, z=3)
    assert [a.name for a in attrs.fields(Point3)] == ["x", "y", "z"]
    assert Point3(1).z == 0
    child = FrozenChild(1, 2)
    assert (child.x, child.y, child.tags, child.z) == (1, 2, [], 7)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        child.z = 1
    assert DecoratedChild(1, 2).z == 3
    assert GrandChild(1, 2, 3, 4).w == 4
    for cls in (Point3, FrozenChild, DecoratedChild, GrandChild):
        assert not _mro_has_shim(cls)
        assert issubclass(cls, AutoMarshal)


def test_exceptions_are_attrs_exceptions() -> None:
    exc = QuotaExceeded(10, used=11)
    assert exc.args == (10, 11)
    with pytest.raises(QuotaExceeded) as info:
        raise exc
    assert info.value.limit == 10
    undecorated = Undecorated(3, "no")
    assert (undecorated.code, undecorated.reason, undecorated.args) == (3, "no", (3, "no"))
    first = ExceptionFirst(5)
    assert (first.code, first.args) == (5, (5,))
    assert not _mro_has_shim(ExceptionFirst)
    assert FrozenError(1).args == (1,)


def test_registry_and_full_names() -> None:
    assert full_name(Point) == f"{__name__}.Point"
    assert lookup(f"{__name__}.Point") is Point
    # attrs' slots=True builds a new class: the registry holds the final one.
    assert lookup(full_name(Pixel)) is Pixel
    assert lookup(full_name(QuotaExceeded)) is QuotaExceeded
    assert lookup("nowhere.Nothing") is None
    assert registered()[full_name(Mutable)] is Mutable
    with pytest.raises(TypeError):
        registered()["x"] = Point  # type: ignore[index]


def test_full_name_maps_main_to_the_script_stem(monkeypatch: pytest.MonkeyPatch) -> None:
    script = types.ModuleType("__main__")
    script.__file__ = "/somewhere/app.py"
    script.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", script)

    class Reverser:
        pass

    Reverser.__module__ = "__main__"
    Reverser.__qualname__ = "Reverser"
    assert full_name(Reverser) == "app.Reverser"

    # python -m pkg.app: the spec names the module.
    script.__spec__ = types.SimpleNamespace(name="pkg.app")  # type: ignore[assignment]
    assert full_name(Reverser) == "pkg.app.Reverser"


def test_ensure_attrs_prepares_without_instances() -> None:
    class Fresh(AutoMarshal):
        a: int
        b: str = "b"

    assert not attrs.has(Fresh)
    ensure_attrs(Fresh)
    assert [f.name for f in attrs.fields(Fresh)] == ["a", "b"]
    ensure_attrs(Fresh)  # idempotent
    assert Fresh(1) == Fresh(1, "b")


def test_undecorated_subclass_of_fresh_undecorated_base() -> None:
    class Base(AutoMarshal):
        a: int

    class Sub(Base):  # defining Sub prepares Base (its decorators have run by now)
        b: int = 2

    assert "__attrs_attrs__" in Base.__dict__
    assert Sub(1) == Sub(1, 2)
    assert Base(1).a == 1
    assert not _mro_has_shim(Sub)
