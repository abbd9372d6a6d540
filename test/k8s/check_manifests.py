#!/usr/bin/python3
"""Checks the Kubernetes manifests offline, against the code they deploy.

For every overlay: it must render with `kubectl kustomize`; every object must validate against
the strict Kubernetes 1.29 JSON schema of its kind (unknown fields rejected); and the manifests
must agree with the binaries: ports, probe service names, flags, mounted files, the shutdown
budget. A service on SQLite is a StatefulSet with its file on a volume claim; one on PostgreSQL
(prod-ha) a Deployment without volumes whose --db names its own CloudNativePG Cluster, with the
credentials and CA from the Secrets the operator makes, a Cluster that keeps every commit on two
nodes, and NetworkPolicies that let the service reach that database and no other. Finally each
service binary is started with its manifest's arguments (paths moved into a temporary directory,
the listen host made 127.0.0.1, the port kept; a PostgreSQL --db pointed at a local PostgreSQL 15
server with the manifest's database and user) and its health service is asked, on the
manifest's port, for every name the probes use.

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

OVERLAYS = ["dev", "prod", "dev-async", "prod-async", "prod-cert-manager", "prod-ha"]
NATS_SERVER = "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else "nats-server"
PROBE_SERVICES = {"liveness", "readiness"}  # Registered by server_kit::Server.
# Secrets the overlays mount but do not render: made in the cluster by cert-manager
# (components/cert-manager) or by operators (components/tls says which keys each needs).
EXTERNAL_SECRETS = {
    "patients-tls": ("tls.crt", "tls.key", "ca.crt"),
    "morgue-tls": ("tls.crt", "tls.key", "ca.crt"),
    "appointments-tls": ("tls.crt", "tls.key", "ca.crt"),
    "operator-ca": ("ca.crt",),
    "nats-tls": ("tls.crt", "tls.key", "ca.crt"),
}
# CloudNativePG makes, for each Cluster <name>: <name>-app (the owner's credentials, type
# kubernetes.io/basic-auth) and <name>-ca (the CA of the servers' certificates).
for _service in ("patients", "morgue", "appointments"):
    EXTERNAL_SECRETS[f"{_service}-db-app"] = ("username", "password", "host", "port", "dbname",
                                              "uri", "pgpass")
    EXTERNAL_SECRETS[f"{_service}-db-ca"] = ("ca.crt",)
POSTGRES_BINARIES = "/usr/lib/postgresql/15/bin"
# Flags that name files, and the kind of volume that must provide them.
FILE_FLAGS = {"resilience_policy": "configMap", "admin_token_file": "secret",
              "authz_policy": "configMap", "tls_cert": "secret", "tls_key": "secret",
              "tls_ca": "secret", "admin_tls_ca": "secret", "nats_tls_ca": "secret",
              "nats_tls_cert": "secret", "nats_tls_key": "secret",
              "db_password_file": "secret"}

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
    if "." in group and not group.endswith(".k8s.io"):
        # A custom resource: test/k8s/schemas/crds/<group>/<kind>_<version>.json.
        return os.path.join(root, "test", "k8s", "schemas", "crds", group,
                            f"{obj['kind'].lower()}_{version}.json")
    name = obj["kind"].lower()
    if group:
        name += "-" + group.split(".")[0]
    name += "-" + version
    return os.path.join(root, "test", "k8s", "schemas", name + ".json")


def validate_schema(root, overlay, obj):
    where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
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
    """The volume mount that holds `path` (the deepest, as mounts nest), and the path inside
    the volume."""
    best, rest = None, None
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix) and (best is None or len(prefix) > len(best["mountPath"]) + 1):
            best, rest = mount, path[len(prefix):]
    return best, rest


def check_workload(overlay, objects, sts):
    """A service's StatefulSet (SQLite) or Deployment (PostgreSQL)."""
    name = sts["metadata"]["name"]
    where = f"{overlay}: {sts['kind']}/{name}"
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
    # With TLS the probes go to the plaintext health-only port: kubelet cannot present a
    # certificate.
    tls = "tls_cert" in args
    probe_port = grpc_port
    if "health_listen" in args:
        probe_port = port_of(args["health_listen"])
        if ports.get("health") != probe_port or not args["health_listen"].startswith("0.0.0.0:"):
            fail(where, "--health_listen must be on the pod address, as containerPort health")
    elif tls:
        fail(where, "with TLS the probes need --health_listen (kubelet speaks plaintext)")
    if tls != ("tls_ca" in args):
        fail(where, "--tls_cert without --tls_ca: the services use mutual TLS")
    if "authz_policy" in args and "tls_ca" not in args:
        fail(where, "--authz_policy without mutual TLS")
    if "admin_listen" in args and ports.get("admin") != port_of(args["admin_listen"]):
        fail(where, f"containerPort admin {ports.get('admin')} != --admin_listen")
    annotations = pod["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/port") != str(metrics_port):
        fail(where, "prometheus.io/port annotation does not match --metrics_listen")
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(probe_name, {}).get("grpc")
        if probe is None:
            fail(where, f"{probe_name} must be a gRPC probe")
            continue
        if probe.get("port") != probe_port:
            fail(where, f"{probe_name} port {probe.get('port')} != the health port {probe_port}")
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
    if args.get("db", "").startswith("postgresql://"):
        check_database(overlay, objects, sts, container, args)
    else:
        mount, _ = mount_for(container, args.get("db", ""))
        if sts["kind"] != "StatefulSet" or mount is None or mount["name"] not in claim_names:
            fail(where, f"--db {args.get('db')} is not on a StatefulSet's volume claim")
    for flag, kind in FILE_FLAGS.items():
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
        if provider is None and kind == "secret" and source in EXTERNAL_SECRETS:
            if key not in EXTERNAL_SECRETS[source]:
                fail(where, f"--{flag}: Secret {source} is made outside the manifests with keys "
                            f"{EXTERNAL_SECRETS[source]}, not {key}")
            check_certificate_for(overlay, objects, sts, source)
            continue
        if provider is None or key not in provider.get("data", {}):
            fail(where, f"--{flag}: {kind} {source} has no key {key}")
    # The Service routes the named ports to the container.
    service_name = sts["spec"].get("serviceName", name)
    service = next((o for o in objects if o["kind"] == "Service"
                    and o["metadata"]["name"] == service_name), None)
    if service is None:
        fail(where, f"no Service {service_name}")
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


def selects(selector, labels):
    """Whether a label selector (matchLabels, matchExpressions with In and Exists) matches."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator not in ("In", "Exists"):
            fail("selector", f"operator {operator} is not understood by this check")
            return False
    return True


def check_database(overlay, objects, workload, container, args):
    """A service on PostgreSQL: its --db names the -rw Service of a CloudNativePG Cluster that
    bootstraps the database and owner the URI names; TLS verified with that Cluster's CA; the
    password from the Cluster's app Secret; no volume claims; a Cluster that survives a node;
    scraped by a PodMonitor; and NetworkPolicies letting this service reach that Cluster only."""
    name = workload["metadata"]["name"]
    where = f"{overlay}: {workload['kind']}/{name}"
    match = re.fullmatch(r"postgresql://([a-z_]+)@([a-z0-9-]+):(\d+)/([a-z_]+)\?(.*)", args["db"])
    if match is None:
        fail(where, f"--db {args['db']} is not postgresql://user@host:port/database?options")
        return
    user, host, port, database, query = match.groups()
    options = dict(item.partition("=")[::2] for item in query.split("&"))
    if "password" in options:
        fail(where, "--db must not carry a password")
    cluster_name = host[:-len("-rw")] if host.endswith("-rw") else None
    cluster = next((o for o in objects if o["kind"] == "Cluster"
                    and o["metadata"]["name"] == cluster_name), None)
    if cluster is None:
        fail(where, f"--db host {host} is not the -rw Service of a rendered Cluster")
        return
    if port != "5432":
        fail(where, f"--db port {port}: CloudNativePG serves 5432")
    initdb = cluster["spec"].get("bootstrap", {}).get("initdb", {})
    if (initdb.get("database"), initdb.get("owner")) != (database, user):
        fail(where, f"--db names database {database} and user {user}; Cluster {cluster_name} "
                    f"makes {initdb.get('database')} owned by {initdb.get('owner')}")
    if cluster_name != f"{name}-db":
        fail(where, f"uses Cluster {cluster_name}: each service owns its own ({name}-db)")
    if workload["kind"] != "Deployment" or workload["spec"].get("volumeClaimTemplates"):
        fail(where, "on PostgreSQL a service is a Deployment without volume claims")
    if options.get("sslmode") != "verify-full":
        fail(where, "--db must verify the server (sslmode=verify-full)")
    for flag, path, secret, key in (
            ("--db sslrootcert", options.get("sslrootcert", ""), f"{cluster_name}-ca", "ca.crt"),
            ("--db_password_file", args.get("db_password_file", ""), f"{cluster_name}-app",
             "password")):
        mount, item = mount_for(container, path)
        volume = next((v for v in workload["spec"]["template"]["spec"].get("volumes", [])
                       if mount and v["name"] == mount["name"]), None)
        items = {i["path"]: i["key"] for i in (volume or {}).get("secret", {}).get("items", [])}
        if (volume is None or volume.get("secret", {}).get("secretName") != secret
                or items.get(item, item) != key):
            fail(where, f"{flag} {path} is not key {key} of Secret {secret}")
    spec = cluster["spec"]
    synchronous = spec.get("postgresql", {}).get("synchronous", {})
    if (spec.get("instances", 1) < 3 or synchronous.get("number", 0) < 1
            or synchronous.get("dataDurability") != "required"):
        fail(where, f"Cluster {cluster_name}: 3 instances, every commit on a standby too "
                    "(synchronous number >= 1, dataDurability required)")
    affinity = spec.get("affinity", {})
    if affinity.get("podAntiAffinityType") != "required" or affinity.get(
            "topologyKey") != "kubernetes.io/hostname":
        fail(where, f"Cluster {cluster_name}: its instances must be on different nodes")
    instance_labels = {"cnpg.io/cluster": cluster_name, "cnpg.io/podRole": "instance"}
    if not any(o["kind"] == "PodMonitor" and selects(o["spec"]["selector"], instance_labels)
               for o in objects):
        fail(where, f"no PodMonitor scrapes Cluster {cluster_name}")
    # The databases this service's pods may open connections to.
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    reachable = set()
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], pod_labels):
            continue
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", [{}]):
                selector = peer.get("podSelector")
                clusters = [c["metadata"]["name"] for c in objects if c["kind"] == "Cluster"
                            and (selector is None or selects(selector, {"cnpg.io/cluster":
                                                                         c["metadata"]["name"]}))]
                if clusters and any(p.get("port") == 5432 for p in rule.get("ports", [{"port": 5432}])):
                    reachable.update(clusters)
    if reachable != {cluster_name}:
        fail(where, f"NetworkPolicies let it reach databases {sorted(reachable)}, not only "
                    f"{cluster_name}")
    admitted = any(
        o["kind"] == "NetworkPolicy" and selects(o["spec"]["podSelector"], instance_labels)
        and any(any("podSelector" in peer and selects(peer["podSelector"], pod_labels)
                    for peer in rule.get("from", []))
                and any(p.get("port") == 5432 for p in rule.get("ports", []))
                for rule in o["spec"].get("ingress", []))
        for o in objects)
    if not admitted:
        fail(where, f"no NetworkPolicy admits it to Cluster {cluster_name} on 5432")


def check_certificate_for(overlay, objects, sts, secret):
    """If the overlay renders cert-manager Certificates, one of them must make `secret`, and a
    service's certificate must carry its identity and the name the other services dial."""
    certificates = [o for o in objects if o["kind"] == "Certificate"]
    if not certificates:
        return
    where = f"{overlay}: Secret {secret}"
    certificate = next((c for c in certificates if c["spec"]["secretName"] == secret), None)
    if certificate is None:
        fail(where, "no Certificate makes it")
        return
    name = sts["metadata"]["name"]
    if secret == f"{name}-tls":
        spec = certificate["spec"]
        if f"spiffe://hospital/{name}" not in spec.get("uris", []):
            fail(where, f"the certificate does not name spiffe://hospital/{name}")
        if name not in spec.get("dnsNames", []):
            fail(where, f"the certificate does not carry the DNS name {name}")
        if not {"server auth", "client auth"} <= set(spec.get("usages", [])):
            fail(where, "the certificate must serve as server and as client")


class LocalPostgres:
    """A PostgreSQL 15 server of the check's own, started on first use (a free loopback port,
    its data and socket in the scratch directory, trust authentication), to start the services
    of a PostgreSQL overlay on. PostgreSQL refuses to run as root: as root it runs as the
    `postgres` user Debian's package makes."""

    def __init__(self, scratch):
        self.scratch = scratch
        self.process = None
        self.port = None
        self.databases = set()

    def _as_server_user(self, argv):
        return (["runuser", "-u", "postgres", "--"] + argv) if os.geteuid() == 0 else argv

    def start(self):
        directory = tempfile.mkdtemp(dir=self.scratch, prefix="postgres-")
        os.chmod(self.scratch, 0o755)
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        data = os.path.join(directory, "data")
        subprocess.run(self._as_server_user([
            os.path.join(POSTGRES_BINARIES, "initdb"), "-D", data, "-U", "postgres",
            "--auth=trust", "--no-sync"]), check=True, capture_output=True)
        import socket
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.socket_directory = directory
        self.process = subprocess.Popen(self._as_server_user([
            os.path.join(POSTGRES_BINARIES, "postgres"), "-D", data, "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={directory}"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while subprocess.run([os.path.join(POSTGRES_BINARIES, "pg_isready"), "-q", "-h",
                              directory, "-p", str(self.port)]).returncode != 0:
            if self.process.poll() is not None or time.time() > deadline:
                sys.exit("the check's PostgreSQL server did not start")
            time.sleep(0.2)

    def uri(self, user, database):
        """A URI for `database` owned by `user`, both made on first use."""
        if self.process is None:
            self.start()
        if database not in self.databases:
            for sql in (f'CREATE ROLE "{user}" LOGIN', f'CREATE DATABASE "{database}" OWNER "{user}"'):
                subprocess.run(["psql", "-q", "-h", self.socket_directory, "-p", str(self.port),
                                "-U", "postgres", "-d", "postgres", "-c", sql], check=True,
                               capture_output=True)
            self.databases.add(database)
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}?connect_timeout=5"

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def external_secret_file(root, scratch, secret, key):
    """A stand-in for `key` of an external Secret, made once with scripts/make-certs.sh (a
    database password: any text, the check's server trusts its clients)."""
    if secret.endswith(("-db-app", "-db-ca")):
        path = os.path.join(scratch, f"{secret}-{key}")
        with open(path, "w") as f:
            f.write("stand-in")
        return path
    certs = os.path.join(scratch, "certs")
    operators = os.path.join(scratch, "operators")
    if not os.path.exists(os.path.join(certs, "appointments.crt")):
        script = os.path.join(root, "scripts", "make-certs.sh")
        subprocess.run(["bash", script, certs, "patients", "morgue", "appointments"], check=True)
        subprocess.run(["bash", script, operators, "alice"], check=True)
    if secret == "operator-ca":
        return os.path.join(operators, "ca.crt")
    name = secret[:-len("-tls")]
    return os.path.join(certs, {"tls.crt": f"{name}.crt", "tls.key": f"{name}.key",
                                "ca.crt": "ca.crt"}[key])


def run_binary(root, build, overlay, objects, sts, container, args, grpc_port, scratch,
               postgres):
    """Starts the binary with the manifest's flags and asks its health service."""
    name = sts["metadata"]["name"]
    where = f"{overlay}: {name} binary"
    binary = os.path.join(build, "bin", name)
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
            if volume and "secret" in volume and volume["secret"]["secretName"] in EXTERNAL_SECRETS:
                # Made in the cluster: stand in with certificates from scripts/make-certs.sh.
                shutil.copy(external_secret_file(root, scratch, volume["secret"]["secretName"],
                                                 key), local)
                value = local
                argv.append(f"{flag}={value}")
                continue
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
        elif flag in ("--listen", "--metrics_listen", "--admin_listen", "--health_listen"):
            value = "127.0.0.1:" + value.rsplit(":", 1)[1]
        elif flag.endswith("_address"):
            value = "127.0.0.1:" + value.rsplit(":", 1)[1]
        elif flag == "--db" and value.startswith("postgresql://"):
            # The manifest's database and user on the check's own server (check_database has
            # checked the URI itself).
            user, database = re.fullmatch(r"postgresql://([a-z_]+)@[^/]+/([a-z_]+)\?.*",
                                          value).groups()
            value = postgres.uri(user, database)
        argv.append(f"{flag}={value}" if value else flag)
    # What kubelet's probes ask: the health port when there is one.
    probe_port = port_of(args["health_listen"]) if "health_listen" in args else grpc_port
    log_path = os.path.join(work, "log")
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = os.path.join(build, "bin", "health_probe")
        for service in sorted(PROBE_SERVICES):
            deadline = time.time() + 15
            while True:
                result = subprocess.run([probe, f"--address=127.0.0.1:{probe_port}",
                                         f"--service={service}", "--timeout=1s"],
                                        capture_output=True, text=True)
                if result.returncode == 0:
                    break
                if process.poll() is not None or time.time() > deadline:
                    with open(log_path) as f:
                        fail(where, f"health {service!r} on port {probe_port} not SERVING: "
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


def config_value(config, key):
    match = re.search(rf"^\s*{key}:\s*(\S+)", config, re.MULTILINE)
    return match.group(1) if match else None


def check_nats(overlay, objects, sts, scratch):
    """The NATS StatefulSet: its config parses (nats-server -t), agrees with the pod's ports,
    probes and volumes, and a single server started from it answers /healthz."""
    where = f"{overlay}: StatefulSet/nats"
    spec = sts["spec"]["template"]["spec"]
    container = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    args = container.get("args", [])
    if args[:1] != ["--config"] or len(args) < 2:
        fail(where, "args must start with --config <file>")
        return
    # Beyond the config: TLS for clients, its files on the nats-tls Secret.
    tls_args = dict(a.partition("=")[::2] for a in args[2:])
    if tls_args and set(tls_args) != {"--tlsverify", "--tlscert", "--tlskey", "--tlscacert"}:
        fail(where, f"unexpected arguments {sorted(tls_args)}: only the four TLS flags")
    for flag in ("--tlscert", "--tlskey", "--tlscacert"):
        if flag in tls_args:
            tls_mount, _ = mount_for(container, tls_args[flag])
            tls_volume = next((v for v in spec.get("volumes", [])
                               if tls_mount and v["name"] == tls_mount["name"]), None)
            if tls_volume is None or tls_volume.get("secret", {}).get("secretName") != "nats-tls":
                fail(where, f"{flag} is not on the nats-tls Secret")
    mount, key = mount_for(container, args[1])
    volume = next((v for v in spec.get("volumes", []) if mount and v["name"] == mount["name"]),
                  None)
    if volume is None or "configMap" not in volume:
        fail(where, f"{args[1]} is not on a ConfigMap volume")
        return
    config_map = next(o for o in objects if o["kind"] == "ConfigMap"
                      and o["metadata"]["name"] == volume["configMap"]["name"])
    config = config_map["data"].get(key)
    if config is None:
        fail(where, f"ConfigMap {config_map['metadata']['name']} has no {key}")
        return
    work = tempfile.mkdtemp(dir=scratch)
    path = os.path.join(work, "nats.conf")
    with open(path, "w") as f:
        f.write(config)
    env = dict(os.environ, POD_NAME="nats-0")
    result = subprocess.run([NATS_SERVER, "-c", path, "-t"], capture_output=True, text=True,
                            env=env)
    if result.returncode != 0:
        fail(where, f"nats-server -t rejects the config: {result.stderr.strip()}")
        return
    for name, key_name in (("client", "listen"), ("monitor", "http")):
        value = config_value(config, key_name)
        if value is None or port_of(value) != ports.get(name):
            fail(where, f"containerPort {name} {ports.get(name)} != config {key_name} {value}")
    store = re.search(r"store_dir:\s*(\S+)", config)
    store_mount, _ = mount_for(container, store.group(1) if store else "")
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    if store_mount is None or store_mount["name"] not in claims:
        fail(where, "the JetStream store_dir is not on a volume claim")
    replicas = sts["spec"]["replicas"]
    routes = re.findall(r"nats://(nats-\d+)\.([a-z-]+):(\d+)", config)
    if replicas == 1 and routes:
        fail(where, "one replica with cluster routes")
    if replicas > 1:
        if sorted(r[0] for r in routes) != [f"nats-{i}" for i in range(replicas)]:
            fail(where, f"cluster routes {routes} do not name the {replicas} pods")
        for _, service, port in routes:
            if service != sts["spec"]["serviceName"] or int(port) != ports.get("cluster"):
                fail(where, f"route via {service}:{port}: not the StatefulSet's service and "
                            "cluster port")
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(probe_name, {}).get("httpGet")
        if probe is None or probe.get("port") not in ("monitor", ports.get("monitor")):
            fail(where, f"{probe_name} must be an HTTP probe on the monitor port")
    if not container.get("securityContext", {}).get("readOnlyRootFilesystem"):
        fail(where, "container must have a read-only root filesystem")
    if replicas > 1:
        return
    # One server: run it from the config, on loopback, with its store in the scratch directory.
    local = re.sub(r"(listen|http):\s*0\.0\.0\.0:", r"\1: 127.0.0.1:", config)
    local = re.sub(r"store_dir:\s*\S+", f"store_dir: {work}/store", local)
    local = re.sub(r"pid_file:\s*\S+", f"pid_file: {work}/nats.pid", local)
    with open(path, "w") as f:
        f.write(local)
    log_path = os.path.join(work, "log")
    with open(log_path, "w") as log:
        process = subprocess.Popen([NATS_SERVER, "-c", path], stdout=log,
                                   stderr=subprocess.STDOUT, env=env)
    try:
        import urllib.request
        url = f"http://127.0.0.1:{ports.get('monitor')}/healthz?js-enabled-only=true"
        deadline = time.time() + 15
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                with open(log_path) as f:
                    fail(where, f"{url} did not answer 200:\n{f.read()}")
                return
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            fail(where, "nats-server did not stop within 30 s of SIGTERM")


def check_async_flags(overlay, objects, sts, args):
    """The services' messaging flags agree with the overlay and with the NATS objects."""
    where = f"{overlay}: StatefulSet/{sts['metadata']['name']}"
    asynchronous = overlay.endswith("-async")
    if args.get("death_workflow", "sync") != ("async" if asynchronous else "sync"):
        fail(where, f"--death_workflow must be {'async' if asynchronous else 'sync'} here")
    if not asynchronous:
        return
    nats = next((o for o in objects if o["kind"] == "StatefulSet"
                 and o["metadata"]["name"] == "nats"), None)
    if nats is None:
        fail(where, "async, but no nats StatefulSet")
        return
    client_port = next(p["containerPort"] for p in nats["spec"]["template"]["spec"]["containers"][0]
                       ["ports"] if p["name"] == "client")
    for url in args.get("nats_url", "").split(","):
        match = re.fullmatch(r"nats://([a-z0-9.-]+):(\d+)", url)
        if match is None:
            fail(where, f"--nats_url {url!r} is not nats://host:port")
            continue
        host, port = match.group(1), int(match.group(2))
        pod = re.fullmatch(r"nats-(\d+)\.([a-z-]+)", host)
        if pod:
            if (int(pod.group(1)) >= nats["spec"]["replicas"]
                    or pod.group(2) != nats["spec"]["serviceName"] or port != client_port):
                fail(where, f"--nats_url {url}: no such NATS pod and client port")
        else:
            service = next((o for o in objects if o["kind"] == "Service"
                            and o["metadata"]["name"] == host), None)
            if service is None or not any(p["port"] == port and p.get("targetPort") == "client"
                                          for p in service["spec"]["ports"]):
                fail(where, f"--nats_url {url}: no Service {host} routing {port} to the client "
                            "port")
    replicas = int(args.get("nats_stream_replicas", "1"))
    if replicas > nats["spec"]["replicas"] or (nats["spec"]["replicas"] >= 3 and replicas < 3):
        fail(where, f"--nats_stream_replicas {replicas} with {nats['spec']['replicas']} NATS "
                    "servers")


def main():
    root, build = sys.argv[1], sys.argv[2]
    scratch = tempfile.mkdtemp(prefix="hospital-k8s-")
    postgres = LocalPostgres(scratch)
    try:
        for overlay in OVERLAYS:
            objects = render(root, overlay)
            for obj in objects:
                validate_schema(root, overlay, obj)
            kinds = {o["kind"] for o in objects}
            for required in ("Service", "ServiceAccount", "NetworkPolicy",
                             "PodDisruptionBudget", "ConfigMap", "ServiceMonitor"):
                if required not in kinds:
                    fail(overlay, f"renders no {required}")
            services = [o for o in objects if o["kind"] in ("StatefulSet", "Deployment")
                        and o["metadata"]["name"] in ("patients", "morgue", "appointments")]
            if len(services) != 3:
                fail(overlay, f"renders {len(services)} of the three services")
            fault_admin = False
            for sts in (o for o in objects if o["kind"] in ("StatefulSet", "Deployment")):
                if sts["metadata"]["name"] == "nats":
                    check_nats(overlay, objects, sts, scratch)
                    continue
                container, args, grpc_port = check_workload(overlay, objects, sts)
                check_async_flags(overlay, objects, sts, args)
                fault_admin |= "fault_admin" in args
                if overlay.startswith("prod") and "tls_ca" not in args:
                    fail(overlay, f"{sts['metadata']['name']}: production runs mutual TLS")
                if overlay == "prod-async" and "nats_tls_ca" not in args:
                    fail(overlay, f"{sts['metadata']['name']}: production reaches NATS over TLS")
                run_binary(root, build, overlay, objects, sts, container, args, grpc_port,
                           scratch, postgres)
            if fault_admin != overlay.startswith("dev"):
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
        postgres.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    for failure in failures:
        print("FAIL", failure)
    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
