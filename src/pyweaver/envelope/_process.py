"""Child processes for the envelope: start, watch, stop politely.

:class:`ChildProcess` owns one OS process for the span of an ``async with``: it starts
the process, hands every line the process writes on stdout or stderr to a callback,
waits (bounded) until the process is ready, and on exit stops it politely: SIGTERM, a
grace period, then SIGKILL, all waited for under a cancellation shield so that a
cancelled deployer never leaves an orphan behind. Its reader tasks live in a task group
the context manager owns.

Restarting a child that crashed is :mod:`._supervise`'s job. The errors
(:class:`ProcessError` and its subclasses) are defined in :mod:`pyweaver._errors` and
re-exported here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import anyio
import anyio.abc
import attrs

from pyweaver._errors import (
    CrashLoopError,
    ProcessError,
    ProcessExitedError,
    ReadinessTimeoutError,
)

__all__ = [
    "JOIN_WAIT",
    "ChildProcess",
    "CrashLoopError",
    "LineCallback",
    "LineJoiner",
    "ProcessError",
    "ProcessExitedError",
    "ProcessSpec",
    "ReadinessTimeoutError",
    "ReadyCheck",
    "out_of_descriptors",
    "raise_open_file_limit",
]

LineCallback = Callable[[str, str], None]
"""``on_line(stream, text)``: ``stream`` is ``"stdout"`` or ``"stderr"``; ``text`` is one
line without its line ending or, with ``ProcessSpec.join_stderr``, the lines of one
multi-line stderr message joined by ``"\n"``. Called from the reader task, so it must
not block."""

ReadyCheck = Callable[["ChildProcess"], Awaitable[None]]
"""An extra readiness condition: returns once the child is ready (e.g. its control
socket accepts a connection), raises if it never will."""

_MAX_LINE = 64 * 1024  # longer output without a newline is delivered in pieces
_DRAIN_TIMEOUT = 1.0  # after exit, how long to wait for output still in the pipes
JOIN_WAIT = 0.05  # a joined stderr message ends this long after its last line, at most
_MAX_JOINED = 256 * 1024  # a longer joined message is delivered in pieces
_TRACEBACK_STARTS = (
    "Traceback (most recent call last):",
    "Exception Group Traceback (most recent call last):",
)
_CHAIN_LINES = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


def _is_traceback_start(line: str) -> bool:
    return line.lstrip(" +|").startswith(_TRACEBACK_STARTS)


class LineJoiner:
    """Groups a stream's lines into messages: a Python traceback (from ``Traceback (most
    recent call last):`` through its exception line, chained tracebacks included) is
    one message, and so is a line with the indented lines that follow it. A line that
    starts with ASCII RS (``\x1e``, a record of its own, such as a pyweaver log line)
    is never joined. :meth:`feed` returns the messages a line completes;
    :meth:`flush` ends the one pending (the reader calls it :data:`JOIN_WAIT` after the
    last line)."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self._size = 0
        self._mode = "plain"  # "plain" | "traceback" | "after_exception" | "group"

    def flush(self) -> list[str]:
        lines = self.pending
        while lines and not lines[-1].strip():
            lines.pop()
        self.pending = []
        self._size = 0
        return lines

    def _start(self, line: str) -> None:
        self.pending = [line]
        self._size = len(line)
        if _is_traceback_start(line):
            # An exception group's traceback is indented throughout.
            self._mode = "group" if line[:1] == " " else "traceback"
        else:
            self._mode = "plain"

    def _append(self, line: str, mode: str) -> None:
        self.pending.append(line)
        self._size += len(line) + 1
        self._mode = mode

    def feed(self, line: str) -> list[list[str]]:
        done = self._feed(line)
        return [lines for lines in done if lines]

    def _feed(self, line: str) -> list[list[str]]:
        done: list[list[str]] = []
        if self.pending and self._size + len(line) > _MAX_JOINED:
            done.append(self.flush())
        if line.startswith("\x1e"):
            done.append(self.flush())
            done.append([line])
            return done
        if not self.pending:
            self._start(line)
            return done
        indented = line[:1] in (" ", "\t")
        mode = self._mode
        if mode == "plain":
            if indented and line.strip():
                self._append(line, "plain")
            elif (
                len(self.pending) == 1
                and self.pending[0].startswith("Exception ignored in")
                and _is_traceback_start(line)
            ):
                self._append(line, "traceback")
            else:
                done.append(self.flush())
                self._start(line)
        elif mode == "group":
            if indented or not line.strip():
                self._append(line, "group")
            else:
                done.append(self.flush())
                self._start(line)
        elif mode == "traceback":
            continues = indented or not line.strip() or line.startswith(_CHAIN_LINES)
            if continues or _is_traceback_start(line):
                self._append(line, "traceback")
            else:
                self._append(line, "after_exception")  # the exception line
        elif not line.strip() or (indented and self.pending[-1].strip()):
            self._append(line, "after_exception")
        elif line.startswith(_CHAIN_LINES):
            self._append(line, "traceback")
        else:
            done.append(self.flush())
            self._start(line)
        return done


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
        join_stderr: deliver a multi-line stderr message (a Python traceback, a line
            with indented continuation lines) as one text (see :class:`LineJoiner`).
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
    join_stderr: bool = False
    new_session: bool = True


@contextlib.asynccontextmanager
async def _task_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group whose host's own exception (raised inside ``async with``, or
    thrown in at an enclosing context manager's ``yield``) leaves as itself when it is
    the group's only error, not wrapped in an exception group as anyio would."""
    host_error: BaseException | None = None
    unwrap = False
    try:
        async with anyio.create_task_group() as group:
            try:
                yield group
            except BaseException as exc:
                host_error = exc
                raise
    except BaseExceptionGroup as errors:
        if host_error is None or list(errors.exceptions) != [host_error]:
            raise
        unwrap = True
    if unwrap:
        assert host_error is not None
        raise host_error


class ChildProcess(anyio.AsyncContextManagerMixin):
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

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[ChildProcess]:
        spec = self.spec
        process = self._process = await anyio.open_process(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=spec.cwd,
            env=dict(spec.env) if spec.env is not None else None,
            start_new_session=spec.new_session,
        )
        async with _task_group() as group:
            try:
                assert process.stdout is not None and process.stderr is not None
                self._open_streams = 2
                group.start_soon(self._read_lines, "stdout", process.stdout)
                group.start_soon(self._read_lines, "stderr", process.stderr)
                group.start_soon(self._wait_for_exit, process)
                await self._wait_ready()
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await self.stop()
                    # Closing the pipes ends the readers, even those still waiting on
                    # output from a grandchild that inherited them.
                    await process.aclose()

    # The waiter and the readers are shielded: a cancelled owner must still see the
    # child exit and its last words. They end on their own once the child is stopped
    # and its pipes are closed, which leaving ``async with`` guarantees.

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
        joiner = LineJoiner() if stream == "stderr" and self.spec.join_stderr else None
        try:
            while True:
                try:
                    if joiner is not None and joiner.pending:
                        data = b""
                        with anyio.move_on_after(JOIN_WAIT):
                            data = await receive.receive()
                        if not data:  # nothing more came: the pending message is whole
                            self._emit(stream, joiner.flush())
                            continue
                    else:
                        data = await receive.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    break
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                while len(buffer) > _MAX_LINE:
                    lines.append(buffer[:_MAX_LINE])
                    buffer = buffer[_MAX_LINE:]
                for line in lines:
                    self._deliver(stream, line, joiner)
            if buffer:
                self._deliver(stream, buffer, joiner)
            if joiner is not None and joiner.pending:
                self._emit(stream, joiner.flush())
        finally:
            self._open_streams -= 1
            if self._open_streams == 0:
                self._drained.set()

    def _deliver(self, stream: str, raw: bytes, joiner: LineJoiner | None) -> None:
        line = raw.decode("utf-8", errors="replace").removesuffix("\r")
        self._last_lines.append((stream, line))
        if self.spec.ready_line is not None and line.strip() == self.spec.ready_line:
            self._ready_line_seen.set()
        if joiner is None:
            self._emit(stream, [line])
        else:
            for lines in joiner.feed(line):
                self._emit(stream, lines)

    def _emit(self, stream: str, lines: list[str]) -> None:
        if self._on_line is not None and lines:
            self._on_line(stream, "\n".join(lines))

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


_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})


def out_of_descriptors(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it, or one of a group's errors) is this
    process running out of file descriptors (``EMFILE``/``ENFILE``): a failure of the
    supervisor, not of the child it was starting."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _OUT_OF_DESCRIPTORS:
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft open-file limit to its hard limit (a deployer holds
    two descriptors per proxied connection and several per weavelet; the usual soft
    limit of 1,024 is far below the usual hard one). Returns the (soft, hard) limits
    now in force; leaves them as they were where they cannot be changed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, hard
        soft = target
    return soft, hard
