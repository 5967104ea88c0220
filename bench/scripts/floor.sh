#!/usr/bin/env bash
# Herald beside the floor, in the same run: `herald dev` (control plane and
# edge in one process, in-process bus) and the floor (`herald bench
# --serve-floor`: a bare tokio WebSocket broadcaster, writes coalesced, no
# auth, no protocol) are both pinned to core 0, the generator to core 1, and
# each scenario runs against the floor, then against Herald; every figure is
# printed beside the floor's as × floor.
#
#   bench/scripts/floor.sh                 # every scenario
#   bench/scripts/floor.sh fanout10k idle  # some of them
#
# Scenarios: fanout10k (10,000 subscribers, one publisher at full speed),
# fanout1k (1,000), latency10k (10 msg/s to 10,000 with both servers allowed
# both cores), nats10k (as fanout10k through a control plane, an edge and NATS:
# the edge measured), nats1k (100 msg/s to 1,000 through them, all on both
# cores), idle (10,000 idle connections held IDLE_HOLD seconds, default
# 60, each on its own channel), natsidle (as idle, on an edge over NATS:
# the edge measured), storm (10,000 connects at once, each with its token checked), pusher
# (10,000 Pusher subscribers at full speed). SERVER_BIN runs `herald dev`
# (default: BIN, target/release/herald), so two builds compare with one
# generator.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${HERALD_BIN:-target/release/herald}
SERVER_BIN=${SERVER_BIN:-$BIN}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
IDLE_HOLD=${IDLE_HOLD:-60}
SCENARIOS=("$@")
if [ ${#SCENARIOS[@]} -eq 0 ]; then SCENARIOS=(fanout10k fanout1k latency10k nats10k nats1k idle natsidle storm pusher); fi

if [ ! -x "$BIN" ]; then cargo build --release --bin herald; fi
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
DATA=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

# Both servers start afresh for every scenario: what one left behind
# (memory, sockets) does not weigh on the next.
# start_servers CORES: both pinned to CORES (their runtimes start a worker
# per core they may use, so this is decided at start).
start_servers() {
  local cores=$1
  rm -rf "$DATA/dev" "$DATA/floor.log"
  FLOOR_ADDR=127.0.0.1:$(free_port)
  taskset -c "$cores" "$BIN" bench --token none --serve-floor "$FLOOR_ADDR" >"$DATA/floor.log" 2>&1 &
  FLOOR_PID=$!
  PIDS+=("$FLOOR_PID")

  HERALD_EDGE_PUBLISH_RATE=0 HERALD_EDGE_MAX_CONNECTIONS=30000 HERALD_CP_DEFAULT_MAX_CONNECTIONS=100000 \
    taskset -c "$cores" "$SERVER_BIN" dev --data-dir "$DATA/dev" --api-addr "127.0.0.1:$(free_port)" \
    --edge-addr "127.0.0.1:$(free_port)" --pusher-addr 127.0.0.1:0 >"$DATA/dev.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 1 300); do
    if [ -s "$DATA/dev/dev.json" ] && grep -q "floor listening" "$DATA/floor.log"; then break; fi
    sleep 0.1
  done
  field() { python3 -c "import json,sys; print(json.load(open('$DATA/dev/dev.json'))['$1'])"; }
  export HERALD_EDGE_URL HERALD_API_URL HERALD_APP_ID HERALD_API_KEY HERALD_TOKEN
  HERALD_EDGE_URL=$(field edge_url)
  HERALD_API_URL=$(field api_url)
  HERALD_APP_ID=$(field app_id)
  HERALD_API_KEY=$(field api_key)
  for _ in $(seq 1 100); do
    if curl -fs "$HERALD_API_URL/readyz" >/dev/null; then break; fi
    sleep 0.1
  done
  HERALD_TOKEN=$("$BIN" token --client-id bench --ttl 7200)
  PUSHER_KEY=$(field pusher_key)
}
stop_servers() {
  kill "$FLOOR_PID" "$SERVER_PID" 2>/dev/null || true
  wait "$FLOOR_PID" "$SERVER_PID" 2>/dev/null || true
  PIDS=()
}

gen() { taskset -c "$CLIENT_CORE" "$BIN" bench "$@"; }

# The production path: a control plane and one edge as separate processes
# over the NATS at $NATS_URL (cluster.sh, PostgreSQL at $PG_URL), beside the
# floor; the edge's own process is the one measured.
#   nats10k: the edge and the floor pinned to SERVER_CORE, the control
#     plane and the generator to CLIENT_CORE (NATS unpinned), 10,000
#     subscribers at full speed;
#   nats1k: 100 messages/s to 1,000 subscribers, every process on both cores;
#   natsidle: 10,000 idle connections, each on its own channel, pinned as
#     nats10k.
over_nats() (
  local scenario=$1 gen_bin=$BIN server_cores=0,1 client_cores=0,1
  if [ "$scenario" != nats1k ]; then server_cores=$SERVER_CORE client_cores=$CLIENT_CORE; fi
  local floor_addr
  floor_addr=127.0.0.1:$(free_port)
  HERALD_BIN=$SERVER_BIN EDGES=1 EDGE_CORES=$server_cores CP_CORES=$client_cores source bench/scripts/cluster.sh
  taskset -c "$server_cores" "$gen_bin" bench --token none --serve-floor "$floor_addr" >"$DATA/floor.log" 2>&1 &
  local floor_pid=$!
  PIDS+=("$floor_pid")
  for _ in $(seq 1 100); do
    if grep -q "floor listening" "$DATA/floor.log"; then break; fi
    sleep 0.1
  done
  local compare=(--floor-url "ws://$floor_addr/v1/connect" --floor-pid "$floor_pid" --server-pid "${EDGE_PIDS[0]}")
  case $scenario in
    nats10k) HERALD_EDGE_URL=$EDGE_URLS taskset -c "$client_cores" "$gen_bin" bench "${compare[@]}" -n 10000 -m 3000 --publishers 1 ;;
    nats1k) HERALD_EDGE_URL=$EDGE_URLS taskset -c "$client_cores" "$gen_bin" bench "${compare[@]}" -n 1000 -m 2000 --rate 100 ;;
    natsidle) HERALD_EDGE_URL=$EDGE_URLS taskset -c "$client_cores" "$gen_bin" bench "${compare[@]}" --idle-connections 10000 --idle-hold "$IDLE_HOLD" ;;
  esac
)

for scenario in "${SCENARIOS[@]}"; do
  echo "=== $scenario"
  case $scenario in nats10k | nats1k | natsidle) over_nats "$scenario"; continue ;; esac
  if [ "$scenario" = latency10k ]; then start_servers 0,1; else start_servers "$SERVER_CORE"; fi
  compare=(--floor-url "ws://$FLOOR_ADDR/v1/connect" --floor-pid "$FLOOR_PID" --server-pid "$SERVER_PID")
  case $scenario in
    fanout10k) gen "${compare[@]}" -n 10000 -m 3000 --publishers 1 ;;
    fanout1k) gen "${compare[@]}" -n 1000 -m 30000 --publishers 1 ;;
    # Both servers may use both cores; the generator shares them.
    latency10k) taskset -c 0,1 "$BIN" bench "${compare[@]}" -n 10000 -m 300 --rate 10 ;;
    idle) gen "${compare[@]}" --idle-connections 10000 --idle-hold "$IDLE_HOLD" ;;
    storm) gen "${compare[@]}" --connect-storm 10000 ;;
    pusher) gen "${compare[@]}" --pusher-key "$PUSHER_KEY" -n 10000 -m 3000 --publishers 1 ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
  stop_servers
done
