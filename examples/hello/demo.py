"""``make demo``: start the hello app, call it over HTTP, stop it.

Runs ``examples/hello/app.py`` in one process (and, when the multi-process deployer is
available, with ``pyweaver multi deploy``) on a free port, sends
``GET /hello?name=pyweaver``, prints the answer, and stops the app with SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ADDRESS = re.compile(r"address=\S*?(127\.0\.0\.1:\d+|localhost:\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(title: str, argv: list[str], config: Path) -> None:
    print(f"--- {title}: {' '.join(argv)}")
    env = dict(os.environ, PYWEAVER_CONFIG=str(config), PYTHONUNBUFFERED="1")
    # The app logs to stderr; the multi deployer prints every process's logs to stdout.
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        address = None
        while address is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f"the app exited early (status {proc.wait()})")
            print("   ", line.rstrip())
            match = ADDRESS.search(line)
            if match and "hello listener" in line:
                address = match.group(1)
        if address is None:
            raise SystemExit("the app did not report its listener in 60 s")
        url = f"http://{address}/hello?name=pyweaver"
        for _ in range(50):
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    print(f"GET {url} -> {response.status}: {response.read().decode().strip()}")
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"no answer from {url}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
        proc.stdout.close()
        print(f"stopped with SIGTERM (exit status {status})")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = Path(tmp) / "weaver.toml"
        config.write_text(
            "[serviceweaver]\n"
            f'name = "hello"\nbinary = "{HERE / "app.py"}"\n'
            f'[single]\nlisteners.hello = {{address = "127.0.0.1:{port}"}}\n'
            f'[multi]\nlisteners.hello = {{address = "127.0.0.1:{port}"}}\n'
        )
        run("single process", [sys.executable, str(HERE / "app.py")], config)
        run(
            "multi process",
            [sys.executable, "-m", "pyweaver", "multi", "deploy", str(config)],
            config,
        )


if __name__ == "__main__":
    main()
