#!/usr/bin/python3
"""Checks the alerting rules offline: `promtool check rules` on the PrometheusRule's spec, then
the unit tests in alerts-test.yaml with `promtool test rules`.

Usage: check_monitoring.py <repository root>
"""

import os
import shutil
import subprocess
import sys
import tempfile

import yaml


def main():
    root = sys.argv[1]
    promtool = shutil.which("promtool")
    if promtool is None:
        sys.exit("promtool is not installed (Debian package prometheus): it checks the rules")
    monitoring = os.path.join(root, "k8s", "monitoring")
    with open(os.path.join(monitoring, "prometheus-rule.yaml")) as f:
        rule = yaml.safe_load(f)
    work = tempfile.mkdtemp(prefix="hospital-rules-")
    try:
        with open(os.path.join(work, "alerts.yaml"), "w") as f:
            yaml.safe_dump(rule["spec"], f, sort_keys=False)
        shutil.copy(os.path.join(monitoring, "alerts-test.yaml"), work)
        failed = 0
        for command in (["check", "rules", "alerts.yaml"], ["test", "rules", "alerts-test.yaml"]):
            result = subprocess.run([promtool] + command, cwd=work, capture_output=True, text=True)
            print(result.stdout + result.stderr)
            failed += result.returncode != 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{2 - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
