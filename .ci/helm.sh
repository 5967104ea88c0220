#!/usr/bin/env bash
# Proves the Helm chart (helm/herald) and the deployment material (deploy/):
# lint, render with the default and the full-featured values, validate every
# manifest against the Kubernetes schemas, require bad values to fail, and
# check the compose file, example configs and dashboard against the binary.
# Needs Python 3.11+ with pip; no helm binary, cluster or Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "ci: helm chart and deploy/ checks"

# The tools live in their own virtualenv (reused between runs); where venv
# is unavailable, in the interpreter's site-packages.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/herald-ci/helm-venv"
python=python3
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  python="$venv/bin/python"
elif python3 -m venv --clear "$venv" >/dev/null 2>&1; then
  python="$venv/bin/python"
else
  export PIP_BREAK_SYSTEM_PACKAGES=1
fi
"$python" -m pip install --quiet --disable-pip-version-check \
  'helm-python-sdk==0.2.2' \
  'kubernetes-validate==1.37.0' \
  'check-jsonschema==0.39.0' \
  'jsonschema>=4.20,<5' \
  'PyYAML>=6,<7'
"$python" helm/herald/ci/check.py
