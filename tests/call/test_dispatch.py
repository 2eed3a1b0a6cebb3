"""Server dispatch (issue 8): a method that suspended once goes back to running inline
once it stops suspending, instead of costing a task per request forever."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest

from pyweaver import call
from pyweaver.call._backend import current_backend
from pyweaver.call._protocol import Connection, Response, Role
from pyweaver.call._session import ServerSession

pytestmark = pytest.mark.anyio

KEY = call.method_key("test.Dispatch", "get")


class RecordingDriver:
    """A driver that keeps what the session writes and counts the tasks it spawns."""

    def __init__(self, group: anyio.abc.TaskGroup) -> None:
        self.written: list[bytes] = []
        self.spawned = 0
        self.congested = False
        self._group = group

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def cork(self) -> None:
        pass

    def uncork(self) -> None:
        pass

    def close(self) -> None:
        pass

    def spawn(self, function: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.spawned += 1
        self._group.start_soon(function)

    async def drained(self) -> None:
        pass


async def test_a_handler_that_suspended_once_runs_inline_again() -> None:
    ready = anyio.Event()
    calls = 0

    async def handler(payload: bytes) -> bytes:
        nonlocal calls
        calls += 1
        if not ready.is_set():
            await ready.wait()  # the first call waits, as for a component being built
        return payload

    async with anyio.create_task_group() as group:
        driver = RecordingDriver(group)
        session = ServerSession(
            handlers={KEY: handler},
            deployment_id="d",
            fingerprint=b"f",
            max_frame=1 << 20,
            driver=driver,
            backend=current_backend(),
        )
        peer = Connection(Role.CLIENT, deployment_id="d", fingerprint=b"f", max_frame=1 << 20)
        session.start()
        session.receive(peer.hello())
        peer.receive_data(driver.written.pop())

        async def request(request_id: int) -> bytes:
            session.receive(peer.send_request(request_id, KEY, 0, b"%d" % request_id))
            with anyio.fail_after(5):
                while not driver.written:
                    await anyio.sleep(0)
            (event,) = peer.receive_data(driver.written.pop())
            assert isinstance(event, Response)
            return event.payload

        async with anyio.create_task_group() as first:
            first.start_soon(request, 1)
            with anyio.fail_after(5):
                while calls == 0:
                    await anyio.sleep(0)
            ready.set()
        spawned_after_first = driver.spawned  # the dispatcher handed over the queue
        assert await request(2) == b"2"  # still marked: gets a task, does not suspend
        spawned_after_second = driver.spawned
        for request_id in range(3, 13):
            assert await request(request_id) == b"%d" % request_id
        assert spawned_after_second == spawned_after_first + 1
        assert driver.spawned == spawned_after_second  # inline again: no task per request
        session.close()
        group.cancel_scope.cancel()
