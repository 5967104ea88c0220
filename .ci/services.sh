#!/usr/bin/env bash
# Makes sure the services Herald's tests use are reachable on this machine:
# NATS with JetStream on 127.0.0.1:4222 and PostgreSQL on 127.0.0.1:5432
# (trust auth, user postgres). Starts them when they are down and installs
# them from Debian's packages when they are missing. Sourced by .ci/run; can
# also be run on its own: `bash .ci/services.sh`.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    if port_open "$port"; then return 0; fi
    sleep 0.5
  done
  echo "services: $name did not come up on 127.0.0.1:$port" >&2
  return 1
}

apt_install() {
  if [ -z "${HERALD_APT_UPDATED:-}" ]; then
    apt-get update -qq
    export HERALD_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_nats() {
  if port_open 4222; then echo "services: nats is up"; return 0; fi
  if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
    echo "services: installing nats-server"
    apt_install nats-server
  fi
  local bin
  bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  mkdir -p /var/lib/nats-server
  echo "services: starting nats-server with jetstream"
  start-stop-daemon --start --oknodo --background --exec "$bin" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 nats
}

ensure_postgres() {
  if port_open 5432; then echo "services: postgresql is up"; return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing postgresql"
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -n | tail -1)
  # Trust auth on loopback, as the tests expect.
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q "herald-ci" "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust # herald-ci\nhost all all ::1/128 trust # herald-ci\nlocal all all trust # herald-ci' "$hba"
  fi
  echo "services: starting postgresql $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 5432 postgresql
  if ! psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname = 'test'" | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -c "create database test" >/dev/null
  fi
}

ensure_services() {
  ensure_nats
  ensure_postgres
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  ensure_services
fi
