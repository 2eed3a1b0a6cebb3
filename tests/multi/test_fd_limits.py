"""The deployer under descriptor pressure, without processes: its own "too many open
files" when starting a weavelet is retried, never counted as a crash; the soft
open-file limit is raised at start; ``purge`` finds the run directories of dead
deployers; a slow control-plane handler does not stall proxied traffic."""

from __future__ import annotations

import errno
import os
import resource
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from pyweaver._errors import CrashLoopError
from pyweaver.contract._bootstrap import Bootstrap
from pyweaver.contract._config import parse_config
from pyweaver.deployers._proxy import TcpProxy
from pyweaver.deployers.multi._cli import purge_run_dirs
from pyweaver.deployers.multi._groups import Group, Slot
from pyweaver.deployers.multi._slots import SlotKeeper
from pyweaver.envelope import Envelope, Outcome, RestartPolicy, supervise
from pyweaver.envelope._process import out_of_descriptors, raise_open_file_limit

pytestmark = pytest.mark.anyio

FAST = RestartPolicy(max_crashes=2, window=60, initial_backoff=0.001, max_backoff=0.002)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pwfd-") as directory:
        yield Path(directory)


def test_out_of_descriptors_is_found_in_chains_and_groups() -> None:
    emfile = OSError(errno.EMFILE, "Too many open files")
    assert out_of_descriptors(emfile)
    assert out_of_descriptors(ExceptionGroup("x", [ValueError(), emfile]))
    wrapped = RuntimeError("envelope failed")
    wrapped.__cause__ = OSError(errno.ENFILE, "Too many open files in system")
    assert out_of_descriptors(wrapped)
    assert not out_of_descriptors(OSError(errno.ECONNREFUSED, "refused"))
    assert not out_of_descriptors(ValueError("no"))


async def test_supervise_never_counts_a_deployer_fault_as_a_crash() -> None:
    runs = 0

    async def run_once() -> Outcome:
        nonlocal runs
        runs += 1
        return Outcome(status=None, deployer_fault=runs <= 10)

    with pytest.raises(CrashLoopError):
        await supervise(run_once, FAST)
    assert runs == 12  # ten deployer faults, then two real crashes make a loop


class NoDescriptors:
    """A child that cannot even be started: the deployer is out of descriptors."""

    def __init__(self) -> None:
        self.attempts = 0

    def run(self, bootstrap: Bootstrap, **options: Any) -> Any:
        self.attempts += 1
        raise OSError(errno.EMFILE, "Too many open files")


async def test_emfile_when_starting_a_weavelet_is_retried_not_a_crash(socket_dir: Path) -> None:
    child = NoDescriptors()
    config = parse_config("")
    group = Group(name="g", components=["g"], replicas=1, is_main=False)
    slot = Slot(group=group, index=0)
    group.slots = [slot]
    logged: list[tuple[str, str]] = []

    def envelope(slot: Slot) -> Envelope:
        return Envelope(
            deployment_id="d",
            replica_id=slot.replica_id,
            group="g",
            components=["g"],
            run_main=False,
            config=config,
            child=child,
            handler=None,  # type: ignore[arg-type]  # never asked: it never starts
            socket_dir=socket_dir,
            name=f"w{child.attempts}",
        )

    keeper = SlotKeeper(
        new_envelope=envelope,
        policy=FAST,
        stopping=lambda: child.attempts >= 8,
        on_up=lambda slot: None,
        on_down=lambda slot: None,
        log=lambda level, message: logged.append((level, message)),
    )
    with anyio.fail_after(20):
        outcome = await keeper.keep_filled(slot)  # no CrashLoopError after 2 attempts
    assert child.attempts == 8
    assert outcome.deployer_fault
    # Rate-limited: one warning for the eight failed starts.
    warnings = [message for level, message in logged if level == "warning"]
    assert len(warnings) == 1 and "out of file descriptors" in warnings[0]


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        now_soft, now_hard = raise_open_file_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (now_soft, now_hard)
        assert now_hard == hard and now_soft == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_purge_removes_the_run_dirs_of_dead_deployers_only(tmp_path: Path) -> None:
    dead = tmp_path / "pyweaver-4194305-abcd_123"  # above Linux's largest pid: never alive
    alive = tmp_path / f"pyweaver-{os.getpid()}-abcd_123"
    foreign = tmp_path / "pyweaver-abcd_123"  # not named by the convention: left alone
    for directory in (dead, alive, foreign):
        directory.mkdir()
        (directory / "w1.c").write_text("")
    assert purge_run_dirs(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and foreign.exists()


@asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    async def echo(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                while True:
                    await stream.send(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, echo)
        yield f"127.0.0.1:{port}"
        group.cancel_scope.cancel()


async def test_a_slow_control_plane_handler_does_not_stall_proxied_traffic() -> None:
    """The proxy shares the deployer's event loop with the control plane. Every
    control-plane handler awaits (none computes for long: messages are small and decoded
    by the strict decoder under frame caps), so a slow one leaves the loop to the proxy."""
    async with echo_server() as backend, TcpProxy(":0", [backend]) as proxy:
        host, port = proxy.address.rsplit(":", 1)
        slow_handler_done = anyio.Event()

        async def slow_handler() -> None:  # e.g. an activation waiting for its group
            await anyio.sleep(5)
            slow_handler_done.set()

        async with anyio.create_task_group() as group:
            group.start_soon(slow_handler)
            async with await anyio.connect_tcp(host, int(port)) as stream:
                for index in range(50):
                    await stream.send(b"%d" % index)
                    assert await stream.receive() == b"%d" % index
            assert not slow_handler_done.is_set()
            group.cancel_scope.cancel()
