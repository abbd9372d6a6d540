#!/usr/bin/env python3
"""Checks the container image as the cluster would run it (scripts/image-test.sh calls this).

What the image holds: its size, no compiler, headers or source tree, every library each binary
loads (ldd inside the image), the OCI labels. Then, for an overlay's rendered manifests (kubectl
kustomize, not a copy), each workload's container started from the image with the manifest's
command, arguments, user, read-only root filesystem, its ConfigMaps and Secrets as files, an
emptyDir as tmpfs and a named volume per volume claim: every probe's port and service name
answers SERVING (gRPC probes through health_probe, HTTP ones over HTTP); a patient is created,
booked and their death recorded through the containers, and its effects appear in the morgue and
the appointments service; each container runs its preStop hook, then gets SIGTERM and must exit
0 within the manifest's grace period; restarted on the same volumes, the data is still there.

The containers share the host's network (podman run --network host: the machine's only working
mode), so the manifests' service names resolve to 127.0.0.1 and their fixed ports must be free.
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import yaml

# podman on these machines: runc (crun refuses the hybrid cgroup layout), limits it can set.
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
PREFIX = "hospital-image-test-"

failures = []


def fail(message):
    print(f"FAIL: {message}", flush=True)
    failures.append(message)


def run(command, check=True, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {result.returncode}\n{result.stderr}")
    return result


def in_image(image, script):
    """Runs a shell script in a throwaway container of the image; returns its stdout."""
    return run(PODMAN + ["run", "--rm", "--network", "host", *LIMITS, "--entrypoint",
                         "/bin/sh", image, "-c", script]).stdout


def check_contents(image):
    size = int(run(PODMAN + ["image", "inspect", "--format", "{{.Size}}", image]).stdout)
    print(f"image {image}: {size / 1048576:.1f} MiB", flush=True)
    found = in_image(image, (
        "for path in /usr/bin/gcc /usr/bin/g++ /usr/bin/cc /usr/bin/c++ /usr/bin/cmake "
        "/usr/bin/ninja /usr/bin/protoc /src /out; do test -e $path && echo $path; done; "
        "find /usr/include -type f 2>/dev/null | head -n 3"))
    if found.strip():
        fail(f"the runtime image holds build tools, headers or sources: {found.split()}")
    binaries = "/usr/local/bin/patients /usr/local/bin/morgue /usr/local/bin/appointments " \
               "/usr/sbin/nats-server"
    ldd = in_image(image, f"for b in {binaries}; do echo \"== $b\"; ldd $b 2>&1; done")
    missing = [line.strip() for line in ldd.splitlines() if "not found" in line]
    if missing:
        fail(f"libraries the binaries load are missing from the image: {missing}")
    print(f"ldd: every library found for {binaries}", flush=True)
    labels = json.loads(run(PODMAN + ["image", "inspect", "--format", "{{json .Labels}}",
                                      image]).stdout) or {}
    for label in ("org.opencontainers.image.version", "org.opencontainers.image.licenses",
                  "org.opencontainers.image.revision"):
        if not labels.get(label):
            fail(f"label {label} missing")
    if labels.get("org.opencontainers.image.licenses") != "Apache-2.0":
        fail(f"licence label {labels.get('org.opencontainers.image.licenses')!r}, not the "
             "repository's (Apache-2.0, LICENSE)")
    # The project's URL, or no source label at all: never a path on the machine that built it.
    source = labels.get("org.opencontainers.image.source")
    if source is not None and not source.startswith("https://"):
        fail(f"source label {source!r} is not the project's URL")
    print(f"labels: { {k: v for k, v in labels.items() if k.startswith('org.opencontainers')} }",
          flush=True)


def render(root, overlay):
    output = run(["kubectl", "kustomize", os.path.join(root, overlay)]).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


class Workload:
    """One StatefulSet's single container, run from the image as its manifest says."""

    def __init__(self, statefulset, objects, image, files_dir):
        self.name = statefulset["metadata"]["name"]
        pod = statefulset["spec"]["template"]["spec"]
        (self.container,) = pod["containers"]
        self.grace = pod.get("terminationGracePeriodSeconds", 30)
        self.image = image
        self.container_name = PREFIX + self.name
        security = dict(pod.get("securityContext", {}))
        security.update(self.container.get("securityContext", {}))
        self.user = f"{security.get('runAsUser')}:{security.get('runAsGroup', security.get('runAsUser'))}"
        if security.get("runAsUser") != 10001:
            fail(f"{self.name}: the manifest runs it as user {security.get('runAsUser')}, not 10001")
        if not security.get("readOnlyRootFilesystem"):
            fail(f"{self.name}: the manifest does not make its root filesystem read-only")
        self.ports = {p["name"]: p["containerPort"] for p in self.container.get("ports", [])}
        self.mounts = []
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in statefulset["spec"].get("volumeClaimTemplates", [])}
        for mount in self.container.get("volumeMounts", []):
            target = mount["mountPath"]
            if mount["name"] in claims:
                self.mounts += ["-v", f"{PREFIX}{self.name}-{mount['name']}:{target}"]
                continue
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                self.mounts += ["--tmpfs", f"{target}:rw,size=64m,mode=1777"]
            elif "configMap" in volume or "secret" in volume:
                directory = os.path.join(files_dir, self.name, mount["name"])
                os.makedirs(directory, exist_ok=True)
                self.write_files(volume, objects, directory)
                self.mounts += ["-v", f"{directory}:{target}:ro"]
            else:
                fail(f"{self.name}: volume {mount['name']} of a kind this test does not know")

    @staticmethod
    def write_files(volume, objects, directory):
        if "configMap" in volume:
            (config,) = [o for o in objects if o["kind"] == "ConfigMap"
                         and o["metadata"]["name"] == volume["configMap"]["name"]]
            data = {key: value.encode() for key, value in config.get("data", {}).items()}
        else:
            (secret,) = [o for o in objects if o["kind"] == "Secret"
                         and o["metadata"]["name"] == volume["secret"]["secretName"]]
            data = {key: base64.b64decode(value) for key, value in secret.get("data", {}).items()}
        for key, value in data.items():
            path = os.path.join(directory, key)
            with open(path, "wb") as f:
                f.write(value)
            # Readable by the container's user (kubelet sets the owner through fsGroup).
            os.chmod(path, 0o644)
        os.chmod(directory, 0o755)

    def start(self):
        run(PODMAN + ["rm", "-f", self.container_name], check=False)
        env = []
        for variable in self.container.get("env", []):
            value = variable.get("value", self.container_name if "valueFrom" in variable else "")
            env += ["-e", f"{variable['name']}={value}"]
        command = self.container.get("command", [])
        run(PODMAN + ["run", "-d", "--name", self.container_name, "--network", "host", *LIMITS,
                      "--read-only", "--user", self.user, "--cap-drop", "ALL",
                      "--security-opt", "no-new-privileges",
                      "--add-host", "patients:127.0.0.1", "--add-host", "morgue:127.0.0.1",
                      "--add-host", "appointments:127.0.0.1", "--add-host", "nats:127.0.0.1",
                      *self.mounts, *env, "--entrypoint", command[0], self.image,
                      *command[1:], *self.container.get("args", [])])

    def probes(self):
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in self.container:
                yield kind, self.container[kind]

    def port(self, value):
        return self.ports[value] if isinstance(value, str) else value

    def probe_once(self, probe, health_probe):
        if "grpc" in probe:
            grpc = probe["grpc"]
            return run([health_probe, f"--address=127.0.0.1:{grpc['port']}",
                        f"--service={grpc.get('service', '')}", "--timeout=1s"],
                       check=False).returncode == 0
        if "httpGet" in probe:
            http = probe["httpGet"]
            try:
                url = f"http://127.0.0.1:{self.port(http['port'])}{http.get('path', '/')}"
                with urllib.request.urlopen(url, timeout=1) as response:
                    return 200 <= response.status < 400
            except OSError:
                return False
        fail(f"{self.name}: a probe of a kind this test does not know: {probe}")
        return False

    def await_probes(self, health_probe, timeout=60):
        """Every probe of the manifest succeeds (the startup probe first, within its budget)."""
        deadline = time.monotonic() + timeout
        for kind, probe in self.probes():
            while not self.probe_once(probe, health_probe):
                if time.monotonic() > deadline:
                    fail(f"{self.name}: {kind} {probe} did not succeed within {timeout} s; log:\n"
                         + self.logs())
                    return False
                time.sleep(0.5)
        return True

    def logs(self):
        result = run(PODMAN + ["logs", "--tail", "20", self.container_name], check=False)
        return result.stdout + result.stderr

    def stop(self):
        """As the kubelet: the preStop hook, then SIGTERM; the exit code and the time taken."""
        began = time.monotonic()
        hook = self.container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
        if hook:
            run(PODMAN + ["exec", self.container_name, *hook["command"]], check=False)
        left = max(1, int(self.grace - (time.monotonic() - began)))
        run(PODMAN + ["stop", "--time", str(left), self.container_name], check=False)
        elapsed = time.monotonic() - began
        code = int(run(PODMAN + ["inspect", "--format", "{{.State.ExitCode}}",
                                 self.container_name]).stdout)
        print(f"{self.name}: preStop and SIGTERM: exit {code} after {elapsed:.1f} s "
              f"(grace {self.grace} s)", flush=True)
        if code != 0:
            fail(f"{self.name}: exit code {code} on SIGTERM; log:\n{self.logs()}")
        if elapsed >= self.grace:
            fail(f"{self.name}: took {elapsed:.1f} s to stop, grace period {self.grace} s")

    def restart(self):
        run(PODMAN + ["start", self.container_name])

    def remove(self):
        run(PODMAN + ["rm", "-f", self.container_name], check=False)
        for mount in self.mounts:
            if mount.startswith(PREFIX):
                run(PODMAN + ["volume", "rm", "-f", mount.split(":")[0]], check=False)


def call(hospital_call, port, method, body):
    result = run([hospital_call, f"--address=127.0.0.1:{port}", f"--method={method}",
                  f"--body={json.dumps(body)}"], check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{method} {body}: exit {result.returncode}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def eventually(check, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except RuntimeError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def exercise(overlay, hospital_call, patient):
    """A patient with an appointment dies; both effects appear (at once, or for async soon)."""
    call(hospital_call, 50051, "hospital.patients.v1.PatientsService/CreatePatient",
         {"patientId": patient, "givenName": "Image", "familyName": "Test",
          "dateOfBirth": "1950-01-01"})
    tomorrow = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    call(hospital_call, 50053, "hospital.appointments.v1.AppointmentsService/ScheduleAppointment",
         {"patientId": patient, "scheduledTime": tomorrow, "clinician": "Dr. Image"})
    recorded = call(hospital_call, 50051, "hospital.patients.v1.PatientsService/RecordDeath",
                    {"patientId": patient, "cause": "image test",
                     "timeOfDeath": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    print(f"{overlay}: RecordDeath answered {recorded.get('downstreamState')}", flush=True)
    admitted = eventually(lambda: call(
        hospital_call, 50052, "hospital.morgue.v1.MorgueService/GetAdmission",
        {"patientId": patient}).get("patientId") == patient)
    def all_cancelled():
        listed = call(hospital_call, 50053,
                      "hospital.appointments.v1.AppointmentsService/ListAppointments",
                      {"patientId": patient}).get("appointments", [])
        return bool(listed) and all(a.get("status") == "CANCELLED" for a in listed)

    cancelled = eventually(all_cancelled)
    if not admitted:
        fail(f"{overlay}: {patient} was not admitted by the morgue")
    if not cancelled:
        fail(f"{overlay}: {patient}'s appointment was not cancelled")
    if admitted and cancelled:
        print(f"{overlay}: {patient} admitted by the morgue, appointment cancelled", flush=True)


def check_overlay(root, overlay, image, health_probe, hospital_call):
    objects = render(root, overlay)
    statefulsets = [o for o in objects if o["kind"] == "StatefulSet"]
    # The broker before the services that connect to it, the callees before their caller.
    order = {"nats": 0, "morgue": 1, "appointments": 2, "patients": 3}
    statefulsets.sort(key=lambda s: order.get(s["metadata"]["name"], 9))
    with tempfile.TemporaryDirectory(prefix="hospital-image-") as files:
        os.chmod(files, 0o755)
        workloads = [Workload(s, objects, image, files) for s in statefulsets]
        try:
            for workload in workloads:
                workload.start()
                if workload.await_probes(health_probe):
                    print(f"{overlay}: {workload.name} up, every probe succeeding: "
                          f"{[(k, p.get('grpc') or p.get('httpGet')) for k, p in workload.probes()]}",
                          flush=True)
            if failures:
                return
            patient = f"image-{overlay.replace('/', '-')}"
            exercise(overlay, hospital_call, patient)
            # As when the pods are deleted: every container gets its preStop hook and SIGTERM
            # at once.
            stoppers = [threading.Thread(target=w.stop) for w in workloads]
            for stopper in stoppers:
                stopper.start()
            for stopper in stoppers:
                stopper.join()
            for workload in workloads:
                workload.restart()
            for workload in workloads:
                workload.await_probes(health_probe)
            got = call(hospital_call, 50051, "hospital.patients.v1.PatientsService/GetPatient",
                       {"patientId": patient})
            admission = call(hospital_call, 50052, "hospital.morgue.v1.MorgueService/GetAdmission",
                             {"patientId": patient})
            if not got.get("death", {}).get("timeOfDeath") or admission.get("patientId") != patient:
                fail(f"{overlay}: after the restart the death or the admission is gone: "
                     f"{got} {admission}")
            else:
                print(f"{overlay}: after a restart on the same volumes the death and the "
                      "admission are still there", flush=True)
        finally:
            for workload in workloads:
                workload.remove()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--health_probe", required=True)
    parser.add_argument("--hospital_call", required=True)
    parser.add_argument("--overlays", default="k8s/overlays/dev,k8s/overlays/dev-async")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    check_contents(args.image)
    for overlay in args.overlays.split(","):
        check_overlay(root, overlay, args.image, args.health_probe, args.hospital_call)
    if failures:
        print(f"{len(failures)} failed", flush=True)
        sys.exit(1)
    print("image test passed", flush=True)


if __name__ == "__main__":
    main()
