"""The envelope: the deployer-side owner of one weavelet.

A deployer starts each weavelet in an :class:`Envelope` (a child process through
:class:`ProcessChild`, or a coroutine in this process through :class:`InProcessChild`),
answers the weavelet's requests through an :class:`EnvelopeHandler`, and drives it with
the envelope's methods, restarting weavelets that crash with :func:`supervise`. What
the two sides say to each other (control messages, bootstrap) is
:mod:`pyweaver.contract`; the process machinery (polite stop) is ``_process``, restarts
(policy, backoff, crash loops) are ``_supervise``. What runs inside the app process is
the app-side runtime, which this package never imports. Deployers depend on this
package, never the reverse.
"""

from pyweaver.envelope._envelope import Child as Child
from pyweaver.envelope._envelope import Envelope as Envelope
from pyweaver.envelope._envelope import EnvelopeHandler as EnvelopeHandler
from pyweaver.envelope._envelope import InProcessChild as InProcessChild
from pyweaver.envelope._envelope import ProcessChild as ProcessChild
from pyweaver.envelope._envelope import RunningChild as RunningChild
from pyweaver.envelope._process import CrashLoopError as CrashLoopError
from pyweaver.envelope._process import ProcessError as ProcessError
from pyweaver.envelope._process import ProcessExitedError as ProcessExitedError
from pyweaver.envelope._process import ReadinessTimeoutError as ReadinessTimeoutError
from pyweaver.envelope._supervise import Outcome as Outcome
from pyweaver.envelope._supervise import RestartPolicy as RestartPolicy
from pyweaver.envelope._supervise import supervise as supervise

__all__ = [
    "Child",
    "CrashLoopError",
    "Envelope",
    "EnvelopeHandler",
    "InProcessChild",
    "Outcome",
    "ProcessChild",
    "ProcessError",
    "ProcessExitedError",
    "ReadinessTimeoutError",
    "RestartPolicy",
    "RunningChild",
    "supervise",
]
