#!/usr/bin/env python3
"""Holds README.md, docs/*.md and src/resilience/README.md to the repository they describe:

  - every relative link resolves to a file of the repository;
  - every repository path they name (scripts/..., src/..., k8s/... in prose or commands)
    exists, so that a moved file cannot leave a page pointing at nothing;
  - every binary they run from the build (build/bin/X, build/bench/X) is built;
  - every --flag they mention is a flag of one of the project's binaries (asked with
    --helpfull), and a command line that runs one of them passes it only flags it has; the few
    flags of other tools the pages use (cmake, kubectl, podman, pkg-config...) are listed below.

(The grpcurl request bodies are checked against the services' descriptors by readme_test.)

  check_docs.py SOURCE_DIR BUILD_DIR
"""
import glob
import os
import re
import subprocess
import sys

# Flags of other programs that the pages use, with the program.
OTHER_TOOLS_FLAGS = {
    "--build": "cmake", "--install": "cmake", "--prefix": "cmake", "--preset": "cmake",
    "--target": "cmake", "--cflags": "pkg-config", "--libs": "pkg-config",
    "--network": "podman", "--ulimit": "podman", "--runtime": "podman",
    "--variant": "debootstrap", "--from-file": "kubectl", "--server-side": "kubectl",
    "--help": "every binary",
}
# The project's binaries and where the build puts them.
BINARIES = {
    "patients": "bin", "morgue": "bin", "appointments": "bin", "batch_sync": "bin",
    "health_probe": "bin", "hospital_call": "bin", "echo_server": "bin",
    "fault_bench": "bench", "loopback_bench": "bench", "storage_bench": "bench",
    "resilience_bench": "bench",
}
PATH = re.compile(r"(?<![\w./-])((?:scripts|src|test|bench|k8s|protos|docs|cmake|\.ci)/[\w./-]*\w)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9_-]*[a-z0-9])")
BUILT = re.compile(r"(?<![\w/-])build/(bin|bench)/(\w+)")


def pages(source):
    found = [os.path.join(source, "README.md"), os.path.join(source, "src/resilience/README.md")]
    found += sorted(glob.glob(os.path.join(source, "docs", "*.md")))
    return [page for page in found if os.path.exists(page)]


def flags_of(build, binary):
    path = os.path.join(build, BINARIES[binary], binary)
    output = subprocess.run([path, "--helpfull"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+(--[a-z0-9_]+)", output, re.M))


def command_lines(text):
    """The lines of fenced code blocks, continuations joined."""
    lines, inside, current = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        current += line.rstrip("\\") + " "
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return lines


def check(source, build):
    problems = []
    every_flag = set()
    binary_flags = {}
    for binary in BINARIES:
        if not os.path.exists(os.path.join(build, BINARIES[binary], binary)):
            problems.append(f"{binary}: not built in {build} (build it before this check)")
            continue
        binary_flags[binary] = flags_of(build, binary)
        every_flag |= binary_flags[binary]
    for page in pages(source):
        name = os.path.relpath(page, source)
        text = open(page, encoding="utf-8").read()
        folder = os.path.dirname(page)
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            if not os.path.exists(os.path.join(folder, target.split("#")[0])):
                problems.append(f"{name}: the link ({target}) leads nowhere")
        for path in set(PATH.findall(text)):
            if not os.path.exists(os.path.join(source, path.rstrip("."))):
                problems.append(f"{name}: names {path}, which does not exist")
        for stale in set(re.findall(r"build/src/[\w/]+", text)):
            problems.append(f"{name}: runs {stale}; the binaries are in build/bin/")
        for kind, binary in set(BUILT.findall(text)):
            if BINARIES.get(binary) != kind:
                problems.append(f"{name}: runs build/{kind}/{binary}, which the build does not make")
        for flag in set(FLAG.findall(text)):
            base = flag.split("=")[0]
            if base not in every_flag and base not in OTHER_TOOLS_FLAGS:
                problems.append(f"{name}: mentions {flag}, a flag none of the binaries has")
        for line in command_lines(text):
            words = line.split()
            program = os.path.basename(words[0]) if words else ""
            if program not in binary_flags:
                continue
            for flag in FLAG.findall(line):
                if flag not in binary_flags[program] and flag != "--help":
                    problems.append(f"{name}: `{line[:60]}...` passes {flag}, which {program} "
                                    "does not have")
    return problems


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    problems = check(sys.argv[1], sys.argv[2])
    for problem in sorted(set(problems)):
        print(problem)
    if problems:
        return 1
    print(f"{len(pages(sys.argv[1]))} pages: every link, path, binary and flag they name exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
