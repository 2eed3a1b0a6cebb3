"""The app author's building blocks: ``Implements``, ``Ref``, ``WithConfig``,
``WithRouter``, ``not_retriable`` and ``Instance``.

Subclassing ``Implements[Iface]`` registers the class as *the* implementation of the
component interface ``Iface``. Registration only records the class; every check that
can be made without running the app (signatures, types, routers, Refs, listeners) is
made by :mod:`pyweaver._runtime._registry` when the app starts or when ``pyweaver check`` runs,
so one error report can name every fault at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast, get_args, get_origin

from pyweaver._errors import RegistrationError
from pyweaver._runtime._automarshal import full_name

if TYPE_CHECKING:
    from typing_extensions import TypeForm

    from pyweaver._runtime._listener import Listener, ListenerOptions
    from pyweaver._runtime._logging import Logger

__all__ = [
    "Implements",
    "Instance",
    "Ref",
    "WeaverInfo",
    "WithConfig",
    "WithRouter",
    "full_name",
    "implementations",
    "isolated_registrations",
    "not_retriable",
]

T = TypeVar("T")
C = TypeVar("C")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

NOT_RETRIABLE_ATTR = "__pyweaver_not_retriable__"


def not_retriable(method: F) -> F:
    """Mark an interface method as never retried automatically.

    Use it on methods that must not run twice (charging a card, appending to a log):
    a call that fails with a system error then raises ``RemoteCallError`` instead of
    being re-issued.
    """
    setattr(method, NOT_RETRIABLE_ATTR, True)
    return method


class WeaverInfo:
    """Where this component instance runs."""

    __slots__ = ("deployment_id", "group", "replica_id")

    def __init__(self, deployment_id: str, replica_id: str, group: str = "") -> None:
        self.deployment_id = deployment_id
        self.replica_id = replica_id
        self.group = group

    def __repr__(self) -> str:
        return (
            f"WeaverInfo(deployment_id={self.deployment_id!r}, "
            f"replica_id={self.replica_id!r}, group={self.group!r})"
        )


class _Host(Protocol):
    """What an Instance asks of the weavelet that made it."""

    async def get(self, iface: type[T], requester: str) -> T: ...

    async def listener(
        self, component: str, name: str, options: ListenerOptions | None
    ) -> Listener: ...


class Instance:
    """What ``weaver.init()`` returns and what every implementation is.

    The runtime fills the private slots before the component's ``init`` hook runs.
    """

    _pyweaver_weavelet: _Host
    _pyweaver_name: str
    logger: Logger
    weaver_info: WeaverInfo

    async def get(self, iface: TypeForm[T]) -> T:
        """The component ``iface``, called from this component (records the edge).

        ``TypeForm`` (PEP 747), not ``type[T]``: a component interface is a Protocol, which
        mypy refuses where ``type[T]`` is expected (``type-abstract``, mypy issue 4717)."""
        return await self._pyweaver_weavelet.get(
            cast("type[T]", iface), requester=self._pyweaver_name
        )

    async def listener(self, name: str, options: ListenerOptions | None = None) -> Listener:
        """The network listener ``name``, bound as the deployer decides (see
        ``ListenerOptions`` and the ``listeners`` tables of weaver.toml)."""
        return await self._pyweaver_weavelet.listener(self._pyweaver_name, name, options)


class Ref(Generic[T]):
    """``x: weaver.Ref[Iface]`` on an implementation: ``self.x.get()`` is the stub.

    Refs are filled before ``init`` with stubs that do not build the target, so Ref
    cycles (A refers to B, B refers to A) are fine.
    """

    __slots__ = ("_stub",)

    def __init__(self, stub: T) -> None:
        self._stub = stub

    def get(self) -> T:
        return self._stub

    def __repr__(self) -> str:
        return f"Ref({self._stub!r})"


class WithConfig(Generic[C]):
    """Mixin: ``self.config`` is a ``C`` (an attrs class) built from the component's
    section of weaver.toml (section key = the component's full name)."""

    config: C


class WithRouter(Generic[R]):
    """Mixin: calls are routed by the key that ``R``'s same-named method returns;
    calls with the same key go to the same replica (best effort)."""


# Interface full name -> implementation class. Filled by Implements.__init_subclass__.
_implementations: dict[str, type[Any]] = {}


@contextmanager
def isolated_registrations() -> Iterator[dict[str, type[Any]]]:
    """Register implementations into a fresh, temporary table (for tests and
    ``pyweaver check`` of several apps in one process); the old table comes back after."""
    global _implementations
    saved, _implementations = _implementations, {}
    try:
        yield _implementations
    finally:
        _implementations = saved


def implementations() -> dict[str, type[Any]]:
    """Every registered implementation, by interface full name (a copy)."""
    return dict(_implementations)


def generic_argument(cls: type[Any], base: Any) -> Any | None:
    """The type argument ``X`` of ``base[X]`` among ``cls``'s direct generic bases."""
    for orig in getattr(cls, "__orig_bases__", ()):
        if get_origin(orig) is base:
            args = get_args(orig)
            return args[0] if args else None
    return None


class Implements(Instance, Generic[T]):
    """Base class of the one implementation of the component interface ``T``.

    ``class ReverserImpl(weaver.Implements[Reverser]): ...`` registers ``ReverserImpl``.
    A second implementation of the same interface is a ``RegistrationError``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        iface = generic_argument(cls, Implements)
        if iface is None:
            # An intermediate base class (class Base(Implements[T]) with T unbound) or
            # a subclass of an implementation: not a registration.
            return
        if not isinstance(iface, type):
            raise RegistrationError(
                f"{full_name(cls)}: Implements[...] needs a component interface class, "
                f"got {iface!r}"
            )
        name = full_name(iface)
        previous = _implementations.get(name)
        # The same class defined again (a module run as __main__ and imported as well)
        # replaces the earlier one; a different class is a second implementation.
        if previous is not None and full_name(previous) != full_name(cls):
            raise RegistrationError(
                f"component {name} has two implementations: {full_name(previous)} and "
                f"{full_name(cls)}; a component interface has exactly one"
            )
        _implementations[name] = cls
