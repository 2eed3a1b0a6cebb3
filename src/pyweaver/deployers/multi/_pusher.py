"""The routing pusher: one task per weavelet that sends it the newest routing info."""

from __future__ import annotations

import anyio

from pyweaver._errors import PyWeaverError
from pyweaver.contract import messages as m
from pyweaver.envelope import Envelope

__all__ = ["Pusher"]


class Pusher:
    """Sends one weavelet the newest routing info per group and component set, in
    order, from one task: a slow weavelet delays only itself, and an older push can
    never overtake a newer one."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.routing: dict[str, m.RoutingInfo] = {}
        self.components: list[str] | None = None
        self._wake = anyio.Event()

    def push_routing(self, info: m.RoutingInfo) -> None:
        self.routing[info.group] = info
        self._wake.set()

    def push_components(self, components: list[str]) -> None:
        self.components = components
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            components, self.components = self.components, None
            routing, self.routing = self.routing, {}
            try:
                if components is not None:
                    await self.envelope.update_components(components)
                for info in routing.values():
                    await self.envelope.update_routing(info)
            except PyWeaverError:
                # The weavelet is going away; its slot's next weavelet gets fresh state.
                return
