"""The load generator's guard rails and arithmetic (no processes): loopback only, the
2023 task mix, percentiles."""

from __future__ import annotations

import os

import loadgen
import pytest

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://127.0.0.1:1/", "http://[::1]:8080"]
)
def test_loopback_addresses_are_accepted(url: str) -> None:
    assert not loadgen.check_loopback(url).endswith("/")


@pytest.mark.parametrize(
    "url", ["http://example.com", "http://10.0.0.1:80", "http://localhost:80", "http://127.0.0.2"]
)
def test_anything_else_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"only targets 127\.0\.0\.1"):
        loadgen.check_loopback(url)


def test_the_task_mix_is_the_2023_locustfile() -> None:
    assert loadgen.TASKS == {
        "index": 1, "setCurrency": 2, "browseProduct": 10,
        "addToCart": 2, "viewCart": 3, "checkout": 1,
    }  # fmt: skip
    assert sum(loadgen.TASKS.values()) == 19
    assert loadgen.CURRENCIES == ["EUR", "USD", "JPY", "CAD"]
    assert loadgen.QUANTITIES == [1, 2, 3, 4, 5, 10]
    assert len(loadgen.PRODUCTS) == 9


def test_percentiles_are_nearest_rank() -> None:
    report = loadgen.Report(rate=1, duration=1)
    report.latencies_ms = {"index": [float(v) for v in range(1, 101)]}
    report.completed = 100
    assert (report.percentile(50), report.percentile(99), report.percentile(100)) == (50, 99, 100)
    summary = report.summary()
    assert summary["p50_ms"] == 50 and summary["per_task"]["index"]["count"] == 100


def test_process_tree_and_cpu_of_this_process() -> None:
    assert loadgen.process_tree(os.getpid())[0] == os.getpid()
    assert loadgen.cpu_seconds([os.getpid()])[os.getpid()] > 0


async def test_a_bad_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        await loadgen.run_load("http://127.0.0.1:9", rate=0, duration=1)
