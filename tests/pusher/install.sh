#!/usr/bin/env bash
# Installs what the Pusher-compatibility tests run: the official Pusher
# client and server libraries (npm: pusher-js, pusher; PyPI: pusher), at the
# versions package-lock.json and requirements.txt pin, and Debian's Chromium
# for the browser test. Idempotent: each step runs only when its result is
# missing or older than the file that pins it, so a second run takes well
# under a second.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

fail() {
  echo "tests/pusher/install.sh: $*" >&2
  exit 1
}

# Runs a step quietly; on failure shows what it printed.
quietly() {
  local what="$1"
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "tests/pusher/install.sh: $what failed:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

command -v node >/dev/null 2>&1 || fail "node is not installed (Node.js 18 or later is needed)"
command -v npm >/dev/null 2>&1 || fail "npm is not installed"
command -v python3 >/dev/null 2>&1 || fail "python3 is not installed"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 18 ] || fail "Node.js $(node --version) is too old: 18 or later is needed"

installed=0

# Debian's Chromium, for the headless-browser test (playwright-core drives
# it; it never downloads a browser of its own).
if [ ! -x /usr/bin/chromium ]; then
  command -v apt-get >/dev/null 2>&1 || fail "/usr/bin/chromium is missing and there is no apt-get to install it"
  if [ "$(id -u)" -ne 0 ]; then
    fail "/usr/bin/chromium is missing: run this script as root, or apt-get install chromium chromium-driver"
  fi
  echo "tests/pusher/install.sh: installing chromium (apt)"
  export DEBIAN_FRONTEND=noninteractive
  quietly "apt-get update" apt-get update -qq
  quietly "apt-get install chromium chromium-driver" apt-get install -y -qq chromium chromium-driver
  [ -x /usr/bin/chromium ] || fail "apt-get installed chromium but /usr/bin/chromium is still missing"
  installed=1
fi

# npm: exactly what package-lock.json pins. npm ci writes
# node_modules/.package-lock.json, which tells when it last ran.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
  || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "tests/pusher/install.sh: installing npm packages (npm ci)"
  quietly "npm ci" npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.package-lock.json
  installed=1
fi

# PyPI: into .python (put on PYTHONPATH), built aside and swapped in whole so
# an interrupted install leaves no half folder behind.
if [ ! -f .python/.installed ] || [ requirements.txt -nt .python/.installed ]; then
  python3 -m pip --version >/dev/null 2>&1 || fail "pip is not installed for python3 (apt-get install python3-pip)"
  echo "tests/pusher/install.sh: installing PyPI packages (pip)"
  rm -rf .python.new
  quietly "pip install" python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --root-user-action=ignore --target .python.new -r requirements.txt
  touch .python.new/.installed
  rm -rf .python
  mv .python.new .python
  installed=1
fi

# What the tests load, checked after an install so that a broken one shows
# now rather than in the tests.
if [ "$installed" = 1 ]; then
  quietly "loading pusher-js, pusher, ws and playwright-core" \
    node -e 'for (const m of ["pusher-js", "pusher", "ws", "playwright-core"]) require(m)'
  quietly "importing the Python pusher library" env PYTHONPATH="$here/.python" python3 -c 'import pusher'
fi
