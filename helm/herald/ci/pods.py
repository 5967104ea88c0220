#!/usr/bin/env python3
"""Turns the Herald chart's rendered manifests into the processes a cluster
would start, for tests/tests/chart.rs to run against the real binary.

Renders the chart (the values of check.py: `default` or `full`) with the
database, NATS and subject prefix of the test, then, for every container of
every Job, Deployment and StatefulSet, works out what the kubelet would run:

- the command line: the container's `command` (else the image's ENTRYPOINT,
  read from deploy/Dockerfile) and `args`, with `$(VAR)` expanded, and the
  image's binary replaced by the `herald` under test;
- the environment: `value`, `valueFrom` (secretKeyRef and configMapKeyRef
  resolved from the rendered Secrets and ConfigMaps, or from the Secrets the
  values say exist outside the chart, which the test supplies; the downward
  API with plausible values) and `envFrom`;
- mounted Secrets and ConfigMaps, written under the work directory, with
  every mount path in the command line, environment and mounted text files
  rewritten to where they were written;
- container ports remapped to free ports chosen by the OS, in the command
  line, environment and mounted text files, and Service addresses
  (`name.namespace.svc:port`) to the port of the container behind them;
- the probes (httpGet, grpc, tcpSocket, exec) against the remapped ports.

Prints the plan as JSON on stdout; exits 2 naming the container and the
reference when the manifests ask for something nothing provides (a Secret
key, a ConfigMap, a Service) or for a program other than the image's.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import shlex
import socket
import sys
from pathlib import Path
from typing import Any

import helm_python as helm

from check import CHART, NAMESPACE, ROOT, deep_merge, load_yaml, render

# Where the image keeps the binary (the Dockerfile's ENTRYPOINT names it).
IMAGE_BINARIES = {"/usr/local/bin/herald", "herald"}
WORKLOAD_KINDS = ("Job", "Deployment", "StatefulSet")
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# Kubernetes' probe defaults.
PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1,
                  "successThreshold": 1, "failureThreshold": 3}


class PlanError(Exception):
    pass


def image_entrypoint() -> list[str]:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    found = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    if not found:
        raise PlanError("deploy/Dockerfile has no ENTRYPOINT in exec form")
    return json.loads(found[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def values_for(variant: str, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The values of `variant` pointed at this machine's services, and the
    Secrets they say exist outside the chart (name -> key -> text)."""
    base = load_yaml(CHART / "ci" / f"{variant}-values.yaml")
    over: dict[str, Any] = {"nats": {"subjectPrefix": args.subject_prefix}}
    outside: dict[str, dict[str, str]] = {}
    if base.get("nats", {}).get("existingSecret"):
        outside.setdefault(base["nats"]["existingSecret"], {})[base["nats"].get("existingSecretKey", "nats-url")] = args.nats_url
    else:
        over["nats"]["url"] = args.nats_url
    s = base.get("secrets", {})
    if s.get("existingSecret"):
        outside.setdefault(s["existingSecret"], {}).update({
            s.get("databaseUrlKey", "database-url"): args.database_url,
            s.get("adminTokenKey", "admin-token"): secrets.token_hex(24),
        })
    else:
        over["secrets"] = {"databaseUrl": args.database_url}
    tls = base.get("edge", {}).get("tls", {})
    if tls.get("enabled"):
        outside.setdefault(tls["secretName"], {}).update({
            "tls.crt": Path(args.tls_cert).read_text(), "tls.key": Path(args.tls_key).read_text()})
    return deep_merge(base, over), outside


class Cluster:
    """The rendered objects a pod can refer to."""

    def __init__(self, docs: list[dict[str, Any]], outside: dict[str, dict[str, str]]):
        self.secrets: dict[str, dict[str, bytes]] = {
            name: {k: v.encode() for k, v in data.items()} for name, data in outside.items()}
        self.config_maps: dict[str, dict[str, bytes]] = {}
        for d in docs:
            name = d["metadata"]["name"]
            if d["kind"] == "Secret":
                data = {k: base64.b64decode(v) for k, v in (d.get("data") or {}).items()}
                data.update({k: v.encode() for k, v in (d.get("stringData") or {}).items()})
                self.secrets[name] = data
            elif d["kind"] == "ConfigMap":
                data = {k: v.encode() for k, v in (d.get("data") or {}).items()}
                data.update({k: base64.b64decode(v) for k, v in (d.get("binaryData") or {}).items()})
                self.config_maps[name] = data
        self.services = [d for d in docs if d["kind"] == "Service"]

    def lookup(self, kind: str, ref: dict[str, Any], where: str) -> bytes | None:
        table = self.secrets if kind == "Secret" else self.config_maps
        obj = table.get(ref["name"])
        if obj is None or ref["key"] not in obj:
            if ref.get("optional"):
                return None
            missing = f"{kind} {ref['name']}" if obj is None else f"key {ref['key']!r} of {kind} {ref['name']}"
            raise PlanError(f"{where}: {missing} does not exist")
        return obj[ref["key"]]

    def whole(self, kind: str, name: str, optional: bool, where: str) -> dict[str, bytes]:
        table = self.secrets if kind == "Secret" else self.config_maps
        if name not in table:
            if optional:
                return {}
            raise PlanError(f"{where}: {kind} {name} does not exist")
        return table[name]


def quantity(text: Any) -> float:
    """A Kubernetes quantity (`500m`, `2Gi`, `1`) as a number."""
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    if not m or (m.group(2) and m.group(2) not in units):
        raise PlanError(f"quantity {text!r}")
    return float(m.group(1)) * units.get(m.group(2), 1)


def downward(pod: dict[str, Any], container: dict[str, Any], env: dict[str, Any], where: str) -> str:
    if "fieldRef" in env:
        path = env["fieldRef"]["fieldPath"]
        fields = {
            "metadata.name": pod["name"],
            "metadata.namespace": NAMESPACE,
            "metadata.uid": pod["uid"],
            "spec.nodeName": "node-1",
            "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
            "status.hostIP": "127.0.0.1",
            "status.hostIPs": "127.0.0.1",
            "status.podIP": "127.0.0.1",
            "status.podIPs": "127.0.0.1",
        }
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str(pod["metadata"].get(m.group(1), {}).get(m.group(2), ""))
        if path not in fields:
            raise PlanError(f"{where}: downward API field {path} unknown")
        return fields[path]
    ref = env["resourceFieldRef"]
    kind, _, resource = ref["resource"].partition(".")
    value = container.get("resources", {}).get(kind, {}).get(resource)
    if value is None:
        value = container.get("resources", {}).get("requests", {}).get(resource, "0")
    divisor = quantity(ref.get("divisor", "1"))
    amount = quantity(value) / divisor
    return str(int(-(-amount // 1)))


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`, unknown
    references stay as they are."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


class Rewriter:
    """Mount paths to the work directory and container ports and Service
    addresses to the ports of this machine, in one container's text."""

    def __init__(self, mounts: dict[str, Path], own_ports: dict[int, int], services: dict[str, dict[int, int]]):
        # Longest mount path first, so /etc/herald/tls wins over /etc/herald.
        self.mounts = sorted(mounts.items(), key=lambda kv: -len(kv[0]))
        self.own_ports = own_ports
        self.services = services

    def __call__(self, text: str) -> str:
        for mount, local in self.mounts:
            text = re.sub(rf"(?<![\w./-]){re.escape(mount.rstrip('/'))}(?=/|\b|$)", str(local), text)

        def host_port(m: re.Match[str]) -> str:
            host, port = m.group("host"), int(m.group("port"))
            if host in self.services:
                if port not in self.services[host]:
                    raise PlanError(f"Service address {host}:{port}: the Service has no port {port}")
                return f"127.0.0.1:{self.services[host][port]}"
            if host in ("0.0.0.0", "[::]", "::", "127.0.0.1", "localhost", "") and port in self.own_ports:
                return f"{host}:{self.own_ports[port]}"
            return m.group(0)

        text = re.sub(r"(?P<host>\[[0-9a-fA-F:]*\]|[A-Za-z0-9_.-]*):(?P<port>[0-9]{1,5})\b", host_port, text)
        for host in re.findall(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.svc(?:\.cluster\.local)?\b", text):
            raise PlanError(f"{host} is not a Service of this release and nothing here serves it")
        return text


def service_ports(cluster: Cluster, pods: list[dict[str, Any]]) -> dict[str, dict[int, int]]:
    """Every Service's DNS names -> its port -> the remapped port of the
    container behind it."""
    out: dict[str, dict[int, int]] = {}
    for svc in cluster.services:
        selector = svc["spec"].get("selector") or {}
        backing = [p for p in pods if selector and all(p["labels"].get(k) == v for k, v in selector.items())]
        ports: dict[int, int] = {}
        for sp in svc["spec"].get("ports", []):
            target = sp.get("targetPort", sp["port"])
            for p in backing:
                for c in p["containers"]:
                    for cp in c["ports"]:
                        if target in (cp["name"], cp["container_port"]):
                            ports[sp["port"]] = cp["host_port"]
        name = svc["metadata"]["name"]
        ns = svc["metadata"].get("namespace", NAMESPACE)
        for dns in (name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"):
            out[dns] = ports
    return out


def plan_container(pod: dict[str, Any], c: dict[str, Any], init: bool, cluster: Cluster,
                   args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    where = f"{pod['kind']} {pod['workload']}, container {c['name']}"
    root = workdir / pod["workload"] / c["name"]
    root.mkdir(parents=True, exist_ok=True)
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    mounts: dict[str, Path] = {}
    files: list[tuple[Path, bytes]] = []
    for vm in c.get("volumeMounts", []):
        vol = volumes.get(vm["name"])
        if vol is None:
            raise PlanError(f"{where}: volume {vm['name']} is mounted but not declared")
        local = root / vm["mountPath"].lstrip("/")
        mounts[vm["mountPath"]] = local
        if "secret" in vol:
            src = cluster.whole("Secret", vol["secret"]["secretName"], vol["secret"].get("optional", False), where)
            items = vol["secret"].get("items")
        elif "configMap" in vol:
            src = cluster.whole("ConfigMap", vol["configMap"]["name"], vol["configMap"].get("optional", False), where)
            items = vol["configMap"].get("items")
        elif "emptyDir" in vol:
            local.mkdir(parents=True, exist_ok=True)
            continue
        else:
            raise PlanError(f"{where}: volume {vm['name']} of a kind this test does not provide: {sorted(vol)}")
        chosen = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in src]
        for key, rel in chosen:
            if key not in src:
                raise PlanError(f"{where}: volume {vm['name']} has no key {key!r}")
            if vm.get("subPath") and rel != vm["subPath"]:
                continue
            target = local if vm.get("subPath") else local / rel
            files.append((target, src[key]))

    ports = [{"name": p.get("name", ""), "container_port": p["containerPort"], "host_port": free_port()}
             for p in c.get("ports", [])]
    return {"name": c["name"], "init": init, "where": where, "root": root, "mounts": mounts,
            "files": files, "ports": ports, "spec": c}


def finish_container(pod: dict[str, Any], planned: dict[str, Any], cluster: Cluster,
                     services: dict[str, dict[int, int]], args: argparse.Namespace) -> dict[str, Any]:
    c, where = planned["spec"], planned["where"]
    own = {p["container_port"]: p["host_port"] for p in planned["ports"]}
    rewrite = Rewriter(planned["mounts"], own, services)

    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            ref = src["configMapRef"]
            data = cluster.whole("ConfigMap", ref["name"], ref.get("optional", False), where)
        else:
            ref = src["secretRef"]
            data = cluster.whole("Secret", ref["name"], ref.get("optional", False), where)
        for k, v in data.items():
            env[src.get("prefix", "") + k] = v.decode()
    for e in c.get("env", []):
        name = e["name"]
        vf = e.get("valueFrom")
        if vf is None:
            env[name] = expand(str(e.get("value", "")), env)
        elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
            kind, ref = ("Secret", vf["secretKeyRef"]) if "secretKeyRef" in vf else ("ConfigMap", vf["configMapKeyRef"])
            got = cluster.lookup(kind, ref, f"{where}, env {name}")
            if got is not None:
                env[name] = got.decode()
        else:
            env[name] = downward(pod, c, vf, f"{where}, env {name}")
    try:
        env = {k: rewrite(v) for k, v in env.items()}
        command = c.get("command") or image_entrypoint()
        argv = [rewrite(expand(a, env)) for a in command + c.get("args", [])]
        for path, data in planned["files"]:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                data = rewrite(data.decode()).encode()
            except UnicodeDecodeError:
                pass
            path.write_bytes(data)
    except PlanError as e:
        raise PlanError(f"{where}: {e}") from None
    if argv[0] not in IMAGE_BINARIES:
        raise PlanError(f"{where}: runs {argv[0]!r}, which the image does not have (it has {sorted(IMAGE_BINARIES)})")
    argv[0] = args.herald

    probes = []
    ports_by_name = {p["name"]: p["host_port"] for p in planned["ports"] if p["name"]}
    for kind in PROBES:
        probe = c.get(kind)
        if not probe:
            continue
        out: dict[str, Any] = {"kind": kind}
        out.update({k: probe.get(k, d) for k, d in PROBE_DEFAULTS.items()})
        if "httpGet" in probe:
            h = probe["httpGet"]
            out.update(type="http", scheme=h.get("scheme", "HTTP"), path=h.get("path", "/"),
                       port=probe_port(h["port"], ports_by_name, own, f"{where}, {kind}"))
        elif "grpc" in probe:
            out.update(type="grpc", service=probe["grpc"].get("service", ""),
                       port=probe_port(probe["grpc"]["port"], ports_by_name, own, f"{where}, {kind}"))
        elif "tcpSocket" in probe:
            out.update(type="tcp", port=probe_port(probe["tcpSocket"]["port"], ports_by_name, own, f"{where}, {kind}"))
        elif "exec" in probe:
            cmd = [rewrite(expand(a, env)) for a in probe["exec"]["command"]]
            if cmd and cmd[0] in IMAGE_BINARIES:
                cmd[0] = args.herald
            out.update(type="exec", argv=cmd)
        else:
            raise PlanError(f"{where}: {kind} of an unknown kind: {sorted(probe)}")
        probes.append(out)

    return {
        "name": c["name"],
        "init": planned["init"],
        "argv": argv,
        "command_line": shlex.join(argv),
        "env": env,
        "cwd": str(planned["root"]),
        "ports": planned["ports"],
        "mounts": {k: str(v) for k, v in planned["mounts"].items()},
        # What the container may write besides its volumes: nothing when
        # the root filesystem is read-only.
        "read_only_root": bool((c.get("securityContext") or {}).get("readOnlyRootFilesystem")),
        "probes": probes,
    }


def probe_port(port: Any, by_name: dict[str, int], own: dict[int, int], where: str) -> int:
    if isinstance(port, str):
        if port not in by_name:
            raise PlanError(f"{where}: no container port named {port!r}")
        return by_name[port]
    if port not in own:
        raise PlanError(f"{where}: port {port} is not a container port (so not remapped)")
    return own[port]


def plan(args: argparse.Namespace) -> dict[str, Any]:
    values, outside = values_for(args.values, args)
    helm.disable_logging()
    with helm.Chart.load(CHART) as chart:
        docs = render(chart, values, is_install=True)
    cluster = Cluster(docs, outside)
    workdir = Path(args.workdir)

    pods = []
    for d in docs:
        if d["kind"] not in WORKLOAD_KINDS:
            continue
        template = d["spec"]["template"]
        annotations = d["metadata"].get("annotations", {})
        hooks = annotations.get("helm.sh/hook", "")
        pod = {
            "kind": d["kind"],
            "workload": d["metadata"]["name"],
            "name": f"{d['metadata']['name']}-{secrets.token_hex(4)}-{secrets.token_hex(3)}"[:63],
            "uid": f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}",
            "metadata": template.get("metadata", {}),
            "labels": template.get("metadata", {}).get("labels", {}),
            "spec": template["spec"],
            # Helm runs pre-install hooks (by weight) before anything else.
            "pre_install": "pre-install" in hooks.split(","),
            "hook_weight": int(annotations.get("helm.sh/hook-weight", "0")),
            "deadline_seconds": d["spec"].get("activeDeadlineSeconds"),
            "grace_seconds": template["spec"].get("terminationGracePeriodSeconds", 30),
        }
        pod["containers"] = [plan_container(pod, c, True, cluster, args, workdir)
                             for c in template["spec"].get("initContainers", [])]
        pod["containers"] += [plan_container(pod, c, False, cluster, args, workdir)
                              for c in template["spec"]["containers"]]
        pods.append(pod)

    services = service_ports(cluster, pods)
    workloads = []
    for pod in sorted(pods, key=lambda p: (not p["pre_install"], p["hook_weight"], p["workload"])):
        workloads.append({
            "kind": pod["kind"],
            "name": pod["workload"],
            "pod": pod["name"],
            "pre_install_hook": pod["pre_install"],
            "deadline_seconds": pod["deadline_seconds"],
            "grace_seconds": pod["grace_seconds"],
            "containers": [finish_container(pod, c, cluster, services, args) for c in pod["containers"]],
        })
    return {
        "variant": args.values,
        "outside_secrets": sorted(outside),
        "services": {k: v for k, v in services.items() if "." not in k},
        "workloads": workloads,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", choices=["default", "full"], required=True)
    parser.add_argument("--herald", required=True, help="the herald binary to run")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--subject-prefix", required=True)
    parser.add_argument("--tls-cert", required=True, help="PEM file for the edge's TLS Secret")
    parser.add_argument("--tls-key", required=True, help="PEM file for the edge's TLS Secret")
    parser.add_argument("--workdir", required=True, help="where mounted files are written")
    args = parser.parse_args()
    try:
        out = plan(args)
    except PlanError as e:
        print(f"chart pods: {e}", file=sys.stderr)
        return 2
    except helm.HelmError as e:
        print(f"chart pods: rendering {args.values} failed: {e}", file=sys.stderr)
        return 2
    json.dump(out, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
