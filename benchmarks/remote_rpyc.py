"""Peer: RPyC with a ThreadedServer (one thread per connection).

The remote method is looked up once (``echo = conn.root.echo``) so each timed
call is one round trip.  The 64-in-flight measurement runs 64 threads, each
with its own connection.  ``--backend`` is ignored (RPyC is thread-based).
Command line: see benchlib.py.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import rpyc
from rpyc.utils.server import ThreadedServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib


class EchoService(rpyc.Service):  # type: ignore[misc]
    def exposed_echo(self, x: Any) -> Any:
        return x


def main() -> None:
    args = benchlib.parse_args()
    if args.serve:
        config = {"allow_public_attrs": False}
        if args.transport == "unix":
            path = benchlib.unix_socket_path()
            server = ThreadedServer(EchoService, socket_path=path, logger=None,
                                    protocol_config=config)
            endpoint = f"unix:{path}"
        else:
            server = ThreadedServer(EchoService, hostname=benchlib.HOST, port=0, logger=None,
                                    protocol_config=config)
            endpoint = benchlib.tcp_endpoint(server.port)
        benchlib.ready(endpoint)
        server.start()
        return
    kind, where, port = benchlib.parse_endpoint(args.connect)

    def connect() -> Any:
        if kind == "unix":
            return rpyc.utils.factory.unix_connect(where)
        return rpyc.connect(where, port)

    data = benchlib.payload(args.payload)
    connections: list[Any] = []

    def make_call() -> Any:
        connection = connect()
        connections.append(connection)
        return connection.root.echo

    if args.mode == "seq":
        result = benchlib.measure_seq_sync(make_call(), data, args.seconds)
    else:
        result = benchlib.measure_inflight_threads(make_call, data, args.seconds, args.inflight)
    benchlib.emit(result)
    for connection in connections:
        try:
            connection.close()
        except Exception:
            pass  # the server may already be gone; nothing to clean up then


if __name__ == "__main__":
    main()
