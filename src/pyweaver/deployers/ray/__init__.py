"""The Ray deployer: ``pyweaver ray deploy|status|logs|metrics|stop``.

Each colocation-group replica is a Ray actor hosting the group's weavelet as its child
process (:mod:`._replica`); a named manager actor per deployment holds groups, replica
addresses and routing (:mod:`._manager`); the deploying process runs the listener
proxies, the status endpoint and the log pump (:mod:`._deployer`). Weavelets call each
other directly over pyweaver's protocol on the nodes' IPs: Ray places, restarts and
moves replicas, and is never in the call path. ``[ray]`` in weaver.toml is
:mod:`._config`. Importing this package does not import Ray; its modules other than
``_config`` and ``_manager`` do.
"""

from pyweaver.deployers.ray._config import GroupSettings as GroupSettings
from pyweaver.deployers.ray._config import RayConfig as RayConfig
from pyweaver.deployers.ray._config import parse_ray as parse_ray
from pyweaver.deployers.ray._manager import ManagerState as ManagerState

__all__ = ["GroupSettings", "ManagerState", "RayConfig", "parse_ray"]
