"""The multi deployer's placement decisions without processes: colocation groups,
replica counts, and how many routed keys move when a group gains or loses a replica."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyweaver.contract._config import parse_config
from pyweaver.contract._routing import moved_fraction, shard_key
from pyweaver.deployers.multi import MultiDeployer, group_layout
from pyweaver.envelope import Child

pytestmark = pytest.mark.anyio

CONFIG = """
[serviceweaver]
colocate = [["app.A", "app.B"], ["main", "app.C"]]

[multi.replicas]
default = 3
"app.D" = 1
"""


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pwt-") as directory:
        yield Path(directory)


def no_child(group: str, run_main: bool) -> Child:
    raise AssertionError("no weavelet is started in these tests")


def test_groups_come_from_colocate() -> None:
    config = parse_config(CONFIG)
    layout = group_layout(config, ["app.A", "app.B", "app.C", "app.D"])
    assert layout == {
        "app.A": ["app.A", "app.B"],
        "main": ["main", "app.C"],
        "app.D": ["app.D"],
    }


def test_replicas_per_group() -> None:
    config = parse_config(CONFIG.replace("default = 3\n", ""))
    deployer = MultiDeployer(
        parse_config(CONFIG), child_factory=no_child, socket_dir=Path("/nonexistent")
    )
    assert deployer.group_of("app.B").name == "app.A"
    assert deployer.group_of("app.B").replicas == 3  # [multi] replicas
    assert deployer.group_of("app.D").replicas == 1  # its own override
    assert deployer.group_of("app.C").is_main
    assert deployer.group_of("app.C").replicas == 1  # main runs once by default
    plain = MultiDeployer(config, child_factory=no_child, socket_dir=Path("/nonexistent"))
    assert plain.group_of("app.E").replicas == 2  # the deployer's default


async def test_adding_or_removing_a_replica_moves_the_fewest_keys(socket_dir: Path) -> None:
    async with MultiDeployer(
        parse_config(""), child_factory=no_child, socket_dir=socket_dir
    ) as deployer:
        group = deployer.group_of("app.Cache")
        group.routed = True
        deployer._assign(group)
        before = group.assignment
        assert before is not None
        keys = [shard_key(f"user-{i}") for i in range(20000)]
        owners = {key: before.pick(key) for key in keys}

        moved = await deployer.scale("app.Cache", 3)  # add one: 1/3 is the minimum
        assert moved is not None and abs(moved - 1 / 3) < 0.01
        after = group.assignment
        assert after is not None
        sampled = sum(owners[key] != after.pick(key) for key in keys) / len(keys)
        assert abs(sampled - moved) < 0.02
        # Keys that moved went to the new replica only.
        assert {after.pick(k) for k in keys if owners[k] != after.pick(k)} == {"app.Cache#2"}

        moved = await deployer.scale("app.Cache", 2)  # remove it again: 1/3 again
        assert moved is not None and abs(moved - 1 / 3) < 0.01
        assert group.assignment is not None
        assert moved_fraction(before, group.assignment) < 0.01  # back where we started
        assert group.moved_fractions == [pytest.approx(1 / 3, abs=0.01)] * 2
