#!/usr/bin/env python3
"""Offline checks of everything under deploy/, run by .ci/run.

  deploy/check.py --scrape SCRAPE.txt [--kubernetes-version 1.32.0]
  deploy/check.py --extract-rules OUT.yml   # the PrometheusRule's spec as a plain rule file

1. `kubectl kustomize` renders each overlay and the training kustomization;
   the output validates with `kubernetes-validate --strict` against the
   pinned Kubernetes version; the custom resources it cannot know (KEDA's
   ScaledObject, the Prometheus Operator's ServiceMonitor) are checked here
   against what they point at, and the pod specs against the daemon's
   config (grace period longer than the drain deadline, the state file on
   each replica's own volume, static membership, GPU overlay).
2. `promtool check rules` and `promtool test rules` on the PrometheusRule's
   spec (written as a plain rule file next to a copy of rules_test.yml).
3. The Grafana dashboard parses, and every PromQL expression in it and in
   the rules names only metrics that a live `/metrics` scrape of the daemon
   (SCRAPE.txt, written by tests/e2e/e2e.py) really has.
4. Each Dockerfile's `cargo build` line is one that .ci/run runs.

Prints one line per check and 'deploy: N passed, 0 failed' at the end.
Needs kubectl, promtool, and PyYAML and kubernetes-validate in the Python
that runs it.
"""

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RENDERED = {
    "storage": DEPLOY / "k8s/storage",
    "overlays/cpu": DEPLOY / "k8s/overlays/cpu",
    "overlays/gpu": DEPLOY / "k8s/overlays/gpu",
    "training": DEPLOY / "k8s/training",
}
# Series Prometheus makes itself for every target: not the daemon's to export.
PROMETHEUS_SYNTHETIC = {"up"}
checks = 0


def check(condition, message):
    global checks
    if not condition:
        print(f"deploy: FAILED: {message}", flush=True)
        print(f"deploy: {checks} passed, 1 failed", flush=True)
        sys.exit(1)
    checks += 1
    print(f"deploy: ok: {message}", flush=True)


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def render(name, path):
    result = run(["kubectl", "kustomize", str(path)])
    check(result.returncode == 0, f"kubectl kustomize renders {name} {result.stderr.strip()}")
    return result.stdout, [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(documents, kind):
    return [d for d in documents if d.get("kind") == kind]


def containers(documents):
    for doc in documents:
        spec = doc.get("spec", {})
        pod = {
            "StatefulSet": lambda: spec["template"]["spec"],
            "Job": lambda: spec["template"]["spec"],
            "CronJob": lambda: spec["jobTemplate"]["spec"]["template"]["spec"],
        }.get(doc["kind"])
        if pod:
            yield doc, pod()


def check_kubernetes(version):
    for name, path in RENDERED.items():
        text, documents = render(name, path)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(text)
            f.flush()
            result = run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                          "--kubernetes-version", version, f.name])
        check(result.returncode == 0,
              f"{name} validates strictly against Kubernetes {version} {result.stdout.strip()}")
        for doc, pod in containers(documents):
            where = f"{name} {doc['kind']}/{doc['metadata']['name']}"
            context = pod.get("securityContext", {})
            check(context.get("runAsNonRoot") is True, f"{where} runs as non-root")
            for c in pod["containers"]:
                sc = c.get("securityContext", {})
                check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                      and sc.get("capabilities", {}).get("drop") == ["ALL"],
                      f"{where} container {c['name']}: read-only root, no privilege escalation, capabilities dropped")
                check("limits" in c.get("resources", {}) and "requests" in c.get("resources", {}),
                      f"{where} container {c['name']} has requests and limits")
        if name.startswith("overlays/"):
            check_daemon(name, documents)


def check_daemon(name, documents):
    (daemon,) = by_kind(documents, "StatefulSet")
    pod = daemon["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    probes = {k: container.get(k, {}).get("httpGet", {}).get("path") for k in ("livenessProbe", "readinessProbe")}
    check(probes == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"},
          f"{name}: liveness on /healthz, readiness on /readyz")
    (configmap,) = [c for c in by_kind(documents, "ConfigMap") if c["metadata"]["name"].startswith("anomalyd-config")]
    config = tomllib.loads(configmap["data"]["anomalyd.toml"])
    drain = config.get("shutdown", {}).get("drain_deadline_seconds", 20.0)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace > drain, f"{name}: grace period {grace}s is longer than the drain deadline {drain}s")
    volume_names = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    model_dir = str(pathlib.PurePosixPath(config["model"]["path"]).parent)
    check(model_dir in mounts and mounts[model_dir].get("readOnly") is True
          and "persistentVolumeClaim" in volume_names[mounts[model_dir]["name"]],
          f"{name}: model.path {config['model']['path']} lies on a read-only volume")
    config_volume = volume_names[mounts["/etc/anomalyd"]["name"]]
    check(config_volume.get("configMap", {}).get("name") == configmap["metadata"]["name"],
          f"{name}: the config comes from the generated ConfigMap")
    env = {e["name"]: e for e in container.get("env", [])}
    state_file = env.get("ANOMALYD_STATE_FILE", {}).get("value") or config.get("series", {}).get("state_file")
    claims = {c["metadata"]["name"] for c in daemon["spec"].get("volumeClaimTemplates", [])}
    state_mount = mounts.get(str(pathlib.PurePosixPath(state_file or "/").parent), {})
    check(state_file is not None and state_mount.get("name") in claims and not state_mount.get("readOnly"),
          f"{name}: the state file {state_file} lies on each replica's own writable volume")
    instance = env.get("ANOMALYD_GROUP_INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {})
    check(instance.get("fieldPath") == "metadata.name",
          f"{name}: each replica's static group membership is its pod name")
    (service,) = by_kind(documents, "Service")
    ports = {p["name"] for p in service["spec"]["ports"]}
    (monitor,) = by_kind(documents, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    check(all(service["metadata"]["labels"].get(k) == v for k, v in wanted.items())
          and all(e["port"] in ports for e in monitor["spec"]["endpoints"]),
          f"{name}: the ServiceMonitor selects the Service and names its port")
    (scaled,) = by_kind(documents, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    check(target["name"] == daemon["metadata"]["name"] and target.get("kind") == "StatefulSet",
          f"{name}: the ScaledObject scales the StatefulSet")
    (trigger,) = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    check(trigger["type"] == "kafka" and meta["consumerGroup"] == config["kafka"]["group_id"]
          and meta["topic"] in config["kafka"]["topics"] and meta.get("allowIdleConsumers") == "false",
          f"{name}: KEDA watches the daemon's own group and topic, capped at the partition count")
    (budget,) = by_kind(documents, "PodDisruptionBudget")
    labels = daemon["spec"]["template"]["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in budget["spec"]["selector"]["matchLabels"].items()),
          f"{name}: the PodDisruptionBudget selects the daemon's pods")
    gpu = container["resources"]["limits"].get("nvidia.com/gpu")
    device = container["args"][container["args"].index("--device") + 1] if "--device" in container["args"] else "cpu"
    if name == "overlays/gpu":
        check(gpu == 1 and device == "cuda:0" and "gpu" in container["image"],
              f"{name}: one nvidia.com/gpu, --device cuda:0, the GPU image")
    else:
        check(gpu is None and device == "cpu", f"{name}: no GPU, --device cpu")


def rule_expressions(groups):
    return [(rule.get("alert") or rule.get("record"), rule["expr"]) for g in groups for rule in g["rules"]]


def write_plain_rules(rule, path):
    """What Prometheus itself reads: the PrometheusRule's spec."""
    pathlib.Path(path).write_text(yaml.safe_dump(rule["spec"], sort_keys=False))


def check_rules():
    rule = yaml.safe_load((DEPLOY / "prometheus/rules.yml").read_text())
    check(rule["kind"] == "PrometheusRule" and rule["apiVersion"] == "monitoring.coreos.com/v1",
          "rules.yml is a PrometheusRule")
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        write_plain_rules(rule, work / "rules.yml")
        shutil.copy(DEPLOY / "prometheus/rules_test.yml", work / "rules_test.yml")
        result = run(["promtool", "check", "rules", "rules.yml"], cwd=work)
        check(result.returncode == 0, f"promtool check rules {result.stdout.strip()} {result.stderr.strip()}")
        result = run(["promtool", "test", "rules", "rules_test.yml"], cwd=work)
        check(result.returncode == 0, f"promtool test rules {result.stdout.strip()} {result.stderr.strip()}")
    tested = set(re.findall(r"alertname:\s*(\w+)", (DEPLOY / "prometheus/rules_test.yml").read_text()))
    alerts = {name for name, _ in rule_expressions(rule["spec"]["groups"])}
    check(alerts <= tested, f"every alert has a unit test (untested: {sorted(alerts - tested)})")
    return rule_expressions(rule["spec"]["groups"])


def dashboard_expressions():
    dashboard = json.loads((DEPLOY / "grafana/anomalyd.json").read_text())
    check(dashboard.get("uid") == "anomalyd" and dashboard.get("panels"), "the Grafana dashboard parses")
    found = []
    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((panel["title"], target["expr"]))
            walk(panel.get("panels", []))
    walk(dashboard["panels"])
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            found.append((f"variable {variable['name']}", variable["definition"]))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            found.append((f"annotation {annotation['name']}", annotation["expr"]))
    panels_without = [p["title"] for p in dashboard["panels"] if p["type"] != "row" and not p.get("targets")]
    check(not panels_without, f"every panel has a query (none: {panels_without})")
    return found


def exported_metrics(scrape):
    """Metric names in a scrape, with the series names a histogram or
    summary really has (_bucket, _sum, _count)."""
    names = set()
    for line in scrape.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def referenced_metrics(expr):
    # Label matchers and strings hold no metric names; drop them first.
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", "{}", bare)
    bare = re.sub(r"\[[^\]]*\]", "[]", bare)
    names = set(re.findall(r"\b(anomalyd_[a-zA-Z0-9_]+)", bare))
    # Any other selector: a name right before a label matcher.
    names |= {n for n in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", bare) if n not in names}
    return names


def check_metric_names(expressions, scrape_path):
    scrape = pathlib.Path(scrape_path).read_text()
    exported = exported_metrics(scrape)
    check(len(exported) > 10, f"the scrape {scrape_path} holds the daemon's metrics ({len(exported)} series names)")
    for where, expr in expressions:
        names = referenced_metrics(expr)
        check(names, f"{where}: names at least one metric")
        missing = sorted(n for n in names if n not in exported and n not in PROMETHEUS_SYNTHETIC)
        check(not missing, f"{where}: {sorted(names)} are exported by the daemon, or made by Prometheus (missing: {missing})")


def check_dockerfiles():
    ci = (ROOT / ".ci/run").read_text()
    for dockerfile in sorted((DEPLOY / "docker").glob("Dockerfile*")):
        text = dockerfile.read_text()
        builds = re.findall(r"^RUN (cargo build [^\n]*)$", text, re.MULTILINE)
        check(len(builds) == 1 and builds[0] in ci,
              f"{dockerfile.name} builds with a command .ci/run runs: {builds}")
        check(re.search(r"^USER 10001", text, re.MULTILINE) and "anomalyd --version" in text,
              f"{dockerfile.name}: non-root user and a --version smoke step")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scrape", help="a /metrics scrape of a live daemon")
    parser.add_argument("--extract-rules", metavar="OUT", help="only write the rules as a plain rule file")
    parser.add_argument("--kubernetes-version", default="1.32.0")
    args = parser.parse_args()
    if args.extract_rules:
        write_plain_rules(yaml.safe_load((DEPLOY / "prometheus/rules.yml").read_text()), args.extract_rules)
        return
    if not args.scrape:
        parser.error("--scrape is required")
    check_kubernetes(args.kubernetes_version)
    expressions = check_rules() + dashboard_expressions()
    check_metric_names(expressions, args.scrape)
    check_dockerfiles()
    print(f"deploy: {checks} passed, 0 failed", flush=True)


if __name__ == "__main__":
    main()
