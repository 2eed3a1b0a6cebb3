"""Peer: Pyro5 with the msgpack serializer and a threaded server.

The server's thread pool is raised to 128 so 64 client connections fit.  The
sequential measurement uses one proxy; the 64-in-flight one runs 64 threads,
each with its own proxy (a Pyro5 proxy belongs to one thread and carries one
connection).  msgpack passes bytes as bytes, so the payloads are the same as
every other variant's.  ``--backend`` is ignored (Pyro5 is thread-based).
Command line: see benchlib.py.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import Pyro5.api
from Pyro5 import config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib


@Pyro5.api.expose
class Echo:
    def echo(self, x: Any) -> Any:
        return x


def main() -> None:
    args = benchlib.parse_args()
    config.SERVERTYPE = "thread"
    config.THREADPOOL_SIZE = 128
    config.SERIALIZER = "msgpack"
    if args.serve:
        if args.transport == "unix":
            path = benchlib.unix_socket_path()
            daemon = Pyro5.api.Daemon(unixsocket=path)
            daemon.register(Echo(), "echo")
            endpoint = f"unix:{path}"
        else:
            daemon = Pyro5.api.Daemon(host=benchlib.HOST, port=0)
            uri = daemon.register(Echo(), "echo")
            endpoint = benchlib.tcp_endpoint(uri.port)
        benchlib.ready(endpoint)
        daemon.requestLoop()
        return
    kind, where, port = benchlib.parse_endpoint(args.connect)
    uri = f"PYRO:echo@./u:{where}" if kind == "unix" else f"PYRO:echo@{where}:{port}"
    data = benchlib.payload(args.payload)
    if args.mode == "seq":
        proxy = Pyro5.api.Proxy(uri)
        result = benchlib.measure_seq_sync(proxy.echo, data, args.seconds)
        proxy._pyroRelease()
    else:
        proxies: list[Any] = []

        def make_call() -> Any:
            proxy = Pyro5.api.Proxy(uri)
            proxies.append(proxy)
            return proxy.echo

        result = benchlib.measure_inflight_threads(make_call, data, args.seconds, args.inflight)
    benchlib.emit(result)


if __name__ == "__main__":
    main()
