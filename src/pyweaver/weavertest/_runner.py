"""``weavertest.Runner``: one test's deployment of the app, in one of three modes.

Each mode is a :class:`Placement` for the test's :class:`Weavelet`:

* ``local`` uses the single-process placement;
* ``rpc`` serves every component from a call-protocol server on a loopback TCP port
  and reaches each one through a call client (codec + framing + retries, with one
  injected retry per retriable call);
* ``multi`` starts each colocation group in child processes through the multi
  deployer's envelopes (see ``pyweaver.deployers.multi``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import attrs

from pyweaver._errors import PyWeaverError
from pyweaver._runtime._component import Instance, full_name
from pyweaver._runtime._placement import CallClient, SinglePlacement
from pyweaver._runtime._registry import Registry
from pyweaver._runtime._weavelet import Weavelet
from pyweaver.contract._config import AppConfig, parse_config

if TYPE_CHECKING:
    from typing_extensions import TypeForm

__all__ = ["MODES", "Fake", "Runner", "fake"]

MODES: tuple[str, ...] = ("local", "rpc", "multi")

T = TypeVar("T")


@attrs.frozen
class Fake(Generic[T]):
    """A stand-in for the component ``iface`` (see :func:`fake`)."""

    iface: TypeForm[T]
    impl: T


def fake(iface: TypeForm[T], impl: T) -> Fake[T]:
    """Use ``impl`` instead of building the component ``iface``. Calls to a fake are
    always local (it lives in the test process), in every mode."""
    return Fake(iface, impl)


class _TwiceRetriable:
    """rpc mode's call client: every retriable call runs twice (the second result is
    kept), which flushes out methods that should be ``@weaver.not_retriable``."""

    def __init__(self, client: CallClient) -> None:
        self._client = client

    async def call(
        self, method_key: bytes, payload: bytes, *, retriable: bool = True, shard_key: int = 0
    ) -> bytes:
        if retriable:
            await self._client.call(method_key, payload, retriable=True, shard_key=shard_key)
        return await self._client.call(
            method_key, payload, retriable=retriable, shard_key=shard_key
        )


class _RpcPlacement(SinglePlacement):
    """rpc mode: every component is reached through the call protocol on loopback
    (listeners bind as in a single process)."""

    def __init__(self, config: AppConfig, clients: dict[str, CallClient]) -> None:
        super().__init__(config)
        self.clients = clients

    def is_local(self, component: str) -> bool:
        return False

    async def client(self, component: str) -> CallClient:
        return self.clients["*"]


class Runner(anyio.AsyncContextManagerMixin):
    """An async context manager running the app's components for one test.

    Args:
        mode: ``"local"``, ``"rpc"`` or ``"multi"`` (see :data:`MODES`).
        config: weaver.toml text (component sections, ``[serviceweaver]`` colocation
            for multi mode).
        fakes: components to replace, made with :func:`fake`.
        app: for ``multi`` mode, the path of the script or the module that defines the
            components (child processes import it); default: the module of the first
            registered component the test asks for.
    """

    def __init__(
        self,
        mode: str = "local",
        *,
        config: str = "",
        fakes: Sequence[Fake[Any]] = (),
        app: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise PyWeaverError(f"unknown weavertest mode {mode!r}; choose one of {MODES}")
        self.mode = mode
        self.config = parse_config(config, path="<weavertest config>")
        self.fakes = {full_name(f.iface): f.impl for f in fakes}
        self.app = app

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[Instance]:
        async with self._deploy() as weavelet:
            yield weavelet.main_instance()

    @contextlib.asynccontextmanager
    async def _deploy(self) -> AsyncIterator[Weavelet]:
        if self.mode == "local":
            async with self._local() as weavelet:
                yield weavelet
        elif self.mode == "rpc":
            async with self._rpc() as weavelet:
                yield weavelet
        else:
            from pyweaver.weavertest._multi import weavertest_deployment

            async with weavertest_deployment(self.config, self.fakes, self.app) as weavelet:
                yield weavelet

    @contextlib.asynccontextmanager
    async def _local(self) -> AsyncIterator[Weavelet]:
        weavelet = Weavelet(Registry(), self.config, SinglePlacement(self.config), fakes=self.fakes)
        try:
            yield weavelet
        finally:
            await weavelet.shutdown()

    @contextlib.asynccontextmanager
    async def _rpc(self) -> AsyncIterator[Weavelet]:
        from pyweaver import call

        registry = Registry()
        clients: dict[str, CallClient] = {}
        weavelet = Weavelet(
            registry, self.config, _RpcPlacement(self.config, clients), fakes=self.fakes
        )
        fingerprint = registry.fingerprint()
        try:
            async with (
                call.serve(
                    "tcp://127.0.0.1:0",
                    weavelet.handlers(),
                    deployment_id=weavelet.deployment_id,
                    fingerprint=fingerprint,
                ) as server,
                call.Client(
                    [server.address],
                    deployment_id=weavelet.deployment_id,
                    fingerprint=fingerprint,
                ) as client,
            ):
                clients["*"] = _TwiceRetriable(client)
                yield weavelet
        finally:
            with anyio.CancelScope(shield=True):
                await weavelet.shutdown()
