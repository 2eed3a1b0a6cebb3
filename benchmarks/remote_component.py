"""Component calls as users make them: ``await stub.echo(data)`` in a 2-process
``pyweaver multi deploy`` (see ``component_echo/echo_app.py``).

    remote_component.py --backend asyncio|asyncio+uvloop|trio --seconds S [--trace R]
        deploys component_echo/weaver.toml with ``pyweaver multi deploy`` (main and
        Echo in two weavelet processes on the given backend, talking over the multi
        deployer's transport: the call protocol on a Unix socket), lets main run
        seq/16, inflight/16 and inflight/65536 through the stub, and prints one JSON
        line: ``{"measurements": {"seq/16": {...}, "inflight/16": {...}, ...}}``.

The deployment's registry and logs go to a temporary XDG data dir (never the user's),
and the deployer is stopped by its pid (SIGINT, grace, SIGKILL of its process group)
if it outlives main.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP = HERE / "component_echo"


def deploy(backend: str, seconds: float, trace: float, measure: str, pin: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="pwcomp-") as tmp:
        out = Path(tmp) / "result.json"
        env = dict(os.environ)
        env.update(BENCH_BACKEND=backend, BENCH_SECONDS=f"{seconds:g}", BENCH_OUT=str(out),
                   BENCH_MEASURE=measure, BENCH_PIN=pin, XDG_DATA_HOME=str(Path(tmp) / "data"),
                   XDG_STATE_HOME=str(Path(tmp) / "state"), PYTHONUNBUFFERED="1")
        env.pop("PYWEAVER_CONFIG", None)
        argv = [sys.executable, "-m", "pyweaver", "multi", "deploy", str(APP / "weaver.toml")]
        if trace:
            argv += ["--trace", f"{trace:g}"]
        process = subprocess.Popen(argv, cwd=APP, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                   start_new_session=True)
        try:
            output, _ = process.communicate(timeout=8 * seconds + 90)
        except BaseException:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            raise
        if not out.exists():
            raise SystemExit(f"deploy exited {process.returncode} without results: {output[-1500:]}")
        return {"measurements": json.loads(out.read_text()), "deploy_exit": process.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["asyncio", "asyncio+uvloop", "trio"], default="asyncio")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--trace", type=float, default=0.0, help="fraction of calls traced")
    parser.add_argument("--pin", choices=["none", "cross"], default="none",
                        help="cross: main's process on CPU 0, Echo's on CPU 1")
    parser.add_argument("--variant", choices=["stub", "raw"], default="stub",
                        help="raw: the control, a plain pyweaver.call client and server between "
                             "the deployment's two processes")
    parser.add_argument("--measure", default="seq/16,inflight/16,inflight/65536")
    args = parser.parse_args()
    measure = args.measure
    if args.variant == "raw":
        measure = ",".join(f"{m}@raw" for m in measure.split(","))
    result = deploy(args.backend, args.seconds, args.trace, measure, args.pin)
    if args.variant == "raw":
        found = result["measurements"]
        assert isinstance(found, dict)
        result["measurements"] = {key.partition("@")[0]: value for key, value in found.items()}
    result.update(backend=args.backend, trace=args.trace)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
