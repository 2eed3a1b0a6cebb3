"""The Kubernetes deployer: ``pyweaver kube deploy weaver.toml`` writes manifests for
``kubectl apply`` and a Dockerfile; ``python -m pyweaver.deployers.kube`` is every pod's
entrypoint.

``_config`` reads ``[kube]``; ``_plan`` computes groups, names and ports from it and
the app; ``_manifests`` writes the objects; ``_lint`` checks what the Kubernetes
schemas do not; ``_discovery`` and ``_pod`` are what runs in a pod.
"""

from pyweaver.deployers.kube._config import KubeConfig as KubeConfig
from pyweaver.deployers.kube._config import parse_kube as parse_kube
from pyweaver.deployers.kube._discovery import DnsResolver as DnsResolver
from pyweaver.deployers.kube._discovery import FileResolver as FileResolver
from pyweaver.deployers.kube._discovery import Resolver as Resolver
from pyweaver.deployers.kube._manifests import dockerfile as dockerfile
from pyweaver.deployers.kube._manifests import manifests as manifests
from pyweaver.deployers.kube._manifests import render_yaml as render_yaml
from pyweaver.deployers.kube._plan import AppInfo as AppInfo
from pyweaver.deployers.kube._plan import Plan as Plan
from pyweaver.deployers.kube._plan import PodConfig as PodConfig
from pyweaver.deployers.kube._plan import plan as plan
from pyweaver.deployers.kube._pod import PodDeployer as PodDeployer

__all__ = [
    "AppInfo",
    "DnsResolver",
    "FileResolver",
    "KubeConfig",
    "Plan",
    "PodConfig",
    "PodDeployer",
    "Resolver",
    "dockerfile",
    "manifests",
    "parse_kube",
    "plan",
    "render_yaml",
]
