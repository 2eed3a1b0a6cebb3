"""weavertest's ``multi`` mode: the multi deployer inside a test.

The test process is the main group: its weavelet runs in-process (an
:class:`~pyweaver.envelope.InProcessChild`) and hosts nothing but the test's fakes.
Every other group runs in child processes (``python -m pyweaver._runtime``; two
replicas per group unless weaver.toml says otherwise) that import the modules defining
the app's components, with the test's ``sys.path``. The test's components are reached
over the call protocol, exactly as in ``pyweaver multi deploy``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import sniffio

from pyweaver._runtime._component import implementations
from pyweaver._runtime._registry import Registry
from pyweaver._runtime._remote import serve_weavelet
from pyweaver._runtime._weavelet import Weavelet
from pyweaver.contract import Bootstrap
from pyweaver.contract._config import AppConfig
from pyweaver.contract._logentry import LogEntry, format_pretty
from pyweaver.deployers.multi._deployer import MultiDeployer
from pyweaver.envelope import Child, InProcessChild, ProcessChild, RestartPolicy

__all__ = ["component_modules", "weavertest_deployment"]


def component_modules(exclude: Sequence[str] = ()) -> list[str]:
    """What a child process must import to have the same app: the modules that define
    the registered implementations (except those of ``exclude``d components), by name,
    or by file for a module that was loaded from a path and is not importable by name."""
    targets: set[str] = set()
    for name, impl in implementations().items():
        module_name = impl.__module__
        if name in exclude or module_name == "__main__":
            continue
        targets.add(_import_target(module_name))
    return sorted(targets)


def _import_target(module_name: str) -> str:
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and (file is None or spec.origin == file):
        return module_name
    return file or module_name


def _absolute_sys_path() -> list[str]:
    # A child runs in the same working directory, but spell it out: "" means cwd.
    return [os.path.abspath(entry) if entry else os.getcwd() for entry in sys.path]


def _print_logs(entries: Sequence[LogEntry]) -> None:
    for entry in entries:
        sys.stderr.write(format_pretty(entry) + "\n")


@asynccontextmanager
async def weavertest_deployment(
    config: AppConfig,
    fakes: Mapping[str, object],
    app: str | None,
    *,
    replicas: int = 2,
    log_sink: Any = None,
    on_deployer: Callable[[MultiDeployer], None] | None = None,
) -> AsyncIterator[Weavelet]:
    """Deploy the app's components in child processes for one test; yields the test
    process's weavelet (see the module docstring). ``on_deployer`` receives the
    deployer once it runs (to scale a group, read its status, ...)."""
    # Children import every module the test process has components from (and the
    # app), so both sides register the same components and agree on the fingerprint.
    targets = sorted({*component_modules(), *([app] if app else [])})
    sys_path = _absolute_sys_path()
    holder: dict[str, Weavelet] = {}
    registry = Registry()

    async def main_weavelet(bootstrap: Bootstrap) -> None:
        async with serve_weavelet(
            bootstrap, fakes=fakes, registry=registry, process_logging=False, watch_parent=False
        ) as agent:
            holder["weavelet"] = agent.weavelet
            await anyio.sleep_forever()

    def child(group: str, run_main: bool) -> Child:
        if run_main:
            return InProcessChild(main_weavelet)
        return ProcessChild([sys.executable, "-m", "pyweaver._runtime"], stop_grace=3.0)

    with tempfile.TemporaryDirectory(prefix="pwt-") as socket_dir:
        async with MultiDeployer(
            config,
            child_factory=child,
            socket_dir=Path(socket_dir),
            app=targets,
            sys_path=sys_path,
            backend=sniffio.current_async_library(),
            log_sink=log_sink or _print_logs,
            default_replicas=replicas,
            main_components=list(fakes),
            restart=RestartPolicy(max_crashes=3, window=30.0),
            ready_timeout=60.0,
            stop_grace=3.0,
        ) as deployer:
            await deployer.start_main()
            if on_deployer is not None:
                on_deployer(deployer)
            weavelet = holder["weavelet"]
            try:
                yield weavelet
            finally:
                await weavelet.shutdown()
