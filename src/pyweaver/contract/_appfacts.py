"""Learning what an app's code says, without running it: its components, whether each
uses ``WithConfig``, its listener names, and the problems of its code.

A deployer must not import the app (it never imports the app-side runtime), and an
app may hang or crash at import. So the app is imported in a child process,
``python -m pyweaver._check --describe OUT TARGET [CONFIG NAME]``, with a timeout; the child
writes a JSON description to ``OUT`` (:class:`Description`). This is Service Weaver's
"read the component graph from the binary" for Python.

:func:`check_deployment` is what every deployer runs before it starts anything: the
description, then :func:`~pyweaver.contract._config.check_app_config`. ``pyweaver
check`` runs the same two steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from pyweaver._errors import ConfigError
from pyweaver.contract._config import AppConfig, AppFacts, check_app_config
from pyweaver.contract._names import BOOTSTRAP_ENV, CONFIG_ENV

__all__ = [
    "DEFAULT_IMPORT_TIMEOUT",
    "CheckedApp",
    "Description",
    "app_target",
    "check_deployment",
    "describe_app",
]

#: Seconds the app's import may take before it counts as hung.
DEFAULT_IMPORT_TIMEOUT: Final = 30.0
_DESCRIBER: Final = "pyweaver._check"
_LAST_LINES: Final = 12


@attrs.frozen(kw_only=True)
class Description:
    """What the child process found: the facts, and the graph as text for humans."""

    facts: AppFacts
    graph: str = ""
    mermaid: str = ""


def app_target(config: AppConfig) -> str:
    """The app of ``config``: its script (which must exist) or its module."""
    script = config.binary_path()
    file = str(config.path) if config.path is not None else "<config>"
    if script is not None:
        if not script.is_file():
            raise ConfigError(f"{file}: [serviceweaver] binary: {script} does not exist")
        return str(script)
    if config.module:
        return config.module
    raise ConfigError(f"{file}: [serviceweaver] names neither binary nor module")


def describe_app(
    target: str,
    *,
    config: AppConfig | None = None,
    timeout: float = DEFAULT_IMPORT_TIMEOUT,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Description:
    """Import ``target`` (a script path or module name) in a child process and describe
    it. ``config`` (from a file) also has its ``WithConfig`` sections checked against
    the config classes. Raises ConfigError when the import fails (with the
    last lines of the app's traceback) or takes longer than ``timeout`` seconds."""
    child_env = dict(os.environ if env is None else env)
    child_env.pop(BOOTSTRAP_ENV, None)
    child_env.pop(CONFIG_ENV, None)
    with tempfile.TemporaryDirectory(prefix="pyweaver-check-") as scratch:
        out = Path(scratch) / "description.json"
        if "/" in target or target.endswith(".py"):
            target = str(Path(target).resolve())  # the child runs in ``cwd``
        argv = [sys.executable, "-m", _DESCRIBER, "--describe", str(out), target]
        if config is not None and config.path is not None:
            # The file to read, and the name messages give it (the caller's spelling).
            argv.extend([str(config.path.resolve()), str(config.path)])
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills it all
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise ConfigError(
                f"app {target}: importing it did not finish within {timeout:g} s; does "
                "module-level code wait for something? (code under "
                '`if __name__ == "__main__":` does not run here; raise the limit with '
                "--timeout)"
            ) from None
        except BaseException:
            _kill_group(process)
            raise
        text = output.decode("utf-8", "replace")
        if process.returncode != 0 or not out.is_file():
            lines = [line for line in text.splitlines() if line.strip()][-_LAST_LINES:]
            detail = "\n".join(f"  | {line}" for line in lines) or "  (no output)"
            raise ConfigError(
                f"app {target}: importing it failed (exit status {process.returncode}):\n{detail}"
            )
        data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return Description(
        facts=AppFacts.from_json(data["facts"]),
        graph=str(data.get("graph", "")),
        mermaid=str(data.get("mermaid", "")),
    )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()  # reaps it and closes its pipe


@attrs.frozen(kw_only=True)
class CheckedApp:
    """What :func:`check_deployment` learned: the app's facts, and the warnings to show."""

    facts: AppFacts
    warnings: list[str]


def check_deployment(
    config: AppConfig, *, timeout: float = DEFAULT_IMPORT_TIMEOUT
) -> CheckedApp:
    """What a deployer runs before it starts anything: import the app of ``config`` in
    a child process (as its weavelets will: from the config file's directory, with its
    ``env``) and check the config against it. Raises ConfigError (every error, one per
    line; also when the app cannot be imported); returns the app's facts (components,
    routed ones, listeners) and the warnings."""
    target = app_target(config)
    base = config.path.parent if config.path is not None else Path()
    description = describe_app(
        target,
        config=config,
        timeout=timeout,
        cwd=str(base),
        env={**os.environ, **config.env_vars()},
    )
    facts = description.facts
    findings = check_app_config(config, facts)
    errors = [*facts.app_errors, *findings.errors]
    if errors:
        raise ConfigError("\n".join(errors))
    return CheckedApp(facts=facts, warnings=findings.warnings)
