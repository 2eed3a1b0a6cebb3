"""Deterministic simulation of an app's components (Service Weaver's ``sim`` package).

Theory of operation. A :class:`Workload` names *operations* (async methods that call
components, with a hypothesis strategy per argument) and *invariants* (async methods that
check the components' state). Hypothesis draws a :class:`Program`: a seed and a list of
steps, each step a few operation calls run concurrently. Executing a program:

1. a fresh weavelet is built in this process whose every component call, including
   calls between components, goes through the codec (arguments and results are copied,
   as in a remote call) and through :class:`_SimClient`, the fault injector;
2. each step's calls run concurrently on one asyncio event loop; around every component
   call a task yields a number of times drawn from its operation call's seeded RNG, so
   tasks interleave differently from seed to seed, and identically for the same seeds
   (asyncio runs ready tasks in FIFO order);
3. with probability ``failure_rate`` a component call fails the way a remote call can:
   :class:`RetriableError` before the method runs, :class:`RemoteCallError` after it ran
   (the reply was lost), or, for a retriable method, the method runs twice (a retry after
   a lost reply); the operation call's seeded RNG decides;
4. after each step every invariant is checked (with injection off).

A failing program is shrunk by hypothesis (fewer steps, fewer calls, simpler arguments,
smaller seed) and saved in hypothesis's example database (a directory you choose), which
replays it first on the next run; the failure carries the shrunk program as a note, and
:func:`replay` re-runs it.

Determinism holds for components whose behaviour depends only on their inputs, their
state and the order of events: real time (``anyio.sleep``, clocks), real I/O and threads
are not simulated. Operations that raise :class:`RemoteCallError` (e.g. an injected
failure they let through, also when a component relays it as a
:class:`RemoteException` naming that type) count as failed operations, not as failures
of the run; any other exception fails the run.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import attrs
import hypothesis
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from pyweaver._errors import RemoteCallError, RemoteException, RetriableError
from pyweaver._runtime._component import Instance, full_name
from pyweaver._runtime._placement import SinglePlacement
from pyweaver._runtime._registry import Registry
from pyweaver._runtime._stubs import Handler
from pyweaver._runtime._weavelet import Weavelet
from pyweaver.contract._config import AppConfig, parse_config
from pyweaver.weavertest._runner import Fake

__all__ = [
    "Call",
    "Options",
    "Program",
    "Workload",
    "invariant",
    "operation",
    "programs",
    "replay",
    "run",
]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_OPERATION = "_pyweaver_sim_operation"
_INVARIANT = "_pyweaver_sim_invariant"


def _is_async(method: object) -> bool:
    return inspect.iscoroutinefunction(method)


def operation(**strategies: st.SearchStrategy[Any]) -> Callable[[F], F]:
    """Mark a :class:`Workload` method as an operation; each keyword names one of its
    parameters and the hypothesis strategy its values are drawn from."""

    def mark(method: F) -> F:
        if not _is_async(method):
            raise TypeError(f"sim operation {method.__qualname__} must be an async method")
        parameters = [p for p in inspect.signature(method).parameters if p != "self"]
        if sorted(parameters) != sorted(strategies):
            raise TypeError(
                f"sim operation {method.__qualname__}: strategies {sorted(strategies)} "
                f"must name exactly its parameters {sorted(parameters)}"
            )
        setattr(method, _OPERATION, dict(strategies))
        return method

    return mark


def invariant(method: F) -> F:
    """Mark a :class:`Workload` method as an invariant, checked after every step
    (it fails the run by raising, typically with ``assert``)."""
    if not _is_async(method):
        raise TypeError(f"sim invariant {method.__qualname__} must be an async method")
    setattr(method, _INVARIANT, True)
    return method


class Workload:
    """Base class of a simulation's workload: operations (:func:`operation`) that call
    components, invariants (:func:`invariant`) that check them. One instance per
    simulated program, so attributes may hold per-run state (a model to compare with)."""

    app: Instance

    async def init(self) -> None:
        """Runs once before the first step: get components with ``self.app.get``."""

    @classmethod
    def operations(cls) -> dict[str, dict[str, st.SearchStrategy[Any]]]:
        found = {
            name: getattr(member, _OPERATION)
            for name, member in inspect.getmembers(cls)
            if hasattr(member, _OPERATION)
        }
        if not found:
            raise TypeError(f"sim workload {cls.__qualname__} has no @sim.operation method")
        return found

    @classmethod
    def invariants(cls) -> list[str]:
        return [name for name, member in inspect.getmembers(cls) if hasattr(member, _INVARIANT)]


@attrs.frozen
class Call:
    """One operation call: ``Call("transfer", {"src": 0, "dst": 1, "amount": 5}, seed=9)``.

    ``seed`` drives what happens to the component calls this operation makes (their
    yields and injected failures): a property of the call, so a failing call keeps
    failing the same way when hypothesis removes the calls around it.
    """

    operation: str
    args: Mapping[str, Any]
    seed: int = 0

    def __repr__(self) -> str:
        return f"Call({self.operation!r}, {dict(self.args)!r}, seed={self.seed})"


@attrs.frozen
class Program:
    """What one simulated run does: ``steps[i]`` runs its calls concurrently, then the
    invariants are checked; ``seed`` drives the yields of the code outside operations
    (``init``, invariants), each call's own seed those of its operation."""

    seed: int
    steps: tuple[tuple[Call, ...], ...]

    def __repr__(self) -> str:
        steps = ", ".join(
            "(" + "".join(f"{call!r}, " for call in step) + ")" for step in self.steps
        )
        return f"Program(seed={self.seed}, steps=({steps}{',' if len(self.steps) == 1 else ''}))"


@attrs.frozen(kw_only=True)
class Options:
    """How much to simulate, and how hostile the simulated network is.

    Attributes:
        examples: programs hypothesis tries (before shrinking a failure).
        max_steps: steps per program at most.
        max_concurrency: operation calls run together in one step at most.
        failure_rate: probability that a component call fails (0 turns injection off).
        max_yields: a task yields up to this many times around each component call.
        step_timeout: seconds a step may take before the run fails (a deadlock?).
        database: directory of hypothesis's example database, where failing programs
            are saved and replayed first (default: hypothesis's own, ``.hypothesis/``).
        seed: fixes hypothesis's own randomness, for a reproducible search (``None``:
            random, as hypothesis does). Hypothesis neither reads nor writes the
            database when the seed is fixed.
    """

    examples: int = 100
    max_steps: int = 12
    max_concurrency: int = 3
    failure_rate: float = 0.05
    max_yields: int = 3
    step_timeout: float = 10.0
    database: str | Path | None = None
    seed: int | None = None


def programs(workload: type[Workload], options: Options = Options()) -> st.SearchStrategy[Program]:
    """The hypothesis strategy of :class:`Program` for ``workload``."""
    calls = st.one_of(
        [
            st.builds(
                Call,
                st.just(name),
                st.fixed_dictionaries(strategies),
                st.integers(0, 2**16 - 1),
            )
            for name, strategies in sorted(workload.operations().items())
        ]
    )
    step = st.lists(calls, min_size=1, max_size=options.max_concurrency).map(tuple)
    return st.builds(
        Program,
        seed=st.integers(0, 2**32 - 1),
        steps=st.lists(step, min_size=1, max_size=options.max_steps).map(tuple),
    )


# The random source of the running operation (a task): its yields and failures.
_rng: ContextVar[random.Random] = ContextVar("pyweaver_sim_rng")


class _SimClient:
    """The simulated network: every component call of the simulated weavelet comes here
    (through the codec, so values are copied) and may be delayed, failed or repeated."""

    def __init__(self, options: Options) -> None:
        self.handlers: dict[bytes, Handler] = {}
        self.options = options
        self.injecting = True

    async def _yield(self, rng: random.Random) -> None:
        for _ in range(rng.randrange(self.options.max_yields + 1)):
            await anyio.lowlevel.checkpoint()

    async def call(
        self, method_key: bytes, payload: bytes, *, retriable: bool = True, shard_key: int = 0
    ) -> bytes:
        handler = self.handlers[method_key]
        rng = _rng.get()
        await self._yield(rng)
        fault = ""
        if self.injecting and rng.random() < self.options.failure_rate:
            fault = rng.choice(("before", "after", "twice") if retriable else ("before", "after"))
        if fault == "before":
            raise RetriableError("sim: injected failure before the method ran")
        result = await handler(payload)
        if fault == "twice":
            await self._yield(rng)
            result = await handler(payload)
        await self._yield(rng)
        if fault == "after":
            raise RemoteCallError("sim: injected failure after the method ran (reply lost)")
        return result


class _SimPlacement(SinglePlacement):
    """Every component is "remote": reached through the simulated network."""

    def __init__(self, config: AppConfig, client: _SimClient) -> None:
        super().__init__(config)
        self._client = client

    def is_local(self, component: str) -> bool:
        return False

    async def client(self, component: str) -> _SimClient:
        return self._client


_SYSTEM_FAILURES = frozenset(
    f"{kind.__module__}.{kind.__qualname__}" for kind in (RemoteCallError, RetriableError)
)


def _is_system_failure(exc: Exception) -> bool:
    """A failed component call, raised here or relayed by a component that let it
    escape (it then reaches its caller as a RemoteException naming its type)."""
    return isinstance(exc, RemoteCallError) or (
        isinstance(exc, RemoteException) and exc.type_name in _SYSTEM_FAILURES
    )


async def _execute(
    workload_type: type[Workload],
    program: Program,
    config: AppConfig,
    fakes: Mapping[str, object],
    options: Options,
) -> None:
    _rng.set(random.Random(program.seed))
    client = _SimClient(options)
    weavelet = Weavelet(Registry(), config, _SimPlacement(config, client), fakes=fakes)
    client.handlers = weavelet.handlers()
    invariants = workload_type.invariants()
    try:
        workload = workload_type()
        workload.app = weavelet.main_instance()
        client.injecting = False
        await workload.init()

        async def check(after: str) -> None:
            client.injecting = False
            for name in invariants:
                try:
                    await getattr(workload, name)()
                except Exception as exc:
                    exc.add_note(f"sim: invariant {name} failed after {after}")
                    raise
            client.injecting = True

        await check("init")
        for index, step in enumerate(program.steps):
            failures: list[tuple[int, BaseException]] = []

            with anyio.move_on_after(options.step_timeout) as timeout:
                async with anyio.create_task_group() as tasks:
                    for position, call in enumerate(step):
                        tasks.start_soon(_perform, workload, call, index, position, failures)
            if timeout.cancelled_caught:
                raise TimeoutError(
                    f"sim: step {index} {step!r} did not finish within "
                    f"{options.step_timeout:g} s (a deadlock?)"
                )
            if failures:
                raise min(failures, key=lambda failure: failure[0])[1]
            await check(f"step {index}")
    finally:
        await weavelet.shutdown()


async def _perform(
    workload: Workload,
    call: Call,
    step: int,
    position: int,
    failures: list[tuple[int, BaseException]],
) -> None:
    """Run one operation call in its own task, with its own random source."""
    _rng.set(random.Random(call.seed))  # this task's, and its component calls'
    try:
        await getattr(workload, call.operation)(**call.args)
    except Exception as exc:
        if _is_system_failure(exc):
            return  # a system failure the operation let through: allowed
        exc.add_note(f"sim: operation {call!r} failed in step {step}")
        failures.append((position, exc))


def _run_one(
    workload: type[Workload],
    program: Program,
    config: AppConfig,
    fakes: Mapping[str, object],
    options: Options,
) -> None:
    try:
        anyio.run(_execute, workload, program, config, fakes, options, backend="asyncio")
    except Exception as exc:
        exc.add_note(
            f"sim: failing program of {workload.__qualname__}:\n  {program!r}\n"
            f"replay it with pyweaver.weavertest.sim.replay({workload.__qualname__}, program)"
        )
        raise


def _prepare(config: str, fakes: Sequence[Fake[Any]]) -> tuple[AppConfig, dict[str, object]]:
    return parse_config(config, path="<sim config>"), {full_name(f.iface): f.impl for f in fakes}


def run(
    workload: type[Workload],
    *,
    config: str = "",
    fakes: Sequence[Fake[Any]] = (),
    options: Options = Options(),
) -> None:
    """Simulate ``workload``: run ``options.examples`` random programs (saved failures
    first), raising the first failure found, shrunk, with the program in its notes.

    Call it from a synchronous test: it runs its own event loop per program.
    """
    parsed, fake_impls = _prepare(config, fakes)
    database: dict[str, Any] = {}
    if options.database is not None:
        database["database"] = DirectoryBasedExampleDatabase(str(options.database))
    settings = hypothesis.settings(
        max_examples=options.examples,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            hypothesis.HealthCheck.too_slow,
            hypothesis.HealthCheck.data_too_large,
        ],
        **database,
    )

    @settings
    @hypothesis.given(program=programs(workload, options))
    def simulate(program: Program) -> None:
        _run_one(workload, program, parsed, fake_impls, options)

    # Each workload has its own entries in the database (as hypothesis.stateful does).
    simulate.hypothesis.inner_test._hypothesis_internal_add_digest = (  # type: ignore[attr-defined]
        f"pyweaver.sim:{workload.__module__}.{workload.__qualname__}".encode()
    )
    if options.seed is not None:
        simulate = hypothesis.seed(options.seed)(simulate)
    simulate()


def replay(
    workload: type[Workload],
    program: Program,
    *,
    config: str = "",
    fakes: Sequence[Fake[Any]] = (),
    options: Options = Options(),
) -> None:
    """Run one ``program`` (as printed by a failing :func:`run`) exactly as before."""
    parsed, fake_impls = _prepare(config, fakes)
    _run_one(workload, program, parsed, fake_impls, options)
