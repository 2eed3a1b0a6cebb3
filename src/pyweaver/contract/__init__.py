"""The contract between a weavelet and its deployer.

Both sides import this package and it imports neither: the app-side runtime
(:mod:`pyweaver._runtime`) speaks it from inside every app process, and the deployer side
(:mod:`pyweaver.envelope`, :mod:`pyweaver.deployers`) speaks it from outside. It holds
what they must agree on and nothing else:

- the control-channel messages (:mod:`.messages`), carried by :mod:`pyweaver.call`;
- the bootstrap a deployer hands a weavelet in one environment variable
  (:data:`BOOTSTRAP_ENV`), with the app's parsed configuration;
- the app's configuration file (``weaver.toml``) as :class:`AppConfig`;
- the routing assignment of a routed component (:class:`Assignment`);
- the log entry every process emits (:class:`LogEntry`) and its two text forms;
- the names both sides use: :data:`MAIN` (the component ``main()`` runs as).
"""

from pyweaver.contract import _messages as messages
from pyweaver.contract._bootstrap import BOOTSTRAP_ENV as BOOTSTRAP_ENV
from pyweaver.contract._bootstrap import CONFIG_ENV as CONFIG_ENV
from pyweaver.contract._bootstrap import MAIN as MAIN
from pyweaver.contract._bootstrap import Bootstrap as Bootstrap
from pyweaver.contract._bootstrap import BootstrapError as BootstrapError
from pyweaver.contract._config import AppConfig as AppConfig
from pyweaver.contract._config import load_config as load_config
from pyweaver.contract._config import parse_config as parse_config
from pyweaver.contract._logentry import LogEntry as LogEntry
from pyweaver.contract._routing import Assignment as Assignment

__all__ = [
    "BOOTSTRAP_ENV",
    "CONFIG_ENV",
    "MAIN",
    "AppConfig",
    "Assignment",
    "Bootstrap",
    "BootstrapError",
    "LogEntry",
    "load_config",
    "messages",
    "parse_config",
]
