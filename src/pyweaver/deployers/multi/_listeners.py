"""Listeners: one TCP (L4) proxy per listener name, in front of the replicas' ports.

Every replica binds its own ephemeral port and exports it; the first export of a name
starts the proxy on the configured address (``[multi] listeners.NAME``, else the app's
``ListenerOptions.local_address``, else any port), and every export adds the replica's
port as a backend. A replica going down takes its backends with it. A proxy that cannot
listen is reported to every replica exporting that name; a proxy that dies later breaks
the deployment (``on_failure``).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.abc

from pyweaver._errors import DeploymentFailed, ListenerInUseError, ProxyError
from pyweaver.contract import messages as m
from pyweaver.contract._config import AppConfig
from pyweaver.deployers._proxy import TcpProxy

__all__ = ["Listeners"]

SystemLog = Callable[[str, str], None]
"""``log(level, message)``: a log entry of the deployer itself."""


class Listeners:
    """The deployment's listener proxies, run in the deployer's task group.

    Args:
        config: the app's weaver.toml (``[multi] listeners``).
        log: where the deployer's own log entries go.
        on_failure: called when a running proxy dies.
    """

    def __init__(
        self,
        config: AppConfig,
        *,
        log: SystemLog,
        on_failure: Callable[[DeploymentFailed], None],
    ) -> None:
        self.config = config
        self.proxies: dict[str, TcpProxy] = {}
        self._errors: dict[str, str] = {}
        self._lock = anyio.Lock()
        self._log = log
        self._on_failure = on_failure

    def _address(self, request: m.ExportListener) -> str:
        configured = self.config.multi.listeners.get(request.name)
        if configured:
            return str(configured)
        return request.local_address or "127.0.0.1:0"

    async def export(
        self, task_group: anyio.abc.TaskGroup, owner: str, request: m.ExportListener
    ) -> m.ExportListenerReply:
        """Put ``request.address`` (of replica ``owner``) behind the proxy of
        ``request.name``, starting the proxy in ``task_group`` if it is the first."""
        async with self._lock:
            if request.name in self._errors:
                return m.ExportListenerReply(error=self._errors[request.name])
            proxy = self.proxies.get(request.name)
            if proxy is None:
                address = self._address(request)
                try:
                    proxy = await task_group.start(self._run_proxy, request.name, address)
                except (OSError, ProxyError) as exc:
                    error = f"the proxy for listener {request.name!r}: {exc}"
                    if isinstance(exc, ListenerInUseError):
                        error = (
                            f"the proxy for listener {request.name!r} cannot listen on "
                            f"{address}: the address is already in use"
                        )
                    self._errors[request.name] = error
                    self._log("error", error)
                    return m.ExportListenerReply(error=error)
        proxy.add_backend(request.address, owner=owner)
        return m.ExportListenerReply(proxy_address=proxy.address)

    def remove_backends_of(self, owner: str) -> None:
        """Replica ``owner`` is gone: no new connections to its ports."""
        for proxy in self.proxies.values():
            proxy.remove_backends_of(owner)

    def status(self) -> list[dict[str, object]]:
        """Each listener's name, proxy address and backends."""
        return [
            {"name": name, "proxy": proxy.address, "backends": list(proxy.backends)}
            for name, proxy in sorted(self.proxies.items())
        ]

    async def _run_proxy(
        self,
        name: str,
        address: str,
        *,
        task_status: anyio.abc.TaskStatus[TcpProxy] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        try:
            async with TcpProxy(address, name=name) as proxy:
                self.proxies[name] = proxy
                self._log("info", f"listener {name} available at {proxy.address}")
                task_status.started(proxy)
                started = True
                await anyio.sleep_forever()
        except Exception as exc:
            if not started:
                raise  # export() reports it to the weavelet
            # A proxy that dies leaves its listener unreachable: the deployment is broken.
            self.proxies.pop(name, None)
            self._on_failure(DeploymentFailed(f"the proxy of listener {name!r} failed: {exc!r}"))
