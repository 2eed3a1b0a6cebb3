"""The envelope: the deployer-side owner of one weavelet, and the weavelet's side of
the control channel.

A deployer starts each weavelet in an :class:`Envelope` (a child process through
:class:`ProcessChild`, or a coroutine in this process through :class:`InProcessChild`),
answers the weavelet's requests through an :class:`EnvelopeHandler`, and drives it with
the envelope's methods. The messages of the control channel are in :mod:`.messages`;
the process machinery (polite stop, restart policy) in ``_process``; what runs inside
the app process in ``_weavelet`` (:func:`serve_weavelet`, used by ``weaver.init()``).
Deployers depend on this package, never the reverse.
"""

from . import _messages as messages
from ._bootstrap import BOOTSTRAP_ENV as BOOTSTRAP_ENV
from ._bootstrap import Bootstrap as Bootstrap
from ._bootstrap import BootstrapError as BootstrapError
from ._envelope import Child as Child
from ._envelope import Envelope as Envelope
from ._envelope import EnvelopeHandler as EnvelopeHandler
from ._envelope import InProcessChild as InProcessChild
from ._envelope import ProcessChild as ProcessChild
from ._envelope import RunningChild as RunningChild
from ._process import CrashLoopError as CrashLoopError
from ._process import ProcessError as ProcessError
from ._process import ProcessExitedError as ProcessExitedError
from ._process import ReadinessTimeoutError as ReadinessTimeoutError
from ._process import RestartPolicy as RestartPolicy

__all__ = [
    "BOOTSTRAP_ENV",
    "Bootstrap",
    "BootstrapError",
    "Child",
    "CrashLoopError",
    "Envelope",
    "EnvelopeHandler",
    "InProcessChild",
    "ProcessChild",
    "ProcessError",
    "ProcessExitedError",
    "ReadinessTimeoutError",
    "RestartPolicy",
    "RunningChild",
    "messages",
]
