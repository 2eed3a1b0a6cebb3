"""pyweaver's build hook: compile the optional C module of local stubs.

``src/pyweaver/_runtime/_localcall.c`` makes colocated component calls ~1.5x faster
(see that file's header and ``_speedups.py``). It is compiled here, with the compiler
and flags this Python was built with (``sysconfig``), when one is at hand; without a
compiler, on a platform this hook does not know how to build for, or with
``PYWEAVER_NO_SPEEDUPS=1``, the build goes on and the wheel stays pure Python: the
stubs then run in pure Python, with the same behaviour.

An editable install (``pip install -e .``, what ``make test`` does) builds the module
next to its source, where the editable install imports it from; a wheel carries it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src", "pyweaver", "_runtime", "_localcall.c")


class LocalCallBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        if os.environ.get("PYWEAVER_NO_SPEEDUPS", "").strip() not in ("", "0"):
            self.app.display_info("pyweaver: PYWEAVER_NO_SPEEDUPS is set: pure-Python stubs")
            return
        source = Path(self.root, SOURCE)
        target = source.with_name("_localcall" + str(sysconfig.get_config_var("EXT_SUFFIX")))
        try:
            compile_extension(source, target)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            self.app.display_warning(
                f"pyweaver: {SOURCE} was not compiled ({exc}); "
                "local component calls run in pure Python (slower, same behaviour)"
            )
            return
        if version != "editable":
            build_data["force_include"][str(target)] = f"pyweaver/_runtime/{target.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True


def compile_extension(source: Path, target: Path, extra_flags: tuple[str, ...] = ()) -> None:
    """Compile and link ``source`` into the extension module ``target``, as this
    Python's own extensions are (``LDSHARED`` and ``CCSHARED``). Raises ValueError
    where sysconfig does not say how (Windows), CalledProcessError with the
    compiler's output when it fails."""
    linker = sysconfig.get_config_var("LDSHARED")
    if not linker:
        raise ValueError("sysconfig has no LDSHARED for this platform")
    command = [
        *shlex.split(str(linker)),
        *shlex.split(str(sysconfig.get_config_var("CCSHARED") or "")),
        "-O2",
        f"-I{sysconfig.get_paths()['include']}",
        *extra_flags,
        str(source),
        "-o",
        str(target),
    ]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
