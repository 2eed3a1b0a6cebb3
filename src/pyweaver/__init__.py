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
deployer authors (``pyweaver.call``, ``pyweaver.contract``, ``pyweaver.envelope``).
"""

from pyweaver import metrics as metrics
from pyweaver._errors import ConfigError as ConfigError
from pyweaver._errors import PyWeaverError as PyWeaverError
from pyweaver._errors import RegistrationError as RegistrationError
from pyweaver._errors import RemoteCallError as RemoteCallError
from pyweaver._errors import RemoteException as RemoteException
from pyweaver._errors import RetriableError as RetriableError
from pyweaver._runtime._asgi import instrument_handler as instrument_handler
from pyweaver._runtime._automarshal import AutoMarshal as AutoMarshal
from pyweaver._runtime._component import Implements as Implements
from pyweaver._runtime._component import Instance as Instance
from pyweaver._runtime._component import Ref as Ref
from pyweaver._runtime._component import WeaverInfo as WeaverInfo
from pyweaver._runtime._component import WithConfig as WithConfig
from pyweaver._runtime._component import WithRouter as WithRouter
from pyweaver._runtime._component import not_retriable as not_retriable
from pyweaver._runtime._init import get as get
from pyweaver._runtime._init import init as init
from pyweaver._runtime._listener import Listener as Listener
from pyweaver._runtime._listener import ListenerOptions as ListenerOptions
from pyweaver._runtime._listener import serve_asgi as serve_asgi
from pyweaver._runtime._logging import Logger as Logger
from pyweaver._version import __version__ as __version__
from pyweaver.call._metadata import metadata as metadata

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
