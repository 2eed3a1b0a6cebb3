"""Registration and validation: every kind of bad app is rejected with a message that
names the component, method, parameter or type at fault. (No `from __future__ import
annotations` here: the components are defined inside the tests, and their annotations
must be evaluated where the local names are visible.)"""

import threading
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import pytest

import pyweaver as weaver
from pyweaver._runtime._component import isolated_registrations
from pyweaver._runtime._registry import Registry
from pyweaver.call import method_key


def errors_of(build: Callable[[], Any]) -> list[str]:
    with isolated_registrations():
        build()
        return Registry().errors


def test_a_valid_component_has_no_errors_and_a_stable_method_key() -> None:
    def build() -> None:
        class Greeter(Protocol):
            async def greet(self, name: str, times: int = 1) -> list[str]: ...

        class GreeterImpl(weaver.Implements[Greeter]):
            async def greet(self, name: str, times: int = 1) -> list[str]:
                return [name] * times

    assert errors_of(build) == []
    assert method_key("app.Reverser", "reverse") == method_key("app.Reverser", "reverse")
    assert len(method_key("a.B", "c")) == 16


def test_method_keys_are_the_call_protocols() -> None:
    # The wire owns the key format: a registered method is named by call.method_key.
    with isolated_registrations():

        class Greeter(Protocol):
            async def greet(self, name: str) -> str: ...

        class GreeterImpl(weaver.Implements[Greeter]):
            async def greet(self, name: str) -> str:
                return name

        registry = Registry()
        spec = registry.spec(Greeter)
    assert registry.errors == []
    assert spec.methods["greet"].key == method_key(spec.name, "greet")


def test_method_must_be_async() -> None:
    def build() -> None:
        class Sync(Protocol):
            def run(self) -> int: ...

        class SyncImpl(weaver.Implements[Sync]):
            def run(self) -> int:
                return 1

    (error,) = errors_of(build)
    assert "Sync.run" in error and "async def" in error


def test_unannotated_parameter_and_return_are_named() -> None:
    def build() -> None:
        class Loose(Protocol):
            async def put(self, key, value: int) -> None: ...  # type: ignore[no-untyped-def]
            async def take(self, key: str): ...  # type: ignore[no-untyped-def]

        class LooseImpl(weaver.Implements[Loose]):
            async def put(self, key, value: int) -> None:  # type: ignore[no-untyped-def]
                pass

            async def take(self, key: str):  # type: ignore[no-untyped-def]
                return None

    errors = errors_of(build)
    assert any("Loose.put" in e and "'key'" in e and "annotation" in e for e in errors)
    assert any("Loose.take" in e and "return type" in e for e in errors)


@pytest.mark.parametrize(
    "bad_type",
    [Callable[[], int], threading.Lock, Any, object],
    ids=["callable", "lock", "any", "object"],
)
def test_unserializable_types_are_named(bad_type: Any) -> None:
    def build() -> None:
        class Holder(Protocol):
            async def keep(self, thing: bad_type) -> None: ...

        class HolderImpl(weaver.Implements[Holder]):
            async def keep(self, thing: bad_type) -> None:
                pass

    errors = errors_of(build)
    assert errors, f"{bad_type} was accepted"
    assert any("Holder.keep" in e and "'thing'" in e for e in errors), errors


def test_second_implementation_is_an_error_at_registration() -> None:
    with isolated_registrations():

        class Store(Protocol):
            async def get(self, key: str) -> str: ...

        class StoreA(weaver.Implements[Store]):
            async def get(self, key: str) -> str:  # type: ignore[override]
                return "a"

        with pytest.raises(weaver.RegistrationError, match=r"two implementations.*StoreA.*StoreB"):

            class StoreB(weaver.Implements[Store]):
                async def get(self, key: str) -> str:  # type: ignore[override]
                    return "b"


def test_missing_method_and_parameter_mismatch() -> None:
    def build() -> None:
        class Api(Protocol):
            async def a(self, x: int) -> int: ...
            async def b(self, x: int) -> int: ...

        class ApiImpl(weaver.Implements[Api]):
            async def a(self, y: int) -> int:
                return y

    errors = errors_of(build)
    assert any("does not implement" in e and "Api.b" in e for e in errors)
    assert any("ApiImpl.a" in e and "['y']" in e and "['x']" in e for e in errors)


def test_router_must_mirror_methods_and_share_one_key_type() -> None:
    def build() -> None:
        class Cache(Protocol):
            async def get(self, key: str) -> str: ...
            async def put(self, key: str, value: str) -> None: ...
            async def size(self) -> int: ...

        class CacheRouter:
            def get(self, key: str) -> str:
                return key

            def put(self, key: str, value: str) -> int:
                return 0

            def nope(self) -> int:
                return 0

        class CacheImpl(weaver.Implements[Cache], weaver.WithRouter[CacheRouter]):
            async def get(self, key: str) -> str:  # type: ignore[override]
                return ""

            async def put(self, key: str, value: str) -> None:
                pass

            async def size(self) -> int:
                return 0

    errors = errors_of(build)
    assert any("router" in e and "nope" in e and "no method" in e for e in errors), errors
    assert any("one key type" in e for e in errors), errors
    (mixed,) = [e for e in errors if "one key type" in e]
    assert mixed.endswith("got str from get, int from put"), mixed


def test_router_parameters_must_match() -> None:
    def build() -> None:
        class Kv(Protocol):
            async def get(self, key: str) -> str: ...

        class KvRouter:
            def get(self, key: int) -> int:
                return key

        class KvImpl(weaver.Implements[Kv], weaver.WithRouter[KvRouter]):
            async def get(self, key: str) -> str:  # type: ignore[override]
                return key

    (error,) = errors_of(build)
    assert "KvRouter" in error and "parameters" in error and "Kv.get" in error


def test_router_key_type_must_be_simple() -> None:
    def build() -> None:
        class Kv(Protocol):
            async def get(self, key: str) -> str: ...

        class KvRouter:
            def get(self, key: str) -> list[str]:
                return [key]

        class KvImpl(weaver.Implements[Kv], weaver.WithRouter[KvRouter]):
            async def get(self, key: str) -> str:  # type: ignore[override]
                return key

    (error,) = errors_of(build)
    assert "routing key type" in error


def test_ref_to_unimplemented_component_and_cycles() -> None:
    with isolated_registrations():

        class Ping(Protocol):
            async def ping(self) -> str: ...

        class Pong(Protocol):
            async def pong(self) -> str: ...

        class Missing(Protocol):
            async def gone(self) -> None: ...

        class PingImpl(weaver.Implements[Ping]):
            pong: weaver.Ref[Pong]
            missing: weaver.Ref[Missing]

            async def ping(self) -> str:
                return "ping"

        class PongImpl(weaver.Implements[Pong]):
            ping: weaver.Ref[Ping]

            async def pong(self) -> str:
                return "pong"

        registry = Registry()
        (error,) = registry.errors
        assert "'missing'" in error and "Missing" in error and "no implementation" in error
        prefix = f"{__name__}.test_ref_to_unimplemented_component_and_cycles.<locals>"
        assert registry.cycles() == [[f"{prefix}.Ping", f"{prefix}.Pong"]]


def test_duplicate_and_invalid_listener_names() -> None:
    def build() -> None:
        class A(Protocol):
            async def a(self) -> None: ...

        class B(Protocol):
            async def b(self) -> None: ...

        class AImpl(weaver.Implements[A]):
            web: weaver.Listener

            async def a(self) -> None:
                pass

        class BImpl(weaver.Implements[B]):
            web: weaver.Listener

            async def b(self) -> None:
                pass

    (error,) = errors_of(build)
    assert "'web'" in error and "unique" in error


def test_with_config_needs_an_attrs_class() -> None:
    def build() -> None:
        class NotAttrs:
            size: int = 1

        class C(Protocol):
            async def c(self) -> None: ...

        class CImpl(weaver.Implements[C], weaver.WithConfig[NotAttrs]):
            async def c(self) -> None:
                pass

    (error,) = errors_of(build)
    assert "WithConfig" in error and "attrs" in error


def test_fingerprint_changes_with_signatures() -> None:
    def app(result: type) -> bytes:
        with isolated_registrations():

            class Echo(Protocol):
                async def echo(self, x: int) -> result: ...  # type: ignore[valid-type]

            class EchoImpl(weaver.Implements[Echo]):
                async def echo(self, x: int) -> result:  # type: ignore[valid-type]
                    return x

            return Registry().fingerprint()

    assert app(int) == app(int)
    assert app(int) != app(str)


def test_unknown_component_is_named() -> None:
    with isolated_registrations():

        class Nowhere(Protocol):
            async def x(self) -> None: ...

        with pytest.raises(weaver.RegistrationError, match=r"unknown component.*Nowhere"):
            Registry().spec(Nowhere)


@attrs.frozen
class _Cfg:
    size: int = 3


def test_lifecycle_hooks_must_be_async_and_take_nothing() -> None:
    def build() -> None:
        class Hooked(Protocol):
            async def run(self) -> None: ...

        class HookedImpl(weaver.Implements[Hooked]):
            def __init__(self, size: int) -> None:
                self.size = size

            def init(self) -> None:  # not async: would silently never run
                pass

            async def shutdown(self, reason: str) -> None:
                pass

            async def run(self) -> None:
                pass

    errors = errors_of(build)
    assert any("HookedImpl.init" in e and "async def" in e for e in errors), errors
    assert any("HookedImpl.shutdown" in e and "no parameters" in e for e in errors), errors
    assert any("HookedImpl.__init__" in e and "no parameters" in e for e in errors), errors
