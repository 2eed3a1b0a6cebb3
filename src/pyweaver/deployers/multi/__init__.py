"""The multiprocess deployer: ``pyweaver multi deploy weaver.toml`` runs an unchanged app
as many weavelet processes on this machine (see ``_deployer`` for how), and
weavertest's ``multi`` mode does the same inside a test (``_weavertest``).
"""

from ._deployer import DEFAULT_REPLICAS as DEFAULT_REPLICAS
from ._deployer import DeploymentFailed as DeploymentFailed
from ._deployer import Group as Group
from ._deployer import MultiDeployer as MultiDeployer
from ._deployer import Slot as Slot
from ._deployer import group_layout as group_layout
from ._weavertest import component_modules as component_modules
from ._weavertest import weavertest_deployment as weavertest_deployment

__all__ = [
    "DEFAULT_REPLICAS",
    "DeploymentFailed",
    "Group",
    "MultiDeployer",
    "Slot",
    "component_modules",
    "group_layout",
    "weavertest_deployment",
]
