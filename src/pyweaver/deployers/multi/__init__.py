"""The multiprocess deployer: ``pyweaver multi deploy weaver.toml`` runs an unchanged app
as many weavelet processes on this machine (see ``_deployer`` for how), and
weavertest's ``multi`` mode does the same inside a test (``_weavertest``).
"""

from pyweaver.deployers.multi._deployer import DEFAULT_REPLICAS as DEFAULT_REPLICAS
from pyweaver.deployers.multi._deployer import DeploymentFailed as DeploymentFailed
from pyweaver.deployers.multi._deployer import Group as Group
from pyweaver.deployers.multi._deployer import MultiDeployer as MultiDeployer
from pyweaver.deployers.multi._deployer import Slot as Slot
from pyweaver.deployers.multi._deployer import group_layout as group_layout

__all__ = [
    "DEFAULT_REPLICAS",
    "DeploymentFailed",
    "Group",
    "MultiDeployer",
    "Slot",
    "group_layout",
]
