#!/usr/bin/env python3
"""Keeps the layering of src/ that src/CMakeLists.txt describes, from the code's own includes and
link lists:

  - each folder of src/ includes only the folders below it (LAYERS);
  - no service (patients, morgue, appointments) includes another service's headers, its
    generated protos (hospital/<service>/...) or links its library;
  - only the modules of the two patterns that write a peer's database (integration/
    shared_db_batch, integration/direct_db_write) use the morgue's or the appointments
    service's code; no service uses integration/: the binaries (src/binaries) join each
    service's process with the factory of its pattern.

  check_layering.py SRC_DIR      checks a tree; every breach on a line of its own, exit 1
  check_layering.py --self-test  checks that a tree with each kind of breach is refused
"""
import os
import re
import sys
import tempfile

SERVICES = ("patients", "morgue", "appointments")
# Folder -> the folders of src/ its code may include (itself always).
LAYERS = {
    "base": set(),
    "resilience": {"base"},
    "server_kit": {"base"},
    "testing_support": {"base"},
    "messaging": {"base", "server_kit", "resilience"},
    "patient_events": {"base", "server_kit", "messaging"},
    "patients": {"base", "server_kit", "resilience", "messaging"},
    "morgue": {"base", "server_kit", "messaging", "patient_events"},
    "appointments": {"base", "server_kit", "messaging", "patient_events"},
    "integration": {"base", "server_kit", "resilience", "messaging", "patient_events",
                    "patients", "morgue", "appointments"},
    "binaries": {"base", "server_kit", "resilience", "messaging", "patient_events", "patients",
                 "morgue", "appointments", "integration"},
}
# The pattern modules that may use the morgue's and the appointments service's own code.
PEER_WRITERS = ("integration/shared_db_batch/", "integration/direct_db_write/")

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def breaches(src):
    found = []
    folders = {name for name in os.listdir(src) if os.path.isdir(os.path.join(src, name))}
    unknown = sorted(folders - set(LAYERS))
    for name in unknown:
        found.append(f"src/{name}/: a folder with no place in LAYERS (add it, below what it uses)")
    for root, _, files in os.walk(src):
        for file in sorted(files):
            path = os.path.join(root, file)
            relative = os.path.relpath(path, src).replace(os.sep, "/")
            folder = relative.split("/")[0]
            if folder not in LAYERS:
                continue
            if file == "CMakeLists.txt":
                found += link_breaches(relative, folder, open(path, encoding="utf-8").read())
            elif file.endswith((".h", ".cc")):
                text = open(path, encoding="utf-8").read()
                for header in INCLUDE.findall(text):
                    why = include_breach(relative, folder, header, folders)
                    if why:
                        found.append(f"src/{relative}: includes \"{header}\": {why}")
    return found


def include_breach(relative, folder, header, folders):
    target = header.split("/")[0]
    if folder in SERVICES and target == "hospital":
        proto_of = header.split("/")[1] if header.count("/") >= 2 else ""
        if proto_of in SERVICES and proto_of != folder:
            return f"another service's API ({proto_of}); a pattern module calls it"
        return None
    if target not in folders or target == folder:
        return None
    if folder in SERVICES and target == "integration":
        return "a service knows no pattern: its binary (src/binaries) joins the two"
    if target not in LAYERS[folder]:
        return f"{folder}/ may include only {sorted(LAYERS[folder]) or 'itself'}"
    if folder in SERVICES and target in SERVICES:
        return "another service's code"
    if folder == "integration" and target in ("morgue", "appointments"):
        if not relative.startswith(PEER_WRITERS):
            return ("only the patterns that write a peer's database "
                    f"({', '.join(PEER_WRITERS)}) use its code")
    return None


def link_breaches(relative, folder, text):
    found = []
    for peer in SERVICES:
        library = f"{peer}_lib"
        if peer == folder or not re.search(rf"\b{library}\b", text):
            continue
        if folder in SERVICES:
            found.append(f"src/{relative}: links {library}: another service's library")
        elif folder == "integration" and peer != "patients" and not relative.startswith(PEER_WRITERS):
            found.append(f"src/{relative}: links {library}: only {', '.join(PEER_WRITERS)} may")
    return found


def self_test():
    """Each kind of breach in a tree of its own is found, and a clean tree passes."""
    clean = {
        "base/clock.h": "",
        "patients/patients_service.cc": '#include "base/clock.h"\n#include "hospital/patients/v1/patients.pb.h"\n',
        "binaries/patients.cc": '#include "integration/producer_factory.h"\n',
        "patients/CMakeLists.txt": "add_executable(patients main.cc)\n",
        "morgue/morgue_service.h": "",
        "appointments/appointments_service.h": "",
        "integration/producer_factory.h": '#include "patients/patients_service.h"\n',
        "integration/direct_db_write/producer.cc": '#include "morgue/morgue_service.h"\n',
        "integration/direct_db_write/CMakeLists.txt": "target_link_libraries(x PRIVATE morgue_lib)\n",
    }
    bad = {
        "patients/patients_service.cc": '#include "morgue/morgue_service.h"\n',
        "patients/death_workflow.cc": '#include "hospital/morgue/v1/morgue.grpc.pb.h"\n',
        "patients/CMakeLists.txt": "target_link_libraries(patients PRIVATE appointments_lib)\n",
        "patients/patients_repository.cc": '#include "integration/pattern.h"\n',
        "patients/main.cc": '#include "integration/producer_factory.h"\n',
        "integration/producer_factory.cc": '#include "binaries/patients.cc"\n',
        "base/status.cc": '#include "server_kit/log.h"\n',
        "integration/async/producer.cc": '#include "morgue/morgue_service.h"\n',
        "integration/sync/CMakeLists.txt": "target_link_libraries(x PUBLIC appointments_lib)\n",
        "server_kit/log.h": "",
        "surgery/theatre.h": "",
    }
    with tempfile.TemporaryDirectory() as root:
        write_tree(os.path.join(root, "clean"), clean)
        if breaches(os.path.join(root, "clean")):
            print("self-test: a clean tree was refused:", breaches(os.path.join(root, "clean")))
            return 1
        failures = 0
        for path, text in bad.items():
            if path == "server_kit/log.h":
                continue
            tree = dict(clean)
            tree["server_kit/log.h"] = ""
            tree[path] = text
            target = os.path.join(root, path.replace("/", "_"))
            write_tree(target, tree)
            if not breaches(target):
                print(f"self-test: a breach in src/{path} went unnoticed")
                failures += 1
    if failures:
        return 1
    print(f"self-test: a clean tree passes; each of {len(bad) - 1} breaches is refused")
    return 0


def write_tree(root, files):
    for path, text in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as out:
            out.write(text)


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    found = breaches(sys.argv[1])
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} breach(es) of the layering (test/layering/check_layering.py)")
        return 1
    print("layering holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
