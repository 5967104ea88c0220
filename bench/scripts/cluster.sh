#!/usr/bin/env bash
# Sourced by the measuring scripts beside it: starts a control plane and
# EDGES edges (default 2) of the release binary on free ports, over the
# NATS at $NATS_URL (default nats://127.0.0.1:4222, a subject prefix of
# their own) and a fresh PostgreSQL database on $PG_URL (default
# postgres://postgres@127.0.0.1:5432/test), creates an app, an API key, a
# namespace `hist` with history and a token for everything; stops it all and
# drops the database on exit. Sets CP_URL, EDGE_URLS (comma-separated),
# EDGE_PIDS (array), HERALD_TOKEN, HERALD_APP_ID, HERALD_API_KEY.
# EDGE_CORES and CP_CORES, when set, pin the edges and the control plane to
# those cores from their start (their runtimes start a worker per core).
set -euo pipefail

BIN=${HERALD_BIN:-target/release/herald}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
EDGES=${EDGES:-2}

if [ ! -x "$BIN" ]; then
  cargo build --release --bin herald
fi
# The generator holds a socket per client.
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 300); do
    if curl -fs "http://$1/readyz" >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 at $1 did not become ready; its log: $LOGS/$2.log" >&2
  return 1
}

LOGS=$(mktemp -d)
DB="herald_bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG_URL" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  echo "logs: $LOGS" >&2
}
trap cleanup EXIT

psql "$PG_URL" -qc "create database $DB" >/dev/null
PREFIX="bench$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
HERALD_ADMIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
CP_ADDR=127.0.0.1:$(free_port)
CP_URL=http://$CP_ADDR
HERALD_CP_LISTEN=$CP_ADDR HERALD_CP_DATABASE_URL="${PG_URL%/*}/$DB" HERALD_CP_ADMIN_TOKEN=$HERALD_ADMIN_TOKEN \
  HERALD_CP_NATS_URL=$NATS_URL HERALD_CP_SUBJECT_PREFIX=$PREFIX HERALD_CP_DEFAULT_MAX_CONNECTIONS=100000 \
  ${CP_CORES:+taskset -c "$CP_CORES"} "$BIN" control-plane 2>"$LOGS/control-plane.log" &
PIDS+=($!)
wait_ready "$CP_ADDR" control-plane

EDGE_URLS=
EDGE_PIDS=()
for i in $(seq 1 "$EDGES"); do
  addr=127.0.0.1:$(free_port)
  HERALD_EDGE_LISTEN=$addr HERALD_EDGE_EDGE_ID="edge-$i" HERALD_EDGE_NATS_URL=$NATS_URL \
    HERALD_EDGE_SUBJECT_PREFIX=$PREFIX HERALD_EDGE_JWKS_URL="$CP_URL/.well-known/jwks.json" \
    HERALD_EDGE_PUBLISH_RATE=0 HERALD_EDGE_MAX_CONNECTIONS=30000 \
    ${EDGE_CORES:+taskset -c "$EDGE_CORES"} "$BIN" edge 2>"$LOGS/edge-$i.log" &
  PIDS+=($!)
  EDGE_PIDS+=($!)
  wait_ready "$addr" "edge-$i"
  EDGE_URLS="${EDGE_URLS:+$EDGE_URLS,}ws://$addr/v1/connect"
done

export HERALD_API_URL=$CP_URL HERALD_ADMIN_TOKEN
HERALD_APP_ID=$("$BIN" apps create bench)
export HERALD_APP_ID
HERALD_API_KEY=$("$BIN" keys create bench | tail -1)
export HERALD_API_KEY
curl -fsS -X PUT "$CP_URL/v1/apps/$HERALD_APP_ID/namespaces/hist" \
  -H "Authorization: Bearer $HERALD_ADMIN_TOKEN" -H 'Content-Type: application/json' \
  -d '{"history_size": 10000, "history_ttl": "1h"}' >/dev/null
HERALD_TOKEN=$("$BIN" token --client-id bench --ttl 7200)
export HERALD_TOKEN
