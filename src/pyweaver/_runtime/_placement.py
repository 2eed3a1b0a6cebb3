"""Placement: the deployer's answer, inside a weavelet, to "where does this run?".

A :class:`Placement` says whether a component is hosted in this process, gives the call
client that reaches a remote one, and binds listeners where the deployer wants them.
:class:`SinglePlacement` is the single-process answer (everything here, listeners as
``[single]`` says); the deployed answer is :class:`~pyweaver._runtime._remote.MultiPlacement`.
"""

from __future__ import annotations

from typing import Protocol

from pyweaver._runtime._listener import Listener, ListenerOptions, bind_listener
from pyweaver.contract._config import AppConfig

__all__ = ["CallClient", "Placement", "SinglePlacement"]


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
