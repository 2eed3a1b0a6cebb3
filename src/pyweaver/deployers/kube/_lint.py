"""pyweaver's own lint of Kubernetes objects: what the OpenAPI schemas do not check.

``kubernetes-validate`` checks fields and types. A real API server also refuses, and a
running cluster silently misbehaves on, things no schema expresses; :func:`lint` checks
those in the objects this deployer writes:

- names: Services and namespaces are DNS-1123 labels (at most 63), other objects
  DNS-1123 subdomains; no two objects of one kind share a name;
- labels: keys and values of the allowed shape and length;
- Deployments: the selector matches the pod template's labels; container port names
  are IANA service names, unique, with unique numbers; probes and Service target ports
  name a port the container has; every mounted volume exists; every ConfigMap volume
  names a ConfigMap of the output, and every Secret volume a Secret of the output
  (``kube.yaml`` and ``secret.yaml`` are linted together) whose data has every key
  the volume's ``items`` ask for;
- HorizontalPodAutoscalers target an existing Deployment, with min <= max;
- Services select the pods of some Deployment, and their named target ports exist
  there;
- ``kube.json`` in the ConfigMap names, for every group, a headless Service of the
  output, and every Deployment's group is one of its groups.

Each problem is one line naming the object; no problem, no line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pyweaver.deployers.kube._names import DNS1123_LABEL, LABEL_VALUE

__all__ = ["lint"]

_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME: Final = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PORT_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY: Final = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME: Final = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

Object = Mapping[str, Any]


def _where(obj: Object) -> str:
    return f"{obj.get('kind', '?')} {obj.get('metadata', {}).get('name', '?')!r}"


def _is_label(name: str) -> bool:
    return len(name) <= 63 and DNS1123_LABEL.match(name) is not None


def _check_labels(labels: Mapping[str, Any], where: str, problems: list[str]) -> None:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
            problems.append(f"{where}: label key {key!r}: the prefix is not a DNS subdomain")
        if not name or len(name) > 63 or not _LABEL_NAME.match(name):
            problems.append(f"{where}: label key {key!r} is not a valid label name")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            problems.append(f"{where}: label {key}={value!r}: not a valid label value")


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def lint(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every problem found in ``objects`` (see the module docstring)."""
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    by_kind: dict[str, dict[str, Object]] = {}
    for obj in objects:
        kind = obj.get("kind", "")
        metadata = obj.get("metadata", {})
        name = metadata.get("name", "")
        where = _where(obj)
        if kind == "Service":
            if not _is_label(name):
                problems.append(f"{where}: a Service name must be a DNS-1123 label (<= 63)")
        elif len(name) > 253 or not _SUBDOMAIN.match(name):
            problems.append(f"{where}: the name is not a DNS-1123 subdomain")
        namespace = metadata.get("namespace", "default")
        if not _is_label(namespace):
            problems.append(f"{where}: namespace {namespace!r} is not a DNS-1123 label")
        if (kind, name) in seen:
            problems.append(f"{where}: two objects of this kind have this name")
        seen.add((kind, name))
        by_kind.setdefault(kind, {})[name] = obj
        _check_labels(metadata.get("labels", {}), where, problems)
    config_maps = by_kind.get("ConfigMap", {})
    deployments = by_kind.get("Deployment", {})
    services = by_kind.get("Service", {})
    secrets = by_kind.get("Secret", {})
    pods: dict[str, tuple[dict[str, str], set[str], set[int]]] = {}
    for obj in [*config_maps.values(), *secrets.values()]:
        problems.extend(
            f"{_where(obj)}: data key {key!r} is not a valid file name"
            for key in obj.get("data", {})
            if not _CONFIG_KEY.match(key) or len(key) > 253
        )
    for name, obj in deployments.items():
        where = _where(obj)
        spec = obj["spec"]
        template = spec["template"]
        labels = template.get("metadata", {}).get("labels", {})
        _check_labels(labels, f"{where} pod template", problems)
        selector = spec.get("selector", {}).get("matchLabels", {})
        if not _selects(selector, labels):
            problems.append(
                f"{where}: selector {selector} does not match the template labels {labels}"
            )
        pod = template["spec"]
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for volume in volumes.values():
            secret_name = volume.get("secret", {}).get("secretName")
            if secret_name is not None:
                secret = secrets.get(secret_name)
                if secret is None:
                    problems.append(
                        f"{where}: volume {volume['name']!r} names no Secret of the output "
                        f"({secret_name!r})"
                    )
                else:
                    data = {*secret.get("data", {}), *secret.get("stringData", {})}
                    problems.extend(
                        f"{where}: volume {volume['name']!r} asks for key {item.get('key')!r}, "
                        f"which Secret {secret_name!r} does not have"
                        for item in volume["secret"].get("items", [])
                        if item.get("key") not in data
                    )
            config_map = volume.get("configMap", {}).get("name")
            if config_map is not None and config_map not in config_maps:
                problems.append(
                    f"{where}: volume {volume['name']!r} names no ConfigMap of the output "
                    f"({config_map!r})"
                )
        port_names: set[str] = set()
        port_numbers: set[int] = set()
        for container in pod.get("containers", []):
            for port in container.get("ports", []):
                port_name = port.get("name", "")
                if port_name:
                    if (
                        len(port_name) > 15
                        or not _PORT_NAME.match(port_name)
                        or "--" in port_name
                        or not any(c.isalpha() for c in port_name)
                    ):
                        problems.append(
                            f"{where}: port name {port_name!r} is not an IANA service name"
                        )
                    if port_name in port_names:
                        problems.append(f"{where}: two ports are named {port_name!r}")
                    port_names.add(port_name)
                number = port.get("containerPort")
                if number in port_numbers:
                    problems.append(f"{where}: container port {number} is used twice")
                port_numbers.add(number)
            for probe_kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                target = container.get(probe_kind, {}).get("httpGet", {}).get("port")
                if target is not None and target not in port_names and target not in port_numbers:
                    problems.append(
                        f"{where}: {probe_kind} port {target!r} is no port of the container"
                    )
            problems.extend(
                f"{where}: volume mount {mount['name']!r} names no volume"
                for mount in container.get("volumeMounts", [])
                if mount["name"] not in volumes
            )
            problems.extend(
                f"{where}: env name {env.get('name')!r} is not valid"
                for env in container.get("env", [])
                if not _ENV_NAME.match(env.get("name", ""))
            )
        pods[name] = (labels, port_names, port_numbers)
    for obj in by_kind.get("HorizontalPodAutoscaler", {}).values():
        spec = obj["spec"]
        target = spec.get("scaleTargetRef", {})
        if target.get("kind") != "Deployment" or target.get("name") not in deployments:
            problems.append(
                f"{_where(obj)}: scaleTargetRef {target} names no Deployment of the output"
            )
        if spec.get("minReplicas", 1) > spec.get("maxReplicas", 0):
            problems.append(f"{_where(obj)}: minReplicas is above maxReplicas")
    for obj in services.values():
        spec = obj["spec"]
        selected = [
            name
            for name, (labels, _, _) in pods.items()
            if _selects(spec.get("selector", {}), labels)
        ]
        if not selected:
            problems.append(
                f"{_where(obj)}: selector {spec.get('selector')} selects no pod of any Deployment"
            )
        for port in spec.get("ports", []):
            target = port.get("targetPort", port.get("port"))
            for name in selected:
                _, names, numbers = pods[name]
                if target not in names and target not in numbers:
                    problems.append(
                        f"{_where(obj)}: targetPort {target!r} is no port of Deployment {name!r}"
                    )
    for obj in config_maps.values():
        text = obj.get("data", {}).get("kube.json")
        if text is None:
            continue
        try:
            pod_config = json.loads(text)
        except ValueError:
            problems.append(f"{_where(obj)}: kube.json is not JSON")
            continue
        groups = pod_config.get("groups", {})
        for group, spec in groups.items():
            service = spec.get("service", "").split(".", 1)[0]
            headless = services.get(service)
            if headless is None or headless["spec"].get("clusterIP") != "None":
                problems.append(
                    f"{_where(obj)}: group {group!r} names no headless Service ({service!r})"
                )
        for deployment in deployments.values():
            problems.extend(
                f"{_where(deployment)}: group {env.get('value')!r} is not in kube.json"
                for container in deployment["spec"]["template"]["spec"].get("containers", [])
                for env in container.get("env", [])
                if env.get("name") == "PYWEAVER_KUBE_GROUP" and env.get("value") not in groups
            )
    return problems
