"""Child processes for the envelope: start, watch, stop politely, restart.

:class:`ChildProcess` owns one OS process for the span of an ``async with``: it starts
the process, hands every line the process writes on stdout or stderr to a callback,
waits (bounded) until the process is ready, and on exit stops it politely: SIGTERM, a
grace period, then SIGKILL, all waited for under a cancellation shield so that a
cancelled deployer never leaves an orphan behind. Its reader tasks live in a task group
the context manager owns.

:class:`Supervisor` keeps one child running under a :class:`RestartPolicy`: a child that
crashes (exits with a non-zero status, or never becomes ready) is restarted after an
exponentially growing delay; ``max_crashes`` crashes within ``window`` seconds is a
crash loop, and the supervisor gives up with a :class:`CrashLoopError` carrying the last
lines the child wrote, which is usually the traceback that explains it.

Errors::

    PyWeaverError
    └── ProcessError              argv, returncode, last_lines
        ├── ProcessExitedError    the child exited before it was ready
        ├── ReadinessTimeoutError the child was not ready in time (it has been stopped)
        └── CrashLoopError        the supervisor gave up restarting the child
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType

import anyio
import anyio.abc
import attrs

from pyweaver._errors import PyWeaverError

__all__ = [
    "ChildProcess",
    "CrashLoopError",
    "LineCallback",
    "ProcessError",
    "ProcessExitedError",
    "ProcessSpec",
    "ReadinessTimeoutError",
    "ReadyCheck",
    "RestartPolicy",
    "Supervisor",
]

LineCallback = Callable[[str, str], None]
"""``on_line(stream, line)``: ``stream`` is ``"stdout"`` or ``"stderr"``; ``line`` has no
line ending. Called from the reader task, so it must not block."""

ReadyCheck = Callable[["ChildProcess"], Awaitable[None]]
"""An extra readiness condition: returns once the child is ready (e.g. its control
socket accepts a connection), raises if it never will."""

_MAX_LINE = 64 * 1024  # longer output without a newline is delivered in pieces
_DRAIN_TIMEOUT = 1.0  # after exit, how long to wait for output still in the pipes


class ProcessError(PyWeaverError):
    """A child process failed.

    Attributes:
        argv: the command line.
        returncode: the exit status (negative: killed by that signal), None if running.
        last_lines: the last lines it wrote, as ``(stream, line)`` pairs.
    """

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str],
        returncode: int | None,
        last_lines: Sequence[tuple[str, str]],
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.last_lines = tuple(last_lines)
        text = f"{message}: {' '.join(self.argv)}"
        if returncode is not None:
            text += f" (exit status {returncode})"
        if self.last_lines:
            output = "\n".join(f"  {stream}| {line}" for stream, line in self.last_lines)
            text += f"\nlast output:\n{output}"
        super().__init__(text)


class ProcessExitedError(ProcessError):
    """The child exited before it was ready."""


class ReadinessTimeoutError(ProcessError):
    """The child was not ready in time; it has been stopped."""


class CrashLoopError(ProcessError):
    """The child crashed ``max_crashes`` times within ``window`` seconds; the
    supervisor gave up."""


@attrs.frozen(kw_only=True)
class ProcessSpec:
    """How to start a child.

    Attributes:
        argv: the command line, e.g. ``(sys.executable, "app.py")``.
        env: the complete environment; None inherits ours. To add to it, pass
            ``{**os.environ, "KEY": "value"}``.
        cwd: the working directory; None is ours.
        ready_line: if set, the child is ready once it writes exactly this line (on
            either stream, surrounding whitespace ignored).
        ready_timeout: seconds to wait for readiness.
        stop_grace: seconds between SIGTERM and SIGKILL when stopping.
        keep_lines: how many of the last output lines to keep for error reports.
        new_session: start the child in its own session, so a Ctrl-C in the terminal
            reaches only the deployer, which then stops children in order.
    """

    argv: tuple[str, ...] = attrs.field(converter=tuple)
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    ready_line: str | None = None
    ready_timeout: float = 30.0
    stop_grace: float = 5.0
    keep_lines: int = 50
    new_session: bool = True


async def _exit_task_group(
    group: anyio.abc.TaskGroup,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    traceback: TracebackType | None,
) -> bool:
    """Exit ``group``; when the only error is the body's own exception, let it
    propagate as itself rather than wrapped in an exception group."""
    try:
        return bool(await group.__aexit__(exc_type, exc, traceback))
    except BaseExceptionGroup as errors:
        if exc is not None and len(errors.exceptions) == 1 and errors.exceptions[0] is exc:
            return False
        raise


class ChildProcess:
    """One child process, alive for the span of ``async with``.

    ``async with ChildProcess(spec, on_line=..., ready=...) as child`` returns once the
    child is ready (``spec.ready_line`` seen and ``ready(child)`` returned; at once if
    neither is given), or raises :class:`ProcessExitedError` /
    :class:`ReadinessTimeoutError` after stopping it. Leaving the block stops it.
    """

    def __init__(
        self,
        spec: ProcessSpec,
        *,
        on_line: LineCallback | None = None,
        ready: ReadyCheck | None = None,
    ) -> None:
        self.spec = spec
        self._on_line = on_line
        self._ready = ready
        self._process: anyio.abc.Process | None = None
        self._group: anyio.abc.TaskGroup | None = None
        self._exited = anyio.Event()
        self._ready_line_seen = anyio.Event()
        self._open_streams = 0
        self._drained = anyio.Event()
        self._last_lines: deque[tuple[str, str]] = deque(maxlen=max(spec.keep_lines, 0))
        self._returncode: int | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the child process has not been started")
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the child has exited (negative: killed by a signal)."""
        return self._returncode

    @property
    def last_lines(self) -> list[tuple[str, str]]:
        """The last ``spec.keep_lines`` lines written, as ``(stream, line)`` pairs."""
        return list(self._last_lines)

    async def __aenter__(self) -> ChildProcess:
        spec = self.spec
        self._process = await anyio.open_process(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=spec.cwd,
            env=dict(spec.env) if spec.env is not None else None,
            start_new_session=spec.new_session,
        )
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        try:
            assert self._process.stdout is not None and self._process.stderr is not None
            self._open_streams = 2
            self._group.start_soon(self._read_lines, "stdout", self._process.stdout)
            self._group.start_soon(self._read_lines, "stderr", self._process.stderr)
            self._group.start_soon(self._wait_for_exit, self._process)
            await self._wait_ready()
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._group is not None and self._process is not None
        with anyio.CancelScope(shield=True):
            await self.stop()
            # Closing the pipes ends the readers, even those still waiting on output
            # from a grandchild that inherited them.
            await self._process.aclose()
        # Outside the shield: cancel scopes must unwind in the order they were entered.
        return await _exit_task_group(self._group, exc_type, exc, traceback)

    # The waiter and the readers are shielded: a cancelled owner must still see the
    # child exit and its last words. They end on their own once the child is stopped
    # and its pipes are closed, which __aexit__ guarantees.

    async def _wait_for_exit(self, process: anyio.abc.Process) -> None:
        with anyio.CancelScope(shield=True):
            self._returncode = await process.wait()
        self._exited.set()

    async def _read_lines(self, stream: str, receive: anyio.abc.ByteReceiveStream) -> None:
        with anyio.CancelScope(shield=True):
            await self._read_lines_until_closed(stream, receive)

    async def _read_lines_until_closed(
        self, stream: str, receive: anyio.abc.ByteReceiveStream
    ) -> None:
        buffer = b""
        try:
            while True:
                try:
                    data = await receive.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    break
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                while len(buffer) > _MAX_LINE:
                    lines.append(buffer[:_MAX_LINE])
                    buffer = buffer[_MAX_LINE:]
                for line in lines:
                    self._deliver(stream, line)
            if buffer:
                self._deliver(stream, buffer)
        finally:
            self._open_streams -= 1
            if self._open_streams == 0:
                self._drained.set()

    def _deliver(self, stream: str, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").removesuffix("\r")
        self._last_lines.append((stream, line))
        if self.spec.ready_line is not None and line.strip() == self.spec.ready_line:
            self._ready_line_seen.set()
        if self._on_line is not None:
            self._on_line(stream, line)

    async def _wait_ready(self) -> None:
        if self.spec.ready_line is None and self._ready is None:
            return
        exited_first = False
        error: Exception | None = None
        with anyio.move_on_after(self.spec.ready_timeout) as timeout:
            async with anyio.create_task_group() as group:

                async def watch_exit() -> None:
                    nonlocal exited_first
                    await self._exited.wait()
                    exited_first = True
                    group.cancel_scope.cancel()

                group.start_soon(watch_exit)
                try:
                    if self.spec.ready_line is not None:
                        await self._ready_line_seen.wait()
                    if self._ready is not None:
                        await self._ready(self)
                except Exception as exc:
                    error = exc
                group.cancel_scope.cancel()
        if exited_first:
            with anyio.move_on_after(_DRAIN_TIMEOUT):
                await self._drained.wait()
            raise self._error(ProcessExitedError, "the process exited before it was ready")
        if error is not None:
            raise error
        if timeout.cancelled_caught:
            raise self._error(
                ReadinessTimeoutError,
                f"the process was not ready within {self.spec.ready_timeout:g} s",
            )

    def _error(self, kind: type[ProcessError], message: str) -> ProcessError:
        return kind(
            message,
            argv=self.spec.argv,
            returncode=self._returncode,
            last_lines=list(self._last_lines),
        )

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the child, if it is still running."""
        if self._process is not None and not self._exited.is_set():
            try:
                os.kill(self._process.pid, signum)
            except ProcessLookupError:
                pass

    async def wait(self) -> int:
        """Wait for the child to exit, and for its output to be delivered; its status."""
        await self._exited.wait()
        with anyio.move_on_after(_DRAIN_TIMEOUT):
            await self._drained.wait()
        assert self._returncode is not None
        return self._returncode

    async def stop(self, grace: float | None = None) -> int:
        """Stop the child politely: SIGTERM, up to ``grace`` seconds (default
        ``spec.stop_grace``), then SIGKILL. Shielded from cancellation. Its status."""
        grace = self.spec.stop_grace if grace is None else grace
        with anyio.CancelScope(shield=True):
            if not self._exited.is_set():
                self.send_signal(signal.SIGTERM)
                with anyio.move_on_after(grace):
                    await self._exited.wait()
            if not self._exited.is_set():
                self.send_signal(signal.SIGKILL)
            returncode = await self.wait()
        return returncode


@attrs.frozen(kw_only=True)
class RestartPolicy:
    """When to restart a crashed child, and when to give up.

    Attributes:
        max_crashes: give up after this many crashes ...
        window: ... within this many seconds (a crash loop).
        initial_backoff: delay before the first restart, in seconds.
        max_backoff: the delay doubles (``multiplier``) per crash up to this; it falls
            back to ``initial_backoff`` after a child has run for ``window`` seconds.
        restart_on_success: restart a child that exits with status 0 too (otherwise a
            clean exit ends supervision).
    """

    max_crashes: int = 5
    window: float = 60.0
    initial_backoff: float = 0.1
    max_backoff: float = 10.0
    multiplier: float = 2.0
    restart_on_success: bool = False


class Supervisor:
    """Keeps one child running for the span of ``async with``, restarting it per
    ``policy``.

    Entering returns once the first child is ready (or raises its
    :class:`ProcessError`: a crash loop at start is a :class:`CrashLoopError`). If the
    child later crash-loops, the body of the ``async with`` is cancelled and the block
    raises :class:`CrashLoopError`. Leaving the block stops the current child.
    ``on_start(child)`` runs after each start, once the child is ready.
    """

    def __init__(
        self,
        spec: ProcessSpec,
        *,
        policy: RestartPolicy | None = None,
        on_line: LineCallback | None = None,
        ready: ReadyCheck | None = None,
        on_start: Callable[[ChildProcess], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = spec
        self.policy = policy or RestartPolicy()
        self._on_line = on_line
        self._ready = ready
        self._on_start = on_start
        self._group: anyio.abc.TaskGroup | None = None
        self._child: ChildProcess | None = None
        self._started = anyio.Event()
        self._done = anyio.Event()
        self._error: Exception | None = None
        self._returncode: int | None = None
        self.starts = 0
        """How many children have been started and became ready."""

    @property
    def child(self) -> ChildProcess | None:
        """The running child, None between a crash and its restart."""
        return self._child

    async def __aenter__(self) -> Supervisor:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._supervise)
        try:
            async with anyio.create_task_group() as first:

                async def until(event: anyio.Event) -> None:
                    await event.wait()
                    first.cancel_scope.cancel()

                first.start_soon(until, self._started)
                first.start_soon(until, self._done)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if self._error is not None:
            await self.__aexit__(None, None, None)  # raises the error
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._group is not None
        self._group.cancel_scope.cancel()  # the current child is stopped as it unwinds
        suppress = await _exit_task_group(self._group, exc_type, exc, traceback)
        if self._error is not None and (exc is None or suppress):
            error, self._error = self._error, None
            raise error
        return suppress

    async def wait(self) -> int:
        """Wait until supervision ends: a clean exit's status (0), or raise the
        :class:`CrashLoopError`."""
        await self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._returncode is not None
        return self._returncode

    async def _supervise(self) -> None:
        try:
            await self._run()
        except Exception as exc:  # reported by __aexit__ / wait(), not lost
            self._fail(exc)

    def _fail(self, error: Exception) -> None:
        self._error = error
        self._done.set()
        assert self._group is not None
        self._group.cancel_scope.cancel()

    async def _run(self) -> None:
        policy = self.policy
        crashes: deque[float] = deque()
        backoff = policy.initial_backoff
        while True:
            started_at = anyio.current_time()
            last: ProcessError | ChildProcess
            try:
                child_process = ChildProcess(self.spec, on_line=self._on_line, ready=self._ready)
                async with child_process as child:
                    self._child = child
                    if self._on_start is not None:
                        await self._on_start(child)
                    self.starts += 1
                    self._started.set()
                    returncode: int | None = await child.wait()
                    last = child
            except (ProcessExitedError, ReadinessTimeoutError) as exc:
                returncode, last = exc.returncode, exc
            except OSError as exc:  # cannot even start it: restarting will not help
                error = ProcessError(
                    f"cannot start the process ({exc})",
                    argv=self.spec.argv,
                    returncode=None,
                    last_lines=(),
                )
                error.__cause__ = exc
                self._fail(error)
                return
            finally:
                self._child = None
            if returncode == 0 and not policy.restart_on_success:
                self._returncode = 0
                self._done.set()
                return
            now = anyio.current_time()
            if now - started_at >= policy.window:
                backoff = policy.initial_backoff  # it ran well for a while
            crashes.append(now)
            while crashes and crashes[0] <= now - policy.window:
                crashes.popleft()
            if len(crashes) >= policy.max_crashes:
                self._fail(
                    CrashLoopError(
                        f"crashed {len(crashes)} times within {policy.window:g} s; giving up",
                        argv=self.spec.argv,
                        returncode=returncode,
                        last_lines=last.last_lines,
                    )
                )
                return
            await anyio.sleep(backoff)
            backoff = min(backoff * policy.multiplier, policy.max_backoff)
