"""The bootstrap and control messages on their own: round trips, malformed input, and
the slot balancer that routes a weavelet's calls."""

from __future__ import annotations

import pytest

from pyweaver._errors import RemoteProtocolError
from pyweaver.contract import Bootstrap, BootstrapError
from pyweaver.contract import messages as m
from pyweaver.contract._bootstrap import pack_config, unpack_config
from pyweaver.contract._config import parse_config
from pyweaver.contract._logentry import LogEntry
from pyweaver.contract._routing import Assignment

CONFIG = """
[serviceweaver]
name = "shop"
colocate = [["app.A", "app.B"]]

[multi]
listeners.web = {address = "localhost:9000"}

["app.A"]
size = 3
when = 2024-05-01
at = 07:30:00
local = 2024-05-01T07:30:00
stamp = 2024-05-01T07:30:00Z
"""


def bootstrap() -> Bootstrap:
    config = parse_config(CONFIG, path="/srv/shop/weaver.toml")
    return Bootstrap(
        deployment_id="d-1",
        replica_id="0-abc",
        group="app.A",
        components=["app.A", "app.B"],
        run_main=False,
        envelope_address="unix:///tmp/x/w1.e",
        control_address="unix:///tmp/x/w1.c",
        data_address="unix:///tmp/x/w1.d",
        config=pack_config(config),
        app=["app"],
        sys_path=["/srv/shop"],
    )


def test_bootstrap_round_trip_keeps_the_config() -> None:
    original = bootstrap()
    decoded = Bootstrap.from_environ({"PYWEAVER_BOOTSTRAP": original.encode()})
    assert decoded == original
    config = unpack_config(decoded.config)
    assert config == parse_config(CONFIG, path="/srv/shop/weaver.toml")
    assert config.sections["app.A"]["size"] == 3


@pytest.mark.parametrize("text", ["", "!!!", "aGVsbG8="])
def test_malformed_bootstrap(text: str) -> None:
    with pytest.raises(BootstrapError):
        Bootstrap.from_environ({"PYWEAVER_BOOTSTRAP": text})


def test_control_messages_round_trip() -> None:
    entry = LogEntry(time_ns=5, level="info", message="hi", attrs={"k": "v"})
    for message in (
        m.LogBatch(entries=[entry]),
        m.RoutingInfo(
            group="g",
            components=["g"],
            version=2,
            replicas={"g#0": "unix:///a"},
            assignment=Assignment.build(["g#0", "g#1"]).to_wire(),
        ),
        m.Register(
            replica_id="r",
            pid=1,
            control_address="c",
            data_address="d",
            fingerprint=b"\x00" * 16,
            version="1",
        ),
    ):
        assert m.decode(type(message), m.encode(message)) == message


def test_malformed_control_message_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        m.decode(m.Register, b"\xff\x00")
    with pytest.raises(RemoteProtocolError):
        m.decode(m.Register, m.encode(m.Empty()))


def test_control_method_keys_are_distinct() -> None:
    methods = [value for value in vars(m).values() if isinstance(value, m.ControlMethod)]
    assert len(methods) == 11
    assert len({method.key for method in methods}) == len(methods)
