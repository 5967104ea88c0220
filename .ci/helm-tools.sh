#!/usr/bin/env bash
# The Python tools that prove the Helm chart (helm-python-sdk and the
# validators), in their own virtualenv under the cache directory, reused
# between runs and shared by .ci/helm.sh and the chart test
# (tests/tests/chart.rs).
#
# Sourced: defines helm_tools_python, which installs what is missing and
# prints the interpreter to use. Run: does the same.
# Needs Python 3.11+ with pip; where venv is unavailable the tools go into
# the interpreter's site-packages.

helm_tools_python() (
  set -euo pipefail
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/herald-ci"
  local venv="$cache/helm-venv"
  local requirements=(
    'helm-python-sdk==0.2.2'
    'kubernetes-validate==1.37.0'
    'check-jsonschema==0.39.0'
    'jsonschema>=4.20,<5'
    'PyYAML>=6,<7'
  )
  mkdir -p "$cache"
  # One installer at a time: tests run in parallel processes.
  exec 9>"$cache/helm-venv.lock"
  flock 9
  local python=python3
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    python="$venv/bin/python"
  elif python3 -m venv --clear "$venv" >/dev/null 2>&1; then
    python="$venv/bin/python"
  else
    export PIP_BREAK_SYSTEM_PACKAGES=1
  fi
  # Skip pip when this interpreter already has exactly these requirements.
  local stamp want
  stamp="$cache/helm-venv.stamp"
  want="$(command -v "$python") ${requirements[*]}"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
    || ! "$python" -c 'import helm_python, jsonschema, yaml' >/dev/null 2>&1; then
    "$python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}" >&2
    printf '%s' "$want" >"$stamp"
  fi
  command -v "$python"
)

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  helm_tools_python
fi
