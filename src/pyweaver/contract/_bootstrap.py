"""The bootstrap: what an envelope tells the weavelet process it starts.

It travels in one environment variable, ``PYWEAVER_BOOTSTRAP``, as base64 of a CBOR
map (no pickle: a process trusts only plain data from its environment). ``weaver.init()``
sees the variable and runs the weavelet (:func:`pyweaver._runtime._remote.run_weavelet`)
instead of the single-process runtime.
"""

from __future__ import annotations

import base64
import datetime
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import cattrs
import cbor2
from cattrs.preconf.cbor2 import make_converter

from pyweaver._errors import BootstrapError
from pyweaver.call import strict_cbor_decoder
from pyweaver.contract._config import AppConfig
from pyweaver.contract._names import BOOTSTRAP_ENV, CONFIG_ENV, MAIN
from pyweaver.contract._tls import TlsFiles

__all__ = [
    "BOOTSTRAP_ENV",
    "CONFIG_ENV",
    "MAIN",
    "Bootstrap",
    "BootstrapError",
    "pack_config",
    "unpack_config",
]


_converter = make_converter()
_converter.register_unstructure_hook(Path, str)
_converter.register_structure_hook(Path, lambda value, _: Path(value))


def pack_config(config: AppConfig) -> dict[str, Any]:
    """``config`` as plain data for the bootstrap (no re-parsing in the weavelet).

    Component sections keep their TOML values as they are (dates and times included:
    the bootstrap's CBOR carries them, see :func:`_tag_local_times`).
    """
    data: dict[str, Any] = _converter.unstructure(config)
    data["sections"] = config.sections
    data["deployers"] = config.deployers
    return data


def unpack_config(data: Mapping[str, Any]) -> AppConfig:
    """The inverse of :func:`pack_config`."""
    try:
        return _converter.structure(dict(data), AppConfig)
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
        raise BootstrapError(f"malformed app config in {BOOTSTRAP_ENV}: {exc!r}") from exc


# TOML has local times and local date-times, which CBOR has no tag for: they travel
# as a private tag holding [kind, ISO text].
_LOCAL_TIME_TAG: Final = 60001


def _tag_local_times(value: Any) -> Any:
    """``value`` with naive date-times and times replaced by their private tag."""
    if isinstance(value, dict):
        return {key: _tag_local_times(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tag_local_times(item) for item in value]
    if isinstance(value, datetime.datetime) and value.tzinfo is None:
        return cbor2.CBORTag(_LOCAL_TIME_TAG, ["datetime", value.isoformat()])
    if isinstance(value, datetime.time):
        return cbor2.CBORTag(_LOCAL_TIME_TAG, ["time", value.isoformat()])
    return value


def _decode_extra(*args: Any) -> Any:
    # cbor2's tag hook gets (decoder, tag) in some versions and (tag, immutable) in
    # others: find the tag.
    tag = next(arg for arg in args if isinstance(arg, cbor2.CBORTag))
    if tag.tag == _LOCAL_TIME_TAG:
        kind, text = tag.value
        if kind == "datetime":
            return datetime.datetime.fromisoformat(text)
        return datetime.time.fromisoformat(text)
    raise cbor2.CBORDecodeError(f"CBOR tag {tag.tag} is not allowed in a bootstrap")


# TOML's values: offset date-times (tags 0/1), dates (100/1004), our local times; no
# other CBOR tag is acted on.
_loads: Final = strict_cbor_decoder(allow={0, 1, 100, 1004}, tag_hook=_decode_extra)


@attrs.frozen(kw_only=True)
class Bootstrap:
    """Everything a weavelet needs to start.

    Attributes:
        deployment_id: the deployment's id (call-protocol handshakes carry it).
        replica_id: this weavelet's id, unique in the deployment.
        group: the colocation group it hosts.
        components: the components of that group (calls to them are local).
        run_main: whether this process runs the app's ``main`` (``weaver.init()``
            returns) or only serves its group (``weaver.init()`` never returns).
        envelope_address: where the envelope serves DeployerControl
            (``unix:///...``).
        control_address: where this weavelet must serve WeaveletControl.
        data_address: where this weavelet must serve its components' methods.
        config: the app's weaver.toml, parsed (see :func:`pack_config`).
        app: what a non-main weavelet imports to register the components: script
            paths or module names (empty: the process's ``__main__`` already did).
        sys_path: directories to put in front of ``sys.path`` before importing ``app``.
        backend: the anyio backend a non-main weavelet started by ``python -m
            pyweaver._runtime`` runs on ("" = asyncio).
        log_level: the level the weavelet logs at.
        trace_sample_ratio: the fraction of new traces to record (0: tracing off);
            recorded spans are shipped to the envelope.
        tls_ca, tls_cert, tls_key: with mTLS (``docs/security.md``), the paths of the
            deployment CA's certificate and of this group's certificate and key, all
            in a directory private to the deployment ("": no TLS). Never the keys
            themselves: the environment of a process is easier to read than a file.
        tls_callers: with mTLS, calling group -> the components of this group it may
            call (authorization by the call graph; other groups may call nothing).
    """

    deployment_id: str
    replica_id: str
    group: str
    components: list[str]
    run_main: bool
    envelope_address: str
    control_address: str
    data_address: str
    config: dict[str, Any]
    app: list[str] = attrs.field(factory=list)
    sys_path: list[str] = attrs.field(factory=list)
    backend: str = ""
    log_level: str = "info"
    trace_sample_ratio: float = 0.0
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_callers: dict[str, list[str]] = attrs.field(factory=dict)

    def tls_files(self) -> TlsFiles | None:
        """The mTLS files, or None when the deployment runs without TLS."""
        if not self.tls_cert:
            return None
        return TlsFiles(ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key)

    def encode(self) -> str:
        """The environment variable's value."""
        # attrs.asdict, not the converter: the config's section values stay as they are.
        data = cbor2.dumps(_tag_local_times(attrs.asdict(self, recurse=False)))
        return base64.b64encode(data).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Bootstrap:
        try:
            data = _loads(base64.b64decode(text, validate=True))
            return _converter.structure(data, cls)
        except (ValueError, TypeError, cbor2.CBORDecodeError, cattrs.BaseValidationError) as exc:
            raise BootstrapError(f"malformed {BOOTSTRAP_ENV}: {exc!r}") from exc

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Bootstrap:
        text = (os.environ if environ is None else environ).get(BOOTSTRAP_ENV)
        if not text:
            raise BootstrapError(f"{BOOTSTRAP_ENV} is not set")
        return cls.decode(text)
