"""Ship code with `runtime_env={"working_dir": DIR}` to actors on HOSTS.

DIR holds a module `pw_shipped` that exists nowhere else. One actor per host imports it
and reports `VALUE`, the module's file (where the host unpacked the package) and its cwd.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import ray

from tests.cluster.drivers._driver import connect, emit


@ray.remote(num_cpus=0)
class Reader:
    def read(self) -> dict[str, Any]:
        shipped = importlib.import_module("pw_shipped")
        return {
            "value": shipped.VALUE,
            "file": shipped.__file__,
            "cwd": os.getcwd(),
            "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
        }


def main() -> None:
    working_dir, hosts = sys.argv[1], sys.argv[2:]
    connect_seconds = connect(runtime_env={"working_dir": working_dir})
    readers = {host: Reader.options(resources={host: 1}).remote() for host in hosts}  # type: ignore[attr-defined]
    reports = ray.get([reader.read.remote() for reader in readers.values()], timeout=60)
    emit(
        "shipped",
        connect_seconds=connect_seconds,
        reports=dict(zip(readers, reports, strict=True)),
    )
    for reader in readers.values():
        ray.kill(reader)


if __name__ == "__main__":
    main()
