"""The streams driver's reader on trio over a plain socket (``StreamDriver._read_socket``,
issue 8): it reads the socket itself into one reused buffer, hands the session every
byte in order, sees the end of the stream, and a peer that never stops sending does
not starve the other tasks."""

from __future__ import annotations

import socket
import threading
import time

import anyio
import anyio.abc
import pytest

from pyweaver.call._anyio_driver import StreamDriver
from pyweaver.call._backend import current_backend
from pyweaver.call._protocol import ReadBytes

pytestmark = pytest.mark.anyio

TOTAL = 32 * 1024 * 1024  # bytes the flooding peer sends


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


async def accepted_pair(path: str) -> tuple[anyio.abc.SocketStream, socket.socket]:
    """A trio stream accepted on a Unix socket, and the blocking socket at its other end."""
    listener = await anyio.create_unix_listener(path)
    async with listener:
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        peer.connect(path)
        stream = await listener.accept()
    return stream, peer


async def test_the_reader_hands_over_every_byte_and_the_end(short_tmp: str) -> None:
    stream, peer = await accepted_pair(f"{short_tmp}/r.sock")
    driver = StreamDriver(stream, current_backend())
    assert driver._raw is not None  # the path under test: trio, no TLS
    received = bytearray()
    ends = 0

    def receive(data: ReadBytes) -> None:
        nonlocal ends
        if not data:
            ends += 1
        received.extend(data)  # a view of the reused buffer: copy it now

    driver.receive = receive
    message = bytes(range(256)) * 4096  # 1 MiB, several reads of the 256 KiB buffer
    with peer:
        async with anyio.create_task_group() as group:
            group.start_soon(driver.run)
            await anyio.to_thread.run_sync(peer.sendall, message)
            peer.shutdown(socket.SHUT_WR)
            with anyio.fail_after(10):
                while not ends:
                    await anyio.sleep(0.01)
    assert received == message
    assert ends == 1


async def test_a_flooding_peer_does_not_starve_other_tasks(short_tmp: str) -> None:
    stream, peer = await accepted_pair(f"{short_tmp}/f.sock")
    driver = StreamDriver(stream, current_backend())
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    received = reads = 0
    ticks_while_flooded = 0
    flooding = True

    def receive(data: ReadBytes) -> None:
        nonlocal received, reads
        received += len(data)
        reads += 1
        time.sleep(0.0002)  # slower than the sender: the socket always has bytes

    def flood() -> None:
        chunk = b"x" * (1 << 20)
        for _ in range(TOTAL // len(chunk)):
            peer.sendall(chunk)

    async def tick() -> None:
        nonlocal ticks_while_flooded
        while flooding:
            await anyio.lowlevel.checkpoint()
            ticks_while_flooded += 1

    driver.receive = receive
    sender = threading.Thread(target=flood, daemon=True)
    with peer:
        async with anyio.create_task_group() as group:
            group.start_soon(driver.run)
            group.start_soon(tick)
            sender.start()
            with anyio.fail_after(60):
                while received < TOTAL:
                    await anyio.sleep(0)
            flooding = False
            group.cancel_scope.cancel()
        sender.join(10)
    # The reader yields after every read but the first after a wait, so the ticker
    # runs about once a read (without those checkpoints: about once in three).
    assert reads >= TOTAL // (256 * 1024)
    assert ticks_while_flooded >= 0.7 * reads, (ticks_while_flooded, reads)
