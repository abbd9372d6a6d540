#!/usr/bin/python3
"""Checks the Kubernetes manifests offline, against the code they deploy.

For every overlay: it must render with `kubectl kustomize`; every object must validate against
the strict Kubernetes 1.29 JSON schema of its kind (unknown fields rejected); and the manifests
must agree with the binaries: ports, probe service names, flags, mounted files, the shutdown
budget. Finally each service binary is started with its manifest's arguments (paths moved into a
temporary directory, the listen host made 127.0.0.1, the port kept) and its health service is
asked, on the manifest's port, for every name the probes use.

Usage: check_manifests.py <repository root> <build directory>
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jsonschema
import yaml

OVERLAYS = ["dev", "prod"]
PROBE_SERVICES = {"liveness", "readiness"}  # Registered by server_kit::Server.
KNOWN_CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"),
                      ("monitoring.coreos.com/v1", "PrometheusRule")}

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")


def render(root, overlay, directory=None):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        sys.exit("kubectl is not installed: it is needed to render the overlays (kubectl kustomize)")
    path = directory or os.path.join(root, "k8s", "overlays", overlay)
    result = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"overlay {overlay}", f"kubectl kustomize failed:\n{result.stderr}")
        return []
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def schema_path(root, obj):
    group_version = obj["apiVersion"]
    group, _, version = group_version.rpartition("/")
    name = obj["kind"].lower()
    if group:
        name += "-" + group.split(".")[0]
    name += "-" + version
    return os.path.join(root, "test", "k8s", "schemas", name + ".json")


def validate_schema(root, overlay, obj):
    where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
    if (obj["apiVersion"], obj["kind"]) in KNOWN_CUSTOM_KINDS:
        return
    path = schema_path(root, obj)
    if not os.path.exists(path):
        fail(where, f"no schema {os.path.basename(path)} in test/k8s/schemas")
        return
    with open(path) as f:
        schema = json.load(f)
    # The schemas are generated from OpenAPI and name no draft; draft 7 reads them as meant.
    validator = jsonschema.Draft7Validator(schema)
    for error in validator.iter_errors(obj):
        fail(where, f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}")


def flags(container):
    result = {}
    for arg in container.get("args", []):
        match = re.fullmatch(r"--([a-z_]+)(?:=(.*))?", arg)
        if match:
            result[match.group(1)] = match.group(2) if match.group(2) is not None else "true"
    return result


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def mount_for(container, path):
    """The volume mount that holds `path`, and the path inside the volume."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            return mount, path[len(prefix):]
    return None, None


def check_statefulset(overlay, objects, sts):
    name = sts["metadata"]["name"]
    where = f"{overlay}: StatefulSet/{name}"
    pod = sts["spec"]["template"]
    spec = pod["spec"]
    container = spec["containers"][0]
    args = flags(container)
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    grpc_port = port_of(args.get("listen", ":0"))
    metrics_port = port_of(args.get("metrics_listen", ":0"))
    if ports.get("grpc") != grpc_port:
        fail(where, f"containerPort grpc {ports.get('grpc')} != --listen port {grpc_port}")
    if ports.get("metrics") != metrics_port:
        fail(where, f"containerPort metrics {ports.get('metrics')} != --metrics_listen port "
                    f"{metrics_port}")
    if not args.get("listen", "").startswith("0.0.0.0:"):
        fail(where, "--listen must be on the pod address (0.0.0.0)")
    annotations = pod["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/port") != str(metrics_port):
        fail(where, "prometheus.io/port annotation does not match --metrics_listen")
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(probe_name, {}).get("grpc")
        if probe is None:
            fail(where, f"{probe_name} must be a gRPC probe")
            continue
        if probe.get("port") != grpc_port:
            fail(where, f"{probe_name} port {probe.get('port')} != --listen port {grpc_port}")
        if probe.get("service") not in PROBE_SERVICES:
            fail(where, f"{probe_name} service {probe.get('service')!r} is not registered "
                        f"({sorted(PROBE_SERVICES)})")
    if container["livenessProbe"]["grpc"].get("service") != "liveness":
        fail(where, "livenessProbe must not depend on downstream services (use 'liveness')")
    if container["readinessProbe"]["grpc"].get("service") == container["livenessProbe"]["grpc"].get(
            "service"):
        fail(where, "readiness and liveness must use distinct service names")
    # Shutdown budget: preStop pause plus the drain fit in the grace period.
    pause = 0
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if len(pre_stop) == 2 and pre_stop[0] == "sleep":
        pause = int(pre_stop[1])
    else:
        fail(where, "preStop must pause (sleep N)")
    grace = int(re.fullmatch(r"(\d+)s", args.get("shutdown_grace", "10s")).group(1))
    if pause + grace >= spec.get("terminationGracePeriodSeconds", 30):
        fail(where, f"preStop {pause}s + --shutdown_grace {grace}s must fit inside "
                    f"terminationGracePeriodSeconds {spec.get('terminationGracePeriodSeconds')}")
    # Files named by flags must be on mounts that provide them.
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    claim_names = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    mount, _ = mount_for(container, args.get("db", ""))
    if mount is None or mount["name"] not in claim_names:
        fail(where, f"--db {args.get('db')} is not on a volume claim")
    for flag, kind in (("resilience_policy", "configMap"), ("fault_admin_token_file", "secret")):
        if flag not in args:
            continue
        mount, key = mount_for(container, args[flag])
        volume = volumes.get(mount["name"]) if mount else None
        if volume is None or kind not in volume:
            fail(where, f"--{flag} {args[flag]} is not on a {kind} volume")
            continue
        source = volume[kind].get("name") or volume[kind].get("secretName")
        provider = next((o for o in objects if o["kind"].lower() == kind.lower()
                         and o["metadata"]["name"] == source), None)
        if provider is None or key not in provider.get("data", {}):
            fail(where, f"--{flag}: {kind} {source} has no key {key}")
    # The Service routes the named ports to the container.
    service = next((o for o in objects if o["kind"] == "Service"
                    and o["metadata"]["name"] == sts["spec"]["serviceName"]), None)
    if service is None:
        fail(where, f"no Service {sts['spec']['serviceName']}")
    else:
        for port in service["spec"]["ports"]:
            if port.get("targetPort") not in ports:
                fail(where, f"Service port {port['name']} targets unknown {port.get('targetPort')}")
    security = container.get("securityContext", {})
    if not (security.get("readOnlyRootFilesystem") and security.get("allowPrivilegeEscalation") is False
            and security.get("capabilities", {}).get("drop") == ["ALL"]):
        fail(where, "container securityContext must be read-only, unprivileged, drop ALL")
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        fail(where, "pod must run as non-root")
    return container, args, grpc_port


def run_binary(root, build, overlay, objects, sts, container, args, grpc_port, scratch):
    """Starts the binary with the manifest's flags and asks its health service."""
    name = sts["metadata"]["name"]
    where = f"{overlay}: {name} binary"
    binary = os.path.join(build, "src", name, name)
    work = tempfile.mkdtemp(dir=scratch)
    argv = [binary]
    for arg in container.get("args", []):
        flag, _, value = arg.partition("=")
        if value.startswith("/"):
            # Materialise mounted files from the rendered ConfigMap or Secret.
            mount, key = mount_for(container, value)
            local = os.path.join(work, value.lstrip("/"))
            os.makedirs(os.path.dirname(local), exist_ok=True)
            volume = next((v for v in sts["spec"]["template"]["spec"].get("volumes", [])
                           if mount and v["name"] == mount["name"]), None)
            if volume and ("configMap" in volume or "secret" in volume):
                kind = "configMap" if "configMap" in volume else "secret"
                source = volume[kind].get("name") or volume[kind].get("secretName")
                provider = next(o for o in objects if o["kind"].lower() == kind.lower()
                                and o["metadata"]["name"] == source)
                data = provider["data"][key]
                if kind == "secret":
                    import base64
                    data = base64.b64decode(data).decode()
                with open(local, "w") as f:
                    f.write(data)
            value = local
        elif flag in ("--listen", "--metrics_listen"):
            value = "127.0.0.1:" + value.rsplit(":", 1)[1]
        elif flag.endswith("_address"):
            value = "127.0.0.1:" + value.rsplit(":", 1)[1]
        argv.append(f"{flag}={value}" if value else flag)
    log_path = os.path.join(work, "log")
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = os.path.join(build, "src", "server_kit", "health_probe")
        for service in sorted(PROBE_SERVICES):
            deadline = time.time() + 15
            while True:
                result = subprocess.run([probe, f"--address=127.0.0.1:{grpc_port}",
                                         f"--service={service}", "--timeout=1s"],
                                        capture_output=True, text=True)
                if result.returncode == 0:
                    break
                if process.poll() is not None or time.time() > deadline:
                    with open(log_path) as f:
                        fail(where, f"health {service!r} on port {grpc_port} not SERVING: "
                                    f"{result.stdout.strip()} {result.stderr.strip()}\n{f.read()}")
                    return
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
            if code != 0:
                fail(where, f"exited with {code} after SIGTERM")
        except subprocess.TimeoutExpired:
            process.kill()
            fail(where, "did not stop within 30 s of SIGTERM")


def main():
    root, build = sys.argv[1], sys.argv[2]
    scratch = tempfile.mkdtemp(prefix="hospital-k8s-")
    try:
        for overlay in OVERLAYS:
            objects = render(root, overlay)
            for obj in objects:
                validate_schema(root, overlay, obj)
            kinds = {o["kind"] for o in objects}
            for required in ("StatefulSet", "Service", "ServiceAccount", "NetworkPolicy",
                             "PodDisruptionBudget", "ConfigMap", "ServiceMonitor"):
                if required not in kinds:
                    fail(overlay, f"renders no {required}")
            fault_admin = False
            for sts in (o for o in objects if o["kind"] == "StatefulSet"):
                container, args, grpc_port = check_statefulset(overlay, objects, sts)
                fault_admin |= "fault_admin" in args
                run_binary(root, build, overlay, objects, sts, container, args, grpc_port,
                           scratch)
            if fault_admin != (overlay == "dev"):
                fail(overlay, "the fault admin service must be on in dev and only there")
            print(f"overlay {overlay}: {len(objects)} objects checked")
        # The monitoring kustomization (PrometheusRule and the dashboard's ConfigMap).
        monitoring = render(root, "monitoring", os.path.join(root, "k8s", "monitoring"))
        for obj in monitoring:
            validate_schema(root, "monitoring", obj)
        dashboards = [o for o in monitoring if o["kind"] == "ConfigMap"]
        if not dashboards or "dashboard.json" not in dashboards[0].get("data", {}):
            fail("monitoring", "renders no ConfigMap with dashboard.json")
        else:
            json.loads(dashboards[0]["data"]["dashboard.json"])
        print(f"monitoring: {len(monitoring)} objects checked")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for failure in failures:
        print("FAIL", failure)
    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
