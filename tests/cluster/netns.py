"""Network-namespace "hosts" on one machine, for multi-host tests.

Theory of operation. `Network.create(n)` makes one network namespace per host plus one
"switch" namespace holding a Linux bridge. Each host gets a veth pair: `eth0` inside the
host (with address `10.211.0.<i>/24`, `i` = 1..n) and port `p<i>` on the bridge inside the
switch. Nothing is created in the machine's root namespace, so the addresses are reachable
only from processes started inside these namespaces (`ip netns exec NS ...`, see
`Network.exec_argv`), and traffic can never leave them.

Names carry `PREFIX`, the creating process's PID and a per-process sequence number
(`pwtest-<pid>-<seq>-h1`), so parallel runs never collide, and a later run can recognise
and delete the leftovers of a crashed one: `cleanup_leftovers()` deletes every namespace
and run directory with our prefix whose PID is no longer alive, after killing (by PID) any
process still inside those namespaces.

Each host also gets a private directory (`Host.home`) under the run directory, so a
process "on" a host can be given a working directory that no other host uses.

Partitions: `cut(host)` sets the host's bridge port down (the host's `eth0` loses carrier,
as when a cable is pulled), `restore(host)` sets it up again.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PREFIX = "pwtest"
SUBNET = "10.211.0"
_IP_TIMEOUT_S = 20.0
_sequence = itertools.count()
_LEFTOVER = re.compile(rf"^{PREFIX}-(\d+)-\d+(?:-|$)")


class NetnsError(RuntimeError):
    """An `ip` command failed; the message carries the command and its stderr."""


@dataclass(frozen=True)
class Host:
    """One simulated machine: a network namespace with one address and a private directory."""

    index: int  # 1-based
    netns: str
    address: str
    switch_port: str  # the bridge port (in the switch namespace) this host is plugged into
    home: Path

    @property
    def name(self) -> str:
        return f"h{self.index}"


def skip_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed; run scripts/install-cluster-deps.sh"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
    except NetnsError as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        _ip("-n", probe, "link", "add", "br0", "type", "bridge")
    except NetnsError as exc:
        return f"cannot create a bridge inside a network namespace: {exc}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def _ip(*args: str, check: bool = True) -> str:
    argv = ["ip", *args]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_IP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def list_namespaces() -> list[str]:
    """Names of all network namespaces (ip netns list prints `name (id: N)` lines)."""
    return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]


def pids_in(netns: str) -> list[int]:
    """PIDs of the processes whose network namespace is `netns`."""
    out = _ip("netns", "pids", netns, check=False)
    return [int(word) for word in out.split() if word.isdigit()]


def kill_pids(pids: Sequence[int]) -> None:
    """SIGKILL each PID (already-gone ones are fine)."""
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_namespace(netns: str) -> None:
    # Processes left inside would keep the namespace (and its addresses) alive after
    # `ip netns del` removes the name; they are ours, kill them by PID first.
    for _ in range(3):
        pids = pids_in(netns)
        if not pids:
            break
        kill_pids(pids)
        time.sleep(0.2)
    _ip("netns", "del", netns, check=False)


def cleanup_leftovers() -> list[str]:
    """Delete namespaces and run dirs with our prefix whose creating process is dead.

    Returns what was removed. Resources of live processes (including other test runs
    going on right now) are never touched.
    """
    removed: list[str] = []
    for netns in list_namespaces():
        match = _LEFTOVER.match(netns)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        if not _pid_alive(int(match.group(1))):
            _delete_namespace(netns)
            removed.append(netns)
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"):
        match = _LEFTOVER.match(path.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        if not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


class Network:
    """N hosts on one bridge. Use as a context manager, or call `close()`; both are idempotent."""

    def __init__(self, run_id: str, switch_netns: str, hosts: list[Host], run_dir: Path) -> None:
        self.run_id = run_id
        self.switch_netns = switch_netns
        self.hosts = hosts
        self.run_dir = run_dir
        self._namespaces: list[str] = []  # everything created so far, for close()
        self._closed = False

    @classmethod
    def create(cls, n_hosts: int, subnet: str = SUBNET) -> Network:
        if not 1 <= n_hosts <= 200:
            raise ValueError(f"n_hosts must be in 1..200, got {n_hosts}")
        run_id = f"{PREFIX}-{os.getpid()}-{next(_sequence)}"
        # Short and under /tmp: Ray puts unix sockets under its temp dir, and a socket path
        # must fit in 107 bytes.
        run_dir = Path(tempfile.gettempdir()) / run_id
        run_dir.mkdir(mode=0o755)
        switch = f"{run_id}-sw"
        network = cls(run_id, switch, [], run_dir)
        try:
            _ip("netns", "add", switch)
            network._namespaces.append(switch)
            _ip("-n", switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", switch, "link", "set", "br0", "up")
            for index in range(1, n_hosts + 1):
                network._add_host(index, subnet)
        except BaseException:
            network.close()
            raise
        return network

    def _add_host(self, index: int, subnet: str) -> None:
        netns = f"{self.run_id}-h{index}"
        _ip("netns", "add", netns)
        self._namespaces.append(netns)
        port = f"p{index}"
        # Both ends are created directly inside our namespaces: no interface name ever
        # appears in the root namespace, so parallel runs cannot clash on names.
        _ip("-n", self.switch_netns, "link", "add", port, "type", "veth",
            "peer", "name", "eth0", "netns", netns)  # fmt: skip
        _ip("-n", self.switch_netns, "link", "set", port, "master", "br0", "up")
        address = f"{subnet}.{index}"
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "link", "set", "eth0", "up")
        home = self.run_dir / f"h{index}"
        home.mkdir(mode=0o755)
        self.hosts.append(Host(index, netns, address, port, home))

    def host(self, index: int) -> Host:
        """The host with 1-based `index`."""
        return self.hosts[index - 1]

    @staticmethod
    def exec_argv(host: Host, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped to run inside `host`'s network namespace."""
        return ["ip", "netns", "exec", host.netns, *argv]

    def cut(self, host: Host) -> None:
        """Unplug `host`: its bridge port goes down, so it can reach no other host."""
        _ip("-n", self.switch_netns, "link", "set", host.switch_port, "down")

    def restore(self, host: Host) -> None:
        """Plug `host` back in."""
        _ip("-n", self.switch_netns, "link", "set", host.switch_port, "up")

    def close(self) -> None:
        """Kill every process left in our namespaces (by PID), delete them and the run dir."""
        if self._closed:
            return
        self._closed = True
        for netns in reversed(self._namespaces):
            _delete_namespace(netns)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
