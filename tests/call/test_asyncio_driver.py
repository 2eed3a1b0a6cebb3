"""The asyncio driver's write path for large frames (issue 8): a batch of large frames
is handed to the transport frame by frame, never past its high-water mark, and what
waits is sent on resume_writing or close, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from pyweaver import call
from pyweaver.call._asyncio_driver import _MAX_JOIN_BYTES, AsyncioDriver

HIGH_WATER = 64 * 1024
FRAME = 100 * 1024


class PausingTransport:
    """Keeps what is written; pauses its protocol past HIGH_WATER, like asyncio's."""

    def __init__(self, protocol: AsyncioDriver) -> None:
        self.protocol = protocol
        self.writes: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.paused:
            self.paused = True
            self.protocol.pause_writing()

    def drain(self) -> None:
        """The peer read everything."""
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.protocol.resume_writing()

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return None


def frames(count: int) -> list[bytes]:
    return [bytes([i]) * FRAME for i in range(count)]


def make_driver() -> tuple[AsyncioDriver, PausingTransport]:
    driver = AsyncioDriver(asyncio.new_event_loop())
    driver.backlog = lambda: 64  # many calls in flight: writes are batched
    transport = PausingTransport(driver)
    driver.connection_made(transport)  # type: ignore[arg-type]
    return driver, transport


def test_large_frames_go_one_by_one_and_wait_while_the_transport_is_paused() -> None:
    driver, transport = make_driver()
    sent = frames(6)
    try:
        driver.cork()
        for frame in sent:
            driver.write(frame)
        driver.uncork()
        # Not one joined multi-frame write, and nothing written once it paused.
        assert transport.writes == sent[:1]
        assert driver.congested
        transport.drain()
        assert transport.writes == sent[:2]
        for _ in range(10):
            transport.drain()
        # Everything arrives in order; a tail under the join limit may go as one write.
        assert b"".join(transport.writes) == b"".join(sent)
        assert max(len(w) for w in transport.writes) <= _MAX_JOIN_BYTES
        assert not driver.congested
    finally:
        driver._loop.close()


def test_close_sends_what_waits_in_order() -> None:
    driver, transport = make_driver()
    sent = frames(4)
    try:
        driver.cork()
        for frame in sent:
            driver.write(frame)
        driver.uncork()
        assert transport.writes == sent[:1]
        driver.close()
        assert b"".join(transport.writes) == b"".join(sent)
        assert transport.closed
    finally:
        driver._loop.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "anyio_backend", [("asyncio", {}), ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"]
)
async def test_many_large_calls_in_flight_all_come_back_intact(short_tmp: str) -> None:
    key = call.method_key("test.Big", "echo")

    async def echo(payload: bytes) -> bytes:
        return payload

    async with (
        call.serve(
            f"unix://{short_tmp}/big.sock",
            {key: echo},
            deployment_id="d",
            fingerprint=b"f",
            max_frame=1 << 22,
        ) as server,
        call.Client(
            [server.address], deployment_id="d", fingerprint=b"f", max_frame=1 << 22
        ) as client,
    ):
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            results[i] = await client.call(key, bytes([i]) * 300_000)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for i in range(48):
                    group.start_soon(one, i)
        assert results == {i: bytes([i]) * 300_000 for i in range(48)}


def test_writers_waiting_on_a_paused_transport_go_one_at_a_time() -> None:
    """resume_writing wakes the first waiting writer; it passes the turn on unless its
    write paused the transport again (then it waits at the front); a writer cancelled
    on its turn passes it on too. No writer is woken for nothing."""
    loop = asyncio.new_event_loop()
    try:
        driver = AsyncioDriver(loop)
        driver.backlog = lambda: 64
        transport = PausingTransport(driver)
        driver.connection_made(transport)  # type: ignore[arg-type]
        transport.paused = True
        driver.pause_writing()
        woken: list[int] = []
        wake_ups = [0]
        original = loop.create_future

        def counting_future() -> asyncio.Future[Any]:
            wake_ups[0] += 1  # every wait makes one future
            return original()

        loop.create_future = counting_future  # type: ignore[method-assign]

        async def writer(index: int) -> None:
            await driver.drained()
            woken.append(index)
            driver.write(bytes([index]) * FRAME)  # pauses the transport again

        async def scenario() -> None:
            tasks = [loop.create_task(writer(i)) for i in range(5)]
            await asyncio.sleep(0)
            assert wake_ups[0] == 5 and not woken  # all five wait
            tasks[0].cancel()  # the first in line leaves before its turn
            await asyncio.sleep(0)
            transport.drain()  # resume: one writer's turn
            for _ in range(5):
                await asyncio.sleep(0)
            assert woken == [1]  # its write paused the transport: the others still wait
            assert wake_ups[0] == 5  # nobody else was woken just to wait again
            assert transport.writes[-1] == bytes([1]) * FRAME
            for expected in ([1, 2], [1, 2, 3], [1, 2, 3, 4]):
                transport.drain()
                for _ in range(5):
                    await asyncio.sleep(0)
                assert woken == expected
            await asyncio.gather(*tasks[1:])

        loop.run_until_complete(scenario())
    finally:
        loop.close()
