"""pyweaver: Service Weaver for Python.

Write an application once as a modular monolith of async components; run it in one
process, in many processes on one machine, or across machines, unchanged::

    import pyweaver as weaver

    class Reverser(Protocol):
        async def reverse(self, s: str) -> str: ...

    class ReverserImpl(weaver.Implements[Reverser]):
        async def reverse(self, s: str) -> str:
            return s[::-1]

    async def main() -> None:
        root = await weaver.init()
        rev = await weaver.get(Reverser, root)
        print(await rev.reverse("hello"))

This module is the app author's whole API; everything else is private or belongs to
deployer authors (``pyweaver.call``, ``pyweaver.envelope``).
"""

from . import metrics as metrics
from ._asgi import instrument_handler as instrument_handler
from ._automarshal import AutoMarshal as AutoMarshal
from ._component import Implements as Implements
from ._component import Instance as Instance
from ._component import Ref as Ref
from ._component import WeaverInfo as WeaverInfo
from ._component import WithConfig as WithConfig
from ._component import WithRouter as WithRouter
from ._component import not_retriable as not_retriable
from ._errors import ConfigError as ConfigError
from ._errors import PyWeaverError as PyWeaverError
from ._errors import RegistrationError as RegistrationError
from ._errors import RemoteCallError as RemoteCallError
from ._errors import RemoteException as RemoteException
from ._errors import RetriableError as RetriableError
from ._listener import Listener as Listener
from ._listener import ListenerOptions as ListenerOptions
from ._listener import serve_asgi as serve_asgi
from ._logging import Logger as Logger
from ._metadata import metadata as metadata
from ._runtime import get as get
from ._runtime import init as init
from ._version import __version__ as __version__

__all__ = [
    "AutoMarshal",
    "ConfigError",
    "Implements",
    "Instance",
    "Listener",
    "ListenerOptions",
    "Logger",
    "PyWeaverError",
    "Ref",
    "RegistrationError",
    "RemoteCallError",
    "RemoteException",
    "RetriableError",
    "WeaverInfo",
    "WithConfig",
    "WithRouter",
    "__version__",
    "get",
    "init",
    "instrument_handler",
    "metadata",
    "metrics",
    "not_retriable",
    "serve_asgi",
]
