#!/usr/bin/env python3
"""Checks that ctest lists every Catch2 test case of every test binary under its own name.

catch_discover_tests reads the case names as a CMake list: an unbalanced '[' swallows the
separators after it (the cases from there on merge into one entry whose filter matches nothing)
and a ';' splits a name in two; either way the case silently never runs. Usage: check_test_discovery.py BUILD_DIR
BINARY...
"""
import os
import re
import subprocess
import sys


def main():
    build_dir, binaries = sys.argv[1], sys.argv[2:]
    listed = subprocess.run(["ctest", "-N", "--test-dir", build_dir], check=True,
                            capture_output=True, text=True).stdout
    ctest_names = set(re.findall(r"^\s*Test\s+#\d+: (.*)$", listed, re.MULTILINE))
    missing = []
    total = 0
    for binary in binaries:
        name = os.path.basename(binary)
        # Catch2 exits with the number of cases listed, not 0.
        cases = subprocess.run([binary, "--list-test-names-only"],
                               capture_output=True, text=True).stdout.splitlines()
        if not cases:
            missing.append(f"{name}: lists no test cases")
        for case in filter(None, (c.rstrip() for c in cases)):
            total += 1
            if f"{name}:{case}" not in ctest_names:
                missing.append(f"{name}:{case}")
    if missing:
        print("test cases that ctest does not list as themselves:")
        for entry in missing:
            print("  " + entry)
        return 1
    print(f"all {total} test cases of {len(binaries)} binaries are listed by ctest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
