#!/usr/bin/env bash
# Proves the Helm chart (helm/herald) and the deployment material (deploy/):
# lint, render with the default and the full-featured values, validate every
# manifest against the Kubernetes schemas, require bad values to fail, and
# check the compose file, example configs and dashboard against the binary.
# (Running the rendered containers against the binary is a test of the test
# suite: tests/tests/chart.rs.)
# Needs Python 3.11+ with pip; no helm binary, cluster or Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "ci: helm chart and deploy/ checks"
source .ci/helm-tools.sh
python="$(helm_tools_python)"
"$python" helm/herald/ci/check.py
