"""The hello example under ``pyweaver multi deploy``: HTTP through the listener proxy,
junk bytes on the proxy port, traces across processes, and a proxy address already in
use."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pyweaver._errors import PyWeaverError
from pyweaver.deployers._registry import Registry, pid_alive
from pyweaver.deployers.multi._status import STATUS, fetch

pytestmark = pytest.mark.slow

HELLO = Path(__file__).parent.parent.parent / "examples" / "hello" / "app.py"


def write_config(directory: Path, address: str) -> Path:
    path = directory / "weaver.toml"
    path.write_text(
        "[serviceweaver]\n"
        'name = "hello"\n'
        f'binary = "{HELLO}"\n'
        "[multi]\n"
        f'listeners.hello = {{address = "{address}"}}\n'
    )
    return path


def start(config: Path, data_dir: Path, log: Path, *options: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYWEAVER_DATA_DIR": str(data_dir)}
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "pyweaver", "multi", "deploy", *options, str(config)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_for_listener(data_dir: Path, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the deployment ended early"
        deployments = Registry(data_dir).list("multi")
        if deployments:
            (deployment,) = deployments
            try:
                report: dict[str, Any] = anyio.run(
                    fetch, deployment.status_address, deployment.id, STATUS
                )
            except PyWeaverError:
                time.sleep(0.1)  # still starting, or a slow machine: ask again
                continue
            if report["listeners"] and report["listeners"][0]["backends"]:
                return report
        time.sleep(0.1)
    raise AssertionError("the hello listener did not come up")


@pytest.fixture
def hello(
    tmp_path: Path,
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any], Path]]:
    data_dir = tmp_path / "data"
    config = write_config(tmp_path, "127.0.0.1:0")
    process = start(config, data_dir, tmp_path / "deploy.log", "--trace", "1")
    try:
        yield process, wait_for_listener(data_dir, process), data_dir
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_http_and_junk_through_the_proxy(
    hello: tuple[subprocess.Popen[bytes], dict[str, Any], Path],
) -> None:
    process, report, data_dir = hello
    (listener,) = report["listeners"]
    address = listener["proxy"]
    with httpx.Client(base_url=f"http://{address}", timeout=10) as client:
        for _ in range(5):
            response = client.get("/hello", params={"name": "World"})
            assert (response.status_code, response.text) == (200, "Hello, dlroW!\n")
    # Junk on the proxy port (and so on main's listener behind it) breaks nothing.
    host, port = address.rsplit(":", 1)
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(os.urandom(4096))
            sock.shutdown(socket.SHUT_WR)
            try:
                sock.recv(1024)
            except OSError:
                pass
    with httpx.Client(base_url=f"http://{address}", timeout=10) as client:
        assert client.get("/hello", params={"name": "ab"}).text == "Hello, ba!\n"
    pids = {r["pid"] for g in report["groups"] for r in g["replicas"] if r["pid"]}
    assert process.poll() is None and all(pid_alive(pid) for pid in pids)

    # Tracing: each request's trace spans main (HTTP, client) and Reverser (server).
    (deployment,) = Registry(data_dir).list("multi")
    path = Registry(data_dir).logs_dir(deployment.id) / "traces.jsonl"

    def linked(spans: list[dict[str, Any]]) -> bool:
        """A Reverser server span whose parent is main's client span, in one trace."""
        clients = {(s["trace_id"], s["span_id"]) for s in spans if s["kind"] == "client"}
        return any(
            s["kind"] == "server" and (s["trace_id"], s["parent_span_id"]) in clients for s in spans
        )

    deadline = time.monotonic() + 10
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not linked(spans):
        time.sleep(0.1)
        if path.exists():
            spans = [json.loads(line) for line in path.read_text().splitlines()]
    assert linked(spans), spans
    replicas = {span["resource"].get("pyweaver.replica") for span in spans}
    assert len(replicas) >= 2  # main's and a Reverser replica's


def test_a_proxy_address_in_use_is_a_clear_immediate_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, f"127.0.0.1:{port}")
        log = tmp_path / "deploy.log"
        process = start(config, tmp_path / "data", log)
        try:
            status = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert status != 0
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in log.read_text()
