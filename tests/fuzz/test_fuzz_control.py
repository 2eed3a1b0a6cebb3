"""Fuzzing the control channel's message decoding (``contract/_messages.py``) and the
strict CBOR decoder every wire decode goes through.

Whatever the bytes, decoding a control message returns that message or raises
:class:`RemoteProtocolError`; the strict decoder raises only ``CBORDecodeError``; a
bootstrap only ``BootstrapError``.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import attrs
import cbor2
from hypothesis import given
from hypothesis import strategies as st

from pyweaver import call
from pyweaver._errors import BootstrapError
from pyweaver.contract import _bootstrap, _messages
from pyweaver.contract._logentry import LogEntry

from ._profile import fuzz_settings
from .test_fuzz_call import cbor_or_garbage, cbor_values, mutated

MESSAGE_TYPES: list[type[Any]] = sorted(
    (
        value
        for name in _messages.__all__
        if isinstance(value := getattr(_messages, name), type)
        and value.__module__ == _messages.__name__
        and hasattr(value, "__attrs_attrs__")
        and name != "ControlMethod"
    ),
    key=lambda kind: kind.__name__,
)


def examples() -> list[tuple[type[Any], bytes]]:
    """One valid encoding of every control message type (the fuzzer mutates them)."""
    values: dict[str, Any] = {
        "str": "a",
        "int": 7,
        "bool": True,
        "bytes": b"fp",
        "float": 1.5,
        "list[str]": ["a", "b"],
        "dict[str, str]": {"a": "b"},
        "list[LogEntry]": [LogEntry(time_ns=1, level="info", message="m")],
        "list[dict[str, Any]]": [{"k": 1}],
        "dict[str, Any] | None": None,
    }
    out = []
    for kind in MESSAGE_TYPES:
        fields: dict[str, Any] = {}
        for field in kind.__attrs_attrs__:
            if field.default is not attrs.NOTHING:
                continue
            fields[field.name] = values.get(str(field.type), "a")
        try:
            out.append((kind, _messages.encode(kind(**fields))))
        except Exception:
            out.append((kind, cbor2.dumps(fields)))
    return out


EXAMPLES = examples()


def decode_any(kind: type[Any], data: bytes) -> None:
    try:
        message = _messages.decode(kind, data)
    except call.RemoteProtocolError:
        return
    assert isinstance(message, kind)


def test_every_message_type_is_covered() -> None:
    assert len(MESSAGE_TYPES) >= 14
    for kind, encoded in EXAMPLES:
        assert isinstance(_messages.decode(kind, encoded), kind)


@fuzz_settings()
@given(
    kind=st.sampled_from(MESSAGE_TYPES),
    data=st.one_of(
        st.binary(max_size=256),
        st.sampled_from([encoded for _, encoded in EXAMPLES]).flatmap(mutated),
        cbor_values.map(cbor_or_garbage),
        st.dictionaries(st.text(max_size=12), cbor_values, max_size=6).map(cbor_or_garbage),
    ),
)
def test_control_messages_decode_or_raise_remote_protocol_error(
    kind: type[Any], data: bytes
) -> None:
    decode_any(kind, data)


@fuzz_settings()
@given(
    data=st.one_of(
        st.binary(max_size=256),
        cbor_values.map(cbor_or_garbage),
        st.lists(st.integers(0, 255), max_size=16).map(
            lambda heads: b"".join(struct.pack("B", h) for h in heads)
        ),
    ),
)
def test_strict_decoder_and_bootstrap_raise_only_their_errors(data: bytes) -> None:
    for loads in (call.strict_cbor_loads, call.strict_payload_loads):
        try:
            loads(data)
        except cbor2.CBORDecodeError:
            pass
    try:
        _bootstrap.Bootstrap.decode(base64.b64encode(data).decode())
    except BootstrapError:
        pass
