"""Kubernetes manifests and a Dockerfile from a :class:`~._plan.Plan`.

Objects, in the order they are written (every name ends in the version):

- a **ConfigMap** ``<app>-config-<v>``: ``weaver.toml`` as written and ``kube.json``
  (the :class:`~._plan.PodConfig` every pod reads);
- per group, a **Service** (headless, ``clusterIP: None``) named like the group's
  Deployment: its DNS name has one A record per *ready* pod of the group, which is how
  pods find each other without any Kubernetes API credentials;
- per group, a **Deployment** (one container running ``python -m
  pyweaver.deployers.kube`` with the group in ``PYWEAVER_KUBE_GROUP``, the ConfigMap
  mounted at ``/etc/pyweaver``, readiness and liveness probes on ``/healthz``) and a
  **HorizontalPodAutoscaler** (autoscaling/v2, CPU utilization);
- per listener, a **Service** (``LoadBalancer`` by default) selecting the pods of the
  group that serves the listener.

The output is deterministic: same plan, same bytes. With ``[kube] mtls`` (the default)
each Deployment also mounts its group's TLS **Secret** (``<group resource>-tls``,
read-only, mode 0400) at ``/var/run/pyweaver/tls``; the Secrets (:func:`secrets`: the
deployment CA's certificate, the group's certificate and key, and a certificate and
key for the pod's own control plane) hold fresh keys each run and are written to a
file of their own, ``secret.yaml`` (:func:`render_secrets_yaml`), so ``kube.yaml``
stays byte-identical for the same inputs. A pod gets only its own group's key.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Final

from pyweaver._version import __version__
from pyweaver.deployers.kube._names import label_value, port_name
from pyweaver.deployers.kube._plan import (
    APP_DIR,
    CONFIG_DIR,
    DEPLOYER_CERT,
    DEPLOYER_KEY,
    TLS_CA,
    TLS_CERT,
    TLS_DIR,
    TLS_KEY,
    GroupPlan,
    Plan,
)

if TYPE_CHECKING:
    from pyweaver.deployers._ca import DeploymentCA

__all__ = [
    "CONTAINER",
    "GROUP_ENV",
    "dockerfile",
    "manifests",
    "render_secrets_yaml",
    "render_yaml",
    "secrets",
]

#: The env var naming a pod's group.
GROUP_ENV: Final = "PYWEAVER_KUBE_GROUP"
CONTAINER: Final = "weavelet"
DATA_PORT_NAME: Final = "weaver"
HEALTH_PORT_NAME: Final = "health"
_LABEL_APP: Final = "app.kubernetes.io/name"
_LABEL_MANAGED: Final = "app.kubernetes.io/managed-by"
_LABEL_VERSION: Final = "pyweaver.dev/version"
_LABEL_GROUP: Final = "pyweaver.dev/group"

Object = dict[str, Any]


def _labels(plan: Plan) -> dict[str, str]:
    return {
        _LABEL_APP: _app_label(plan),
        _LABEL_MANAGED: "pyweaver",
        _LABEL_VERSION: plan.version,
    }


def _app_label(plan: Plan) -> str:
    return label_value(plan.app)


def _selector(plan: Plan, group: GroupPlan) -> dict[str, str]:
    return {
        _LABEL_APP: _app_label(plan),
        _LABEL_VERSION: plan.version,
        _LABEL_GROUP: group.resource,
    }


def _metadata(plan: Plan, name: str, extra: dict[str, str] | None = None) -> Object:
    return {
        "name": name,
        "namespace": plan.kube.namespace,
        "labels": {**_labels(plan), **(extra or {})},
    }


def manifests(plan: Plan) -> list[Object]:
    """Every object of the deployment (see the module docstring)."""
    objects: list[Object] = [_config_map(plan)]
    for group in plan.groups:
        objects.append(_headless_service(plan, group))
        objects.append(_deployment(plan, group))
        objects.append(_autoscaler(plan, group))
    objects.extend(_listener_service(plan, index) for index in range(len(plan.listeners)))
    return objects


def _config_map(plan: Plan) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(plan, plan.config_map),
        "data": {"weaver.toml": plan.config_text, "kube.json": plan.pod_config().to_json()},
    }


def _headless_service(plan: Plan, group: GroupPlan) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(plan, group.resource, {_LABEL_GROUP: group.resource}),
        "spec": {
            "clusterIP": "None",
            "selector": _selector(plan, group),
            "ports": [
                {
                    "name": DATA_PORT_NAME,
                    "port": plan.kube.data_port,
                    "targetPort": DATA_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def _probe(plan: Plan, *, liveness: bool) -> Object:
    probes = plan.kube.probes
    return {
        "httpGet": {"path": "/healthz", "port": HEALTH_PORT_NAME},
        # A pod that was never ready gets more time before liveness restarts it.
        "initialDelaySeconds": probes.initial_delay * (3 if liveness else 1),
        "periodSeconds": probes.period,
        "timeoutSeconds": probes.timeout,
        "failureThreshold": probes.failure_threshold,
    }


def _deployment(plan: Plan, group: GroupPlan) -> Object:
    selector = _selector(plan, group)
    ports: list[Object] = [
        {"name": DATA_PORT_NAME, "containerPort": plan.kube.data_port, "protocol": "TCP"},
        {"name": HEALTH_PORT_NAME, "containerPort": plan.kube.health_port, "protocol": "TCP"},
    ]
    ports.extend(
        {"name": port_name(lp.name), "containerPort": lp.settings.port, "protocol": "TCP"}
        for lp in plan.listeners
        if lp.group == group.name
    )
    container: Object = {
        "name": CONTAINER,
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "pyweaver.deployers.kube"],
        "args": ["--config-dir", CONFIG_DIR],
        "workingDir": APP_DIR,
        "env": [
            {"name": GROUP_ENV, "value": group.name},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "ports": ports,
        "readinessProbe": _probe(plan, liveness=False),
        "livenessProbe": _probe(plan, liveness=True),
        "resources": group.settings.resources,
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    volumes: list[Object] = [{"name": "config", "configMap": {"name": plan.config_map}}]
    if plan.mtls:
        container["volumeMounts"].append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        volumes.append(
            {"name": "tls", "secret": {"secretName": plan.secret_name(group), "defaultMode": 0o400}}
        )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(plan, group.resource, {_LABEL_GROUP: group.resource}),
        "spec": {
            "replicas": group.settings.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**_labels(plan), **selector}},
                "spec": {
                    "containers": [container],
                    "volumes": volumes,
                    "terminationGracePeriodSeconds": 30,
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "labelSelector": {"matchLabels": selector},
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        }
                    },
                },
            },
        },
    }


def _autoscaler(plan: Plan, group: GroupPlan) -> Object:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(plan, group.resource, {_LABEL_GROUP: group.resource}),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": group.resource,
            },
            "minReplicas": group.settings.replicas,
            "maxReplicas": group.settings.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": group.settings.cpu_utilization,
                        },
                    },
                }
            ],
        },
    }


def _listener_service(plan: Plan, index: int) -> Object:
    listener = plan.listeners[index]
    group = next(g for g in plan.groups if g.name == listener.group)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            plan, listener.resource, {"pyweaver.dev/listener": port_name(listener.name)}
        ),
        "spec": {
            "type": listener.settings.service_type,
            "selector": _selector(plan, group),
            "ports": [
                {
                    "name": port_name(listener.name),
                    "port": listener.settings.service_port,
                    "targetPort": port_name(listener.name),
                    "protocol": "TCP",
                }
            ],
        },
    }


def secrets(plan: Plan, ca: DeploymentCA) -> list[Object]:
    """One TLS Secret per group, issued by ``ca`` (a new CA per run: see the module
    docstring): what each group's pods mount."""
    deployer = ca.issue_deployer()
    objects: list[Object] = []
    for group in plan.groups:
        material = ca.issue_group(group.name)
        files = {
            TLS_CA: material.ca,
            TLS_CERT: material.cert,
            TLS_KEY: material.key,
            DEPLOYER_CERT: deployer.cert,
            DEPLOYER_KEY: deployer.key,
        }
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _metadata(
                    plan, plan.secret_name(group), {_LABEL_GROUP: group.resource}
                ),
                "type": "Opaque",
                "data": {
                    name: base64.b64encode(data).decode("ascii") for name, data in files.items()
                },
            }
        )
    return objects


def render_secrets_yaml(plan: Plan, objects: list[Object]) -> str:
    """``secret.yaml``: the TLS Secrets, with a header saying what they are."""
    header = [
        f"# Generated by pyweaver {__version__}: app {plan.app}, version {plan.version}.",
        "# PRIVATE KEYS: the mTLS Secrets of this deployment (a new CA and keys each time",
        "# `pyweaver kube deploy` runs). Keep this file private; do not commit it.",
        "# Apply it before kube.yaml:  kubectl apply -f secret.yaml -f kube.yaml",
        "# Never re-apply a newly generated secret.yaml over a running version (its pods",
        "# would hold two CAs). Rotation = deploy a new version (--version-id) before the",
        "# certificates expire (30 days); cert-manager is the production alternative.",
    ]
    return _render(header, objects)


def render_yaml(plan: Plan, objects: list[Object]) -> str:
    """The objects as one multi-document YAML file, with a header saying how to use it."""
    kinds = "all,configmaps,hpa,secrets" if plan.mtls else "all,configmaps,hpa"
    header = [
        f"# Generated by pyweaver {__version__}: app {plan.app}, version {plan.version}.",
        f"# Image: {plan.image} (build it with the Dockerfile beside this file).",
        (
            "# Apply:   kubectl apply -f secret.yaml -f kube.yaml"
            if plan.mtls
            else "# Apply:   kubectl apply -f kube.yaml"
        ),
        f"# Inspect: kubectl get {kinds} "
        f"-n {plan.kube.namespace} -l pyweaver.dev/version={plan.version}",
        f"# Delete:  kubectl delete {kinds} "
        f"-n {plan.kube.namespace} -l pyweaver.dev/version={plan.version}",
    ]
    return _render(header, objects)


def _render(header: list[str], objects: list[Object]) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True  # every object spelled out, no &anchors

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None  # files in the ConfigMap stay readable
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    documents = [
        yaml.dump(obj, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=100)
        for obj in objects
    ]
    return "\n".join(header) + "\n---\n" + "---\n".join(documents)


def dockerfile(plan: Plan) -> str:
    """A Dockerfile for the app's image; its build context is weaver.toml's directory."""
    packages = " ".join(_quote(p) for p in plan.kube.pip)
    install = f"RUN pip install --no-cache-dir {packages}\n" if packages else ""
    return (
        f"# Generated by pyweaver {__version__}: the image of app {plan.app} "
        f"(version {plan.version}).\n"
        "# Build it from the directory that holds weaver.toml, for example:\n"
        f"#   docker build -f <this file> -t {plan.image} <weaver.toml's directory>\n"
        f"FROM {plan.kube.base_image}\n"
        "ENV PYTHONUNBUFFERED=1\n"
        f"WORKDIR {APP_DIR}\n"
        f"{install}"
        "COPY . .\n"
        "RUN if [ -f requirements.txt ]; then pip install --no-cache-dir -r requirements.txt; fi\n"
        'ENTRYPOINT ["python", "-m", "pyweaver.deployers.kube"]\n'
        f'CMD ["--config-dir", "{CONFIG_DIR}"]\n'
    )


def _quote(text: str) -> str:
    safe = all(c.isalnum() or c in "._-=<>[],~" for c in text)
    return text if safe else "'" + text.replace("'", "'\\''") + "'"
