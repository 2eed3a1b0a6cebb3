"""The bootstrap: what an envelope tells the weavelet process it starts.

It travels in one environment variable, ``PYWEAVER_BOOTSTRAP``, as base64 of a CBOR
map (no pickle: a process trusts only plain data from its environment). ``weaver.init()``
sees the variable and runs the weavelet (:func:`pyweaver.envelope._weavelet.run_weavelet`)
instead of the single-process runtime.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Final

import attrs
import cattrs
import cbor2
from cattrs.preconf.cbor2 import make_converter

from pyweaver._errors import PyWeaverError

__all__ = ["BOOTSTRAP_ENV", "Bootstrap", "BootstrapError"]

BOOTSTRAP_ENV: Final = "PYWEAVER_BOOTSTRAP"

_converter = make_converter()


class BootstrapError(PyWeaverError):
    """The bootstrap environment variable is missing or malformed."""


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
        config_text: the app's weaver.toml text.
        config_path: the file it came from ("" for text given directly), for messages.
        app: what a non-main weavelet imports to register the components: script
            paths or module names (empty: the process's ``__main__`` already did).
        sys_path: directories to put in front of ``sys.path`` before importing ``app``.
        backend: the anyio backend a non-main weavelet started by ``python -m
            pyweaver.envelope`` runs on ("" = asyncio).
        log_level: the level the weavelet logs at.
    """

    deployment_id: str
    replica_id: str
    group: str
    components: list[str]
    run_main: bool
    envelope_address: str
    control_address: str
    data_address: str
    config_text: str
    config_path: str = ""
    app: list[str] = attrs.field(factory=list)
    sys_path: list[str] = attrs.field(factory=list)
    backend: str = ""
    log_level: str = "info"

    def encode(self) -> str:
        """The environment variable's value."""
        return base64.b64encode(cbor2.dumps(_converter.unstructure(self))).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Bootstrap:
        try:
            return _converter.structure(cbor2.loads(base64.b64decode(text, validate=True)), cls)
        except (ValueError, TypeError, cbor2.CBORDecodeError, cattrs.BaseValidationError) as exc:
            raise BootstrapError(f"malformed {BOOTSTRAP_ENV}: {exc!r}") from exc

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Bootstrap:
        text = (os.environ if environ is None else environ).get(BOOTSTRAP_ENV)
        if not text:
            raise BootstrapError(f"{BOOTSTRAP_ENV} is not set")
        return cls.decode(text)
