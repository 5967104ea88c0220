#!/usr/bin/env python3
"""Proves the Herald Helm chart and the deploy/ material.

1. contract: the chart's config keys match the binary's (edge/src/config.rs,
   control-plane/src/config.rs), so a new setting cannot be forgotten;
2. lint (strict) with the default and the full-featured values;
3. render the default values, the full-featured values and a few variants,
   and validate every manifest against the Kubernetes schemas of the
   versions the chart supports (kubernetes-validate --strict);
4. check what the manifests must say (probes, drain, secrets, selectors…);
5. render bad values and require each to fail with a message naming the
   problem;
6. check deploy/: the compose file against the Compose specification, the
   example configs against the binary's keys, the Grafana dashboard and
   Prometheus config against the metrics the binary exports.

Run from anywhere: `bash .ci/helm.sh` installs the tools and runs this.
Exits non-zero on the first broken section's end, listing every failure.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "herald"
DEPLOY = ROOT / "deploy"
RELEASE = "herald"
NAMESPACE = "realtime"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion), the one
# CI has always validated against, and the newest kubernetes-validate knows.
KUBE_VERSIONS = ["1.30.0", "1.33.0", "1.37.0"]
# Kinds from CRDs: kubernetes-validate has no schema for them; they get the
# structural checks below instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

# Edge and control-plane keys the chart sets itself from other values.
EDGE_MANAGED = {"listen", "nats_url", "subject_prefix", "edge_id", "jwks_url", "tls_cert", "tls_key", "drain_timeout"}
CP_MANAGED = {"database_url", "admin_token", "listen", "nats_url", "subject_prefix", "tls_cert", "tls_key"}
# Control-plane settings the binary takes besides the fields of its Config
# struct (the `herald control-plane` command adds them).
CP_COMMAND_KEYS = {"listen", "nats_url", "subject_prefix"}

failures: list[str] = []


def check(ok: bool, what: str) -> bool:
    if not ok:
        failures.append(what)
        print(f"  FAIL {what}")
    return ok


def section(title: str) -> None:
    print(f"\n== {title}")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


# --- 1. the binary's contract -------------------------------------------------


def edge_fields() -> set[str]:
    """The fields of EdgeConfig (its FIELDS list is generated from them by
    the edge_config! macro)."""
    text = (ROOT / "edge/src/config.rs").read_text()
    if "edge_config! {" not in text:
        raise SystemExit("cannot find the edge_config! declaration in edge/src/config.rs")
    struct = re.search(r"pub struct EdgeConfig \{(.*?)\n\}", text, re.S)
    if not struct:
        raise SystemExit("cannot find struct EdgeConfig in edge/src/config.rs")
    return set(re.findall(r"^\s*pub ([a-z0-9_]+):", struct.group(1), re.M))


def cp_fields() -> set[str]:
    text = (ROOT / "control-plane/src/config.rs").read_text()
    m = re.search(r"^config! \{(.*?)^\}", text, re.S | re.M)
    if not m:
        raise SystemExit("cannot find the config! table in control-plane/src/config.rs")
    return set(re.findall(r"^\s*([a-z0-9_]+)\s*:\s*[^=\n]+=.*;\s*$", m.group(1), re.M))


def cp_renamed() -> dict[str, str]:
    """The control plane's renamed keys (RENAMED_KEYS): old key -> new key."""
    text = (ROOT / "control-plane/src/config.rs").read_text()
    return dict(re.findall(r'renamed\("([a-z0-9_]+)", "([a-z0-9_]+)", "[A-Za-z]+"\)', text))


def exported_metrics() -> set[str]:
    names: set[str] = set()
    for crate in ("bus/src", "edge/src", "control-plane/src", "src"):
        for path in (ROOT / crate).rglob("*.rs"):
            names.update(re.findall(r'"(herald_[a-z0-9_]+)"', path.read_text()))
    return names


def check_contract(schema: dict[str, Any]) -> tuple[set[str], set[str]]:
    section("contract: chart settings against the binary's")
    edge = edge_fields()
    cp = cp_fields()
    renamed = cp_renamed()
    check(bool(renamed) and set(renamed.values()) <= cp, f"renamed control-plane keys point at unknown keys: {renamed}")
    # The old names of renamed keys still work (the binary warns): the chart keeps accepting them.
    cp = cp | set(renamed)
    props = schema["properties"]
    edge_schema = set(props["edge"]["properties"]["config"]["properties"])
    cp_schema = set(props["controlPlane"]["properties"]["config"]["properties"])
    check(edge_schema == edge - EDGE_MANAGED,
          f"edge.config in values.schema.json differs from the edge's settings: "
          f"missing {sorted(edge - EDGE_MANAGED - edge_schema)}, unknown {sorted(edge_schema - edge)}")
    check(cp_schema == cp - CP_MANAGED,
          f"controlPlane.config in values.schema.json differs from the control plane's settings: "
          f"missing {sorted(cp - CP_MANAGED - cp_schema)}, unknown {sorted(cp_schema - cp)}")
    check(EDGE_MANAGED <= edge, f"chart-managed edge keys unknown to the edge: {sorted(EDGE_MANAGED - edge)}")
    print(f"  edge: {len(edge)} settings ({len(edge_schema)} in edge.config); "
          f"control plane: {len(cp)} settings ({len(cp_schema)} in controlPlane.config)")
    return edge, cp | CP_COMMAND_KEYS


# --- 2-4. lint, render, validate, assert ---------------------------------------


def render(chart: helm.Chart, values: dict[str, Any], **opts: Any) -> list[dict[str, Any]]:
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, **opts)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(out.items()):
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("_source", path)
                docs.append(doc)
    return docs


def kube_validate(name: str, docs: list[dict[str, Any]], tmp: Path) -> None:
    path = tmp / f"{name}.yaml"
    with path.open("w") as f:
        yaml.safe_dump_all([{k: v for k, v in d.items() if k != "_source"} for d in docs], f, sort_keys=False)
    for version in KUBE_VERSIONS:
        run = subprocess.run(
            [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version, str(path)],
            capture_output=True, text=True, check=False)
        output = (run.stdout + run.stderr).strip()
        unexpected = [line for line in output.splitlines()
                      if line.strip() and not any(f"kind {k} " in line for k in CRD_KINDS)]
        check(run.returncode == 0 and not unexpected,
              f"{name}: kubernetes-validate --strict -k {version} failed:\n{output}")
    kinds = sorted({d["kind"] for d in docs})
    print(f"  {name}: {len(docs)} manifests valid for Kubernetes {', '.join(KUBE_VERSIONS)} ({', '.join(kinds)})")


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    check(len(found) == 1, f"expected one {kind} {name}, found {len(found)}")
    return found[0] if found else None


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [e["name"] for e in container.get("env", [])]
    check(len(names) == len(set(names)), f"{container['name']}: duplicate environment variables {names}")
    return {e["name"]: e for e in container.get("env", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def assert_manifests(name: str, docs: list[dict[str, Any]], values: dict[str, Any],
                     edge_keys: set[str], cp_keys: set[str]) -> None:
    """What every rendering must say, whatever the values."""
    v = values
    full = v.get("fullnameOverride") or RELEASE
    edge_name, cp_name = f"{full}-edge", f"{full}-control-plane"
    edge_v, cp_v = v["edge"], v["controlPlane"]

    for d in docs:
        if d["kind"] not in ("ServiceMonitor", "PrometheusRule", "ConfigMap"):
            check(d["metadata"].get("namespace") == NAMESPACE, f"{name}: {d['kind']} {d['metadata']['name']} not in the release namespace")
        check(len(d["metadata"]["name"]) <= 63, f"{name}: {d['kind']} name {d['metadata']['name']} is longer than 63")

    # The edge Deployment.
    edge = one(docs, "Deployment", edge_name)
    if edge:
        spec = edge["spec"]
        pod = spec["template"]["spec"]
        (c,) = pod["containers"]
        env = env_of(c)
        check(c["args"] == ["edge"], f"{name}: edge args {c['args']}")
        port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
        check(port_names.get("http") == edge_v["port"], f"{name}: edge port {port_names}")
        check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{name}: edge readiness probe not on /readyz")
        check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{name}: edge liveness probe not on /healthz")
        scheme = "HTTPS" if edge_v["tls"]["enabled"] else "HTTP"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            check(c[probe]["httpGet"]["port"] in port_names and c[probe]["httpGet"]["scheme"] == scheme,
                  f"{name}: edge {probe} port/scheme")
        drain, sleep = edge_v["drainTimeoutSeconds"], edge_v["preStopSleepSeconds"]
        grace = pod["terminationGracePeriodSeconds"]
        check(grace > drain + sleep, f"{name}: edge terminationGracePeriodSeconds {grace} <= preStop {sleep} + drain {drain}")
        check(env.get("HERALD_EDGE_DRAIN_TIMEOUT", {}).get("value") == f"{drain}s",
              f"{name}: HERALD_EDGE_DRAIN_TIMEOUT is not {drain}s")
        if sleep > 0:
            check(c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds") == sleep,
                  f"{name}: edge preStop sleep is not {sleep}s")
        else:
            check("lifecycle" not in c, f"{name}: edge has a preStop with preStopSleepSeconds 0")
        check(env.get("HERALD_EDGE_EDGE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
              f"{name}: edge_id is not the pod name")
        jwks = env.get("HERALD_EDGE_JWKS_URL", {}).get("value", "")
        if not edge_v.get("jwksUrl"):
            check(jwks == f"http://{cp_name}.{NAMESPACE}.svc:{cp_v['service']['port']}/.well-known/jwks.json",
                  f"{name}: edge JWKS URL {jwks!r} is not the control-plane Service")
        for var in env:
            if var.startswith("HERALD_EDGE_"):
                check(var[len("HERALD_EDGE_"):].lower() in edge_keys, f"{name}: {var} is not an edge setting (the edge would refuse to start)")
            check(not var.startswith("HERALD_CP_"), f"{name}: control-plane variable {var} on the edge")
        if edge_v["autoscaling"]["enabled"]:
            check("replicas" not in spec, f"{name}: edge replicas set although the HPA owns them")
        else:
            check(spec.get("replicas") == edge_v["replicaCount"], f"{name}: edge replicas")
        sc = c["securityContext"]
        check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False,
              f"{name}: edge container security context")
        check(pod["securityContext"].get("runAsNonRoot") is True, f"{name}: edge pod may run as root")
        check(pod.get("automountServiceAccountToken") is False or v["serviceAccount"]["automountServiceAccountToken"],
              f"{name}: edge mounts a service account token")
        cp_issuer = cp_v.get("config", {}).get("issuer")
        if cp_issuer:
            check(env.get("HERALD_EDGE_ISSUER", {}).get("value") == cp_issuer, f"{name}: the edge does not expect the control plane's issuer")
        if edge_v["tls"]["enabled"]:
            check({"HERALD_EDGE_TLS_CERT", "HERALD_EDGE_TLS_KEY"} <= env.keys(), f"{name}: edge TLS variables missing")
        check("checksum/secrets" not in spec["template"]["metadata"].get("annotations", {}),
              f"{name}: edge pods would restart (and move every client) when the control plane's Secret changes")

    # The control-plane Deployment.
    cp = one(docs, "Deployment", cp_name)
    if cp:
        (c,) = cp["spec"]["template"]["spec"]["containers"]
        env = env_of(c)
        check(c["args"] == ["control-plane"], f"{name}: control-plane args {c['args']}")
        check(c["readinessProbe"].get("grpc", {}).get("port") == cp_v["port"],
              f"{name}: control-plane readiness probe is not gRPC health on the API port")
        check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{name}: control-plane liveness probe not on /healthz")
        for secret_var in ("HERALD_CP_DATABASE_URL", "HERALD_CP_ADMIN_TOKEN"):
            check("secretKeyRef" in env.get(secret_var, {}).get("valueFrom", {}),
                  f"{name}: {secret_var} does not come from a Secret")
        check(env.get("HERALD_CP_LISTEN", {}).get("value", "").endswith(f":{cp_v['port']}"), f"{name}: control-plane listen port")
        for var in env:
            if var.startswith("HERALD_CP_"):
                check(var[len("HERALD_CP_"):].lower() in cp_keys, f"{name}: {var} is not a control-plane setting")
            check(not var.startswith("HERALD_EDGE_"), f"{name}: edge variable {var} on the control plane")
        check(cp["spec"]["replicas"] == cp_v["replicaCount"], f"{name}: control-plane replicas")
        if not v["secrets"]["existingSecret"]:
            check("checksum/secrets" in cp["spec"]["template"]["metadata"].get("annotations", {}),
                  f"{name}: control-plane pods do not restart when the chart's Secret changes")

    # Services select their pods and expose the named port.
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in by_kind(docs, "Deployment")}
    for svc_name, deploy_name in ((edge_name, edge_name), (cp_name, cp_name)):
        svc = one(docs, "Service", svc_name)
        if svc and deploy_name in pods:
            check(selects(svc["spec"]["selector"], pods[deploy_name]), f"{name}: Service {svc_name} does not select its pods")
            check(svc["spec"]["ports"][0]["targetPort"] == "http", f"{name}: Service {svc_name} target port")
            others = [p for p, labels in pods.items() if p != deploy_name and selects(svc["spec"]["selector"], labels)]
            check(not others, f"{name}: Service {svc_name} also selects {others}")
    svc = one(docs, "Service", edge_name)
    if svc:
        check(svc["spec"]["sessionAffinity"] == edge_v["service"]["sessionAffinity"], f"{name}: edge session affinity")

    # Autoscaling and disruption budgets.
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    if edge_v["autoscaling"]["enabled"]:
        check(len(hpas) == 1 and hpas[0]["spec"]["scaleTargetRef"]["name"] == edge_name, f"{name}: HPA does not target the edge")
    else:
        check(not hpas, f"{name}: HPA rendered while disabled")
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        matched = [p for p, labels in pods.items() if selects(pdb["spec"]["selector"]["matchLabels"], labels)]
        check(len(matched) == 1, f"{name}: PodDisruptionBudget {pdb['metadata']['name']} selects {matched}")
    expected_pdbs = int(edge_v["podDisruptionBudget"]["enabled"]) + int(cp_v["podDisruptionBudget"]["enabled"])
    check(len(by_kind(docs, "PodDisruptionBudget")) == expected_pdbs, f"{name}: PodDisruptionBudgets")

    # The migration hook and the Secret it needs.
    jobs = by_kind(docs, "Job")
    if v["migrations"]["enabled"]:
        check(len(jobs) == 1, f"{name}: one migration Job expected")
        for job in jobs:
            hooks = job["metadata"].get("annotations", {}).get("helm.sh/hook", "")
            check({"pre-install", "pre-upgrade"} <= set(hooks.split(",")), f"{name}: migration Job hooks {hooks!r}")
            (c,) = job["spec"]["template"]["spec"]["containers"]
            check(c["args"] == ["control-plane", "--migrate-only"], f"{name}: migration args {c['args']}")
            env = env_of(c)
            check("secretKeyRef" in env.get("HERALD_CP_DATABASE_URL", {}).get("valueFrom", {}), f"{name}: migration database URL")
            check("HERALD_CP_ADMIN_TOKEN" not in env, f"{name}: the migration Job does not need the admin token")
            check(job["spec"]["template"]["spec"]["restartPolicy"] == "Never", f"{name}: migration restartPolicy")
    else:
        check(not jobs, f"{name}: migration Job rendered while disabled")
    secrets = by_kind(docs, "Secret")
    if v["secrets"]["existingSecret"]:
        check(not secrets, f"{name}: a Secret is rendered although secrets.existingSecret is set")
    else:
        check(len(secrets) == 1, f"{name}: the chart's Secret is missing")
        for s in secrets:
            ann = s["metadata"].get("annotations", {})
            check(int(ann.get("helm.sh/hook-weight", "0")) < 0 and "pre-install" in ann.get("helm.sh/hook", ""),
                  f"{name}: the Secret must be a pre-install hook created before the migration Job")
            check({v["secrets"]["adminTokenKey"], v["secrets"]["databaseUrlKey"]} <= set(s["data"]), f"{name}: Secret keys")
            token = base64.b64decode(s["data"].get(v["secrets"]["adminTokenKey"], "")).decode()
            if v["secrets"]["adminToken"]:
                check(token == v["secrets"]["adminToken"], f"{name}: the Secret's admin token is not the one given")
            else:
                # Drawn by the chart (kept across upgrades by lookup).
                check(len(token) == 48 and token.isalnum(), f"{name}: no admin token drawn when none is given")
                check(token not in json.dumps([d for d in docs if d["kind"] != "Secret"]),
                      f"{name}: the drawn admin token appears outside the Secret")
        # Secret values only ever appear in the Secret.
        plain = json.dumps([d for d in docs if d["kind"] != "Secret"])
        for secret in (v["secrets"]["adminToken"], v["secrets"]["databaseUrl"]):
            check(not secret or secret not in plain, f"{name}: a secret value appears outside the Secret")

    # Ingresses and ServiceMonitors point at existing Services and ports.
    services = {d["metadata"]["name"]: d for d in by_kind(docs, "Service")}
    for ing in by_kind(docs, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                backend = p["backend"]["service"]
                target = services.get(backend["name"])
                check(target is not None and any(sp["name"] == backend["port"]["name"] for sp in target["spec"]["ports"]),
                      f"{name}: Ingress {ing['metadata']['name']} points at a missing Service port")
                check(p["path"] != "/metrics", f"{name}: Ingress exposes /metrics")
    for sm in by_kind(docs, "ServiceMonitor"):
        sel = sm["spec"]["selector"]["matchLabels"]
        matched = [s for s in services.values() if selects(sel, s["metadata"]["labels"])]
        check(len(matched) == 1, f"{name}: ServiceMonitor {sm['metadata']['name']} selects {len(matched)} Services")
        for ep in sm["spec"]["endpoints"]:
            check(ep["path"] == "/metrics" and any(p["name"] == ep["port"] for m in matched for p in m["spec"]["ports"]),
                  f"{name}: ServiceMonitor {sm['metadata']['name']} endpoint")
    for rule in by_kind(docs, "PrometheusRule"):
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                check(bool(r.get("alert")) and bool(r.get("expr")) and "severity" in r.get("labels", {}),
                      f"{name}: alert rule {r.get('alert')} incomplete")
                for metric in re.findall(r"\b(herald_[a-z0-9_]+)", r["expr"]):
                    check(strip_suffix(metric) in METRICS, f"{name}: alert {r['alert']} uses unknown metric {metric}")
    for cm in by_kind(docs, "ConfigMap"):
        for key, text in cm.get("data", {}).items():
            if key.endswith(".json"):
                json.loads(text)


METRICS: set[str] = set()


def strip_suffix(metric: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if metric.endswith(suffix) and metric[: -len(suffix)] in METRICS:
            return metric[: -len(suffix)]
    return metric


# --- 5. bad values ----------------------------------------------------------


BAD_CASES: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], str]] = [
    ("no values at all", lambda d: {}, "secrets.databaseUrl is required"),
    ("no NATS", lambda d: deep_merge(d, {"nats": {"url": ""}}), "nats.url is required"),
    ("replicas as text", lambda d: deep_merge(d, {"edge": {"replicaCount": "two"}}), "/edge/replicaCount"),
    ("boolean as text", lambda d: deep_merge(d, {"edge": {"autoscaling": {"enabled": "yes"}}}), "/edge/autoscaling/enabled"),
    ("drain as text", lambda d: deep_merge(d, {"edge": {"drainTimeoutSeconds": "30s"}}), "/edge/drainTimeoutSeconds"),
    ("unknown top-level key", lambda d: deep_merge(d, {"edges": {"replicaCount": 3}}), "edges"),
    ("misspelt edge setting", lambda d: deep_merge(d, {"edge": {"config": {"max_conections": 10}}}), "max_conections"),
    ("edge setting the chart owns", lambda d: deep_merge(d, {"edge": {"config": {"drain_timeout": "30s"}}}), "drain_timeout"),
    ("duration without unit", lambda d: deep_merge(d, {"edge": {"config": {"heartbeat_interval": "25"}}}), "/edge/config/heartbeat_interval"),
    ("size with a bad unit", lambda d: deep_merge(d, {"edge": {"config": {"send_queue_bytes": "4TB"}}}), "/edge/config/send_queue_bytes"),
    ("count as text", lambda d: deep_merge(d, {"edge": {"config": {"max_connections": "lots"}}}), "/edge/config/max_connections"),
    ("misspelt control-plane setting", lambda d: deep_merge(d, {"controlPlane": {"config": {"token_max_tll": "1h"}}}), "token_max_tll"),
    ("control-plane duration without unit", lambda d: deep_merge(d, {"controlPlane": {"config": {"cache_ttl": 5000}}}), "/controlPlane/config/cache_ttl"),
    ("idempotency window too short", lambda d: deep_merge(d, {"controlPlane": {"config": {"idempotency_window_secs": 60}}}), "/controlPlane/config/idempotency_window_secs"),
    ("SQLite database", lambda d: deep_merge(d, {"secrets": {"databaseUrl": "sqlite://herald.db"}}), "/secrets/databaseUrl"),
    ("short admin token", lambda d: deep_merge(d, {"secrets": {"adminToken": "short"}}), "/secrets/adminToken"),
    ("existing Secret and inline values", lambda d: deep_merge(d, {"secrets": {"existingSecret": "mine"}}), "leave secrets.databaseUrl"),
    ("NATS over http", lambda d: deep_merge(d, {"nats": {"url": "http://nats:4222"}}), "/nats/url"),
    ("bad subject prefix", lambda d: deep_merge(d, {"nats": {"subjectPrefix": "a.>"}}), "/nats/subjectPrefix"),
    ("grace period shorter than the drain",
     lambda d: deep_merge(d, {"edge": {"terminationGracePeriodSeconds": 30}}), "must be longer than edge.preStopSleepSeconds"),
    ("PDB bound as a fraction", lambda d: deep_merge(d, {"edge": {"podDisruptionBudget": {"maxUnavailable": "0.5"}}}), "/edge/podDisruptionBudget/maxUnavailable"),
    ("PDB with no bound", lambda d: deep_merge(d, {"controlPlane": {"podDisruptionBudget": {"maxUnavailable": None}}}), "set minAvailable or maxUnavailable"),
    ("edge TLS without a Secret", lambda d: deep_merge(d, {"edge": {"tls": {"enabled": True}}}), "edge.tls.secretName"),
    ("autoscaling min above max", lambda d: deep_merge(d, {"edge": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}}), "must not exceed maxReplicas"),
    ("autoscaling without a target",
     lambda d: deep_merge(d, {"edge": {"autoscaling": {"targetCPUUtilizationPercentage": None}}}), "without a target"),
    ("CPU target without a CPU request",
     lambda d: deep_merge(d, {"edge": {"resources": {"requests": {"cpu": None}}}}), "needs edge.resources.requests.cpu"),
    ("unknown session affinity", lambda d: deep_merge(d, {"edge": {"service": {"sessionAffinity": "Sticky"}}}), "/edge/service/sessionAffinity"),
    ("privileged port", lambda d: deep_merge(d, {"edge": {"port": 443}}), "/edge/port"),
    ("edge issuer not the control plane's", lambda d: deep_merge(d, {"edge": {"config": {"issuer": "other"}}}), "edge.config.issuer"),
    ("edge setting through extraEnv",
     lambda d: deep_merge(d, {"edge": {"extraEnv": [{"name": "HERALD_EDGE_MAX_CONNECTIONS", "value": "1"}]}}), "/edge/extraEnv"),
    ("JWKS over ftp", lambda d: deep_merge(d, {"edge": {"jwksUrl": "ftp://cp/.well-known/jwks.json"}}), "/edge/jwksUrl"),
    ("unknown pull policy", lambda d: deep_merge(d, {"image": {"pullPolicy": "Sometimes"}}), "/image/pullPolicy"),
    ("ingress path without slash",
     lambda d: deep_merge(d, {"edge": {"ingress": {"enabled": True, "hosts": [{"host": "x", "paths": [{"path": "v1", "pathType": "Exact"}]}]}}}),
     "/edge/ingress/hosts/0/paths/0/path"),
]


def check_bad_values(chart: helm.Chart, defaults: dict[str, Any], validator: jsonschema.Draft7Validator) -> None:
    section(f"bad values are refused ({len(BAD_CASES)} cases)")
    for title, make, expected in BAD_CASES:
        values = make(defaults)
        try:
            render(chart, values)
        except (helm.HelmValuesError, helm.HelmRenderError) as e:
            message = str(e)
            if check(expected in message, f"bad values '{title}': failed, but the message does not name {expected!r}:\n{message}"):
                first = next((line.strip() for line in message.splitlines() if expected in line), message)
                kind = "schema" if isinstance(e, helm.HelmValuesError) else "template"
                print(f"  ok   {title} ({kind}): {first[:140]}")
            # A schema failure must also be one under a second, draft-7
            # validator: what Helm 3 (gojsonschema) enforces too.
            if isinstance(e, helm.HelmValuesError):
                errors = list(validator.iter_errors(chart.merge_values(values)))
                check(bool(errors), f"bad values '{title}': python-jsonschema (draft 7) accepts them")
        else:
            check(False, f"bad values '{title}': rendered without error")


# --- 6. deploy/ ---------------------------------------------------------------


def env_names(environment: Any) -> list[str]:
    if isinstance(environment, dict):
        return list(environment)
    if isinstance(environment, list):
        return [e.split("=", 1)[0] for e in environment]
    return []


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, val = line.partition("=")
            out[k] = val
    return out


def check_deploy(edge_keys: set[str], cp_keys: set[str]) -> None:
    section("deploy/: compose, example configs, Prometheus, Grafana, Dockerfile")
    compose_path = DEPLOY / "compose.yaml"
    run = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(compose_path)],
        capture_output=True, text=True, check=False)
    check(run.returncode == 0, f"compose.yaml does not follow the Compose specification:\n{run.stdout}{run.stderr}")
    compose = load_yaml(compose_path)
    services = compose["services"]
    for needed in ("nats", "postgres", "migrate", "control-plane", "edge-1", "edge-2", "prometheus", "grafana"):
        check(needed in services, f"compose.yaml: no service {needed}")
    nats_conf = (compose_path.parent / "config" / "nats.conf").read_text()
    check(services["nats"]["command"] == ["--config", "/etc/nats/nats.conf"]
          and "./config/nats.conf:/etc/nats/nats.conf:ro" in services["nats"]["volumes"],
          "compose.yaml: NATS does not run with config/nats.conf")
    check(re.search(r"jetstream\s*\{[^}]*store_dir:\s*/data[^}]*sync_interval:\s*always", nats_conf) is not None,
          "config/nats.conf: JetStream without store_dir /data and sync_interval: always")
    check(services["migrate"]["command"] == ["control-plane", "--migrate-only"], "compose.yaml: migrate command")
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}) or {}:
            check(dep in services, f"compose.yaml: {name} depends on missing {dep}")
        names = env_names(svc.get("environment"))
        for env_file in svc.get("env_file", []) or []:
            file = DEPLOY / env_file
            if check(file.is_file(), f"compose.yaml: env_file {env_file} missing"):
                names += list(read_env_file(file))
        for var in names:
            if var.startswith("HERALD_EDGE_"):
                check(var[12:].lower() in edge_keys | {"config"}, f"compose.yaml: {name}: {var} is not an edge setting")
            if var.startswith("HERALD_CP_"):
                check(var[10:].lower() in cp_keys, f"compose.yaml: {name}: {var} is not a control-plane setting")
        for vol in svc.get("volumes", []) or []:
            src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("."):
                check((DEPLOY / src).exists(), f"compose.yaml: {name} mounts missing {src}")
        build = svc.get("build")
        if build:
            check((DEPLOY / build["context"] / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve(),
                  f"compose.yaml: {name} does not build deploy/Dockerfile")
    for edge_name in ("edge-1", "edge-2"):
        grace = services[edge_name].get("stop_grace_period", "10s")
        drain = tomllib.loads((DEPLOY / "config/edge.toml").read_text()).get("drain_timeout", "30s")
        check(int(grace.rstrip("s")) > int(drain.rstrip("s")), f"compose.yaml: {edge_name} stop_grace_period {grace} <= drain_timeout {drain}")

    edge_toml = tomllib.loads((DEPLOY / "config/edge.toml").read_text())
    check(set(edge_toml) <= edge_keys, f"config/edge.toml: unknown keys {sorted(set(edge_toml) - edge_keys)}")
    for key, val in edge_toml.items():
        if key.endswith(("_timeout", "_interval", "_leeway")):
            check(isinstance(val, str) and re.fullmatch(r"[0-9]+(ms|s|m|min|h)", val) is not None,
                  f"config/edge.toml: {key} = {val!r} needs a unit")
    cp_env = read_env_file(DEPLOY / "config/control-plane.env")
    check(all(k.startswith("HERALD_CP_") and k[10:].lower() in cp_keys for k in cp_env),
          f"config/control-plane.env: unknown settings {[k for k in cp_env if k[10:].lower() not in cp_keys]}")
    commented = re.findall(r"^# (HERALD_CP_[A-Z0-9_]+)=", (DEPLOY / "config/control-plane.env").read_text(), re.M)
    check(all(k[10:].lower() in cp_keys for k in commented), "config/control-plane.env: a commented setting is unknown")

    prom = load_yaml(DEPLOY / "prometheus/prometheus.yml")
    for job in prom["scrape_configs"]:
        for sc in job["static_configs"]:
            for target in sc["targets"]:
                check(target.split(":")[0] in services, f"prometheus.yml: target {target} is no compose service")

    dashboard_path = DEPLOY / "grafana/dashboards/herald.json"
    dashboard = json.loads(dashboard_path.read_text())
    check((CHART / "files/herald-dashboard.json").read_bytes() == dashboard_path.read_bytes(),
          "helm/herald/files/herald-dashboard.json differs from deploy/grafana/dashboards/herald.json")
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {strip_suffix(m) for e in exprs for m in re.findall(r"\b(herald_[a-z0-9_]+)", e)}
    check(used <= METRICS, f"dashboard uses metrics the binary does not export: {sorted(used - METRICS)}")
    ids = [p["id"] for p in dashboard["panels"]]
    check(len(ids) == len(set(ids)), "dashboard: duplicate panel ids")
    required_edge = {"herald_connections", "herald_subscriptions", "herald_deliveries_total", "herald_fanout_seconds",
                     "herald_slow_consumer_closes_total", "herald_closes_total", "herald_bus_connected",
                     "herald_process_resident_memory_bytes"}
    check(required_edge <= used, f"dashboard lacks {sorted(required_edge - used)}")
    cp_metrics = {m for m in METRICS if m.startswith("herald_cp_")}
    check(cp_metrics <= used, f"dashboard lacks control-plane metrics {sorted(cp_metrics - used)}")
    print(f"  compose: {len(services)} services; dashboard: {len(dashboard['panels'])} panels over {len(used)} metrics")

    dockerfile = (DEPLOY / "Dockerfile").read_text()
    check("cargo build --release --locked --bin herald" in dockerfile, "Dockerfile: not the release build of the herald binary")
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)
    check(len(stages) >= 3, "Dockerfile: not multi-stage")
    final = stages[-1]
    user = re.findall(r"^USER\s+(\S+)", final, re.M)
    check(bool(user) and user[-1].split(":")[0] not in ("0", "root"), "Dockerfile: the runtime stage does not switch to a non-root user")
    check(re.search(r'^ENTRYPOINT \["/usr/local/bin/herald"\]', final, re.M) is not None, "Dockerfile: entrypoint is not herald")


# --- main -----------------------------------------------------------------------


def main() -> int:
    helm.disable_logging()
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    METRICS.update(exported_metrics())
    edge_keys, cp_keys = check_contract(schema)

    defaults = load_yaml(CHART / "ci/default-values.yaml")
    full = load_yaml(CHART / "ci/full-values.yaml")
    variants = {
        "default": defaults,
        "full": full,
        "fixed-replicas": deep_merge(defaults, {
            "edge": {"autoscaling": {"enabled": False}, "replicaCount": 3, "preStopSleepSeconds": 0,
                     "podDisruptionBudget": {"enabled": False}},
            "controlPlane": {"podDisruptionBudget": {"enabled": False}},
            "migrations": {"enabled": False},
            "serviceAccount": {"create": False, "name": "herald-existing"},
        }),
        "ipv6-nodeport": deep_merge(defaults, {
            "listenHost": "::",
            "edge": {"service": {"type": "NodePort", "nodePort": 30081}},
            "nats": {"url": "nats://nats-0.nats:4222,nats://nats-1.nats:4222", "subjectPrefix": "staging"},
        }),
    }

    section("lint (strict)")
    for name in ("default", "full"):
        report = helm.lint(CHART, variants[name], strict=True, namespace=NAMESPACE, kube_version="v1.33.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        if check(not problems and not report["errors"], f"lint {name}: {problems or report['errors']}"):
            infos = "; ".join(m["error"] for m in report["messages"])
            print(f"  ok   {name}" + (f" (info: {infos})" if infos else ""))

    section("render and validate against the Kubernetes schemas")
    with helm.Chart.load(CHART) as chart, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for name, values in variants.items():
            try:
                docs = render(chart, values, is_install=True)
                render(chart, values, is_upgrade=True, revision=2)
            except helm.HelmError as e:
                check(False, f"render {name}: {e}")
                continue
            merged = chart.merge_values(values)
            errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(merged)]
            check(not errors, f"{name}: python-jsonschema (draft 7) rejects the values: {errors}")
            kube_validate(name, docs, tmp)
            before = len(failures)
            assert_manifests(name, docs, merged, edge_keys, cp_keys)
            if len(failures) == before:
                print(f"  ok   {name}: manifests say what they must")
        # The fully featured rendering, for a look when something fails.
        if os.environ.get("HERALD_HELM_DUMP"):
            print(yaml.safe_dump_all(render(chart, full), sort_keys=False))

        check_bad_values(chart, defaults, validator)

    check_deploy(edge_keys, cp_keys)

    print()
    if failures:
        print(f"helm chart checks: {len(failures)} failed")
        return 1
    print("helm chart checks: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
