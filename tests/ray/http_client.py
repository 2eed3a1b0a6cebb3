"""A client inside a netns host: GETs the factors listener on request.

Reads JSON lines ``{"address": "host:port", "xs": [..], "until_ok": seconds}`` on stdin
and answers each with a ``RESULT`` line: the answers (``None`` for a failed call), and
per-call latencies in microseconds. With ``until_ok`` it retries each x (bounded) until
it is answered, counting the failures.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

RESULT_PREFIX = "RESULT "


def get(address: str, x: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{address}/?x={x}", timeout=5) as response:
            return str(response.read().decode().strip())
    except (OSError, urllib.error.URLError):
        return None


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        answers: list[str | None] = []
        latencies: list[float] = []
        failures = 0
        for x in request["xs"]:
            deadline = time.monotonic() + float(request.get("until_ok", 0))
            while True:
                began = time.perf_counter()
                answer = get(request["address"], x)
                latencies.append((time.perf_counter() - began) * 1e6)
                if answer is not None or time.monotonic() >= deadline:
                    break
                failures += 1
                time.sleep(0.2)
            answers.append(answer)
        result: dict[str, object] = {
            "tag": "answers",
            "answers": answers,
            "latencies_us": latencies,
            "failures": failures,
        }
        print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
