#!/usr/bin/env bash
# A broadcast to TOTAL connections (default 100,000) held across EDGES edges
# (default 6) by CLIENTS generator processes (default 6; one process holds
# under 20,000 sockets on a host whose open-files limit is 20,000), all
# subscribed to one channel, over NATS, with a control plane on PostgreSQL
# (see cluster.sh). Once every subscriber is in, MESSAGES (default 1)
# messages are published to all of them; prints the deliveries counted by
# every generator (every one must arrive), the delivery time (publish → last
# delivery) and the resident memory of the edges and of the generators.
#
#   bench/scripts/scale.sh
#   TOTAL=20000 EDGES=2 CLIENTS=2 bench/scripts/scale.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

TOTAL=${TOTAL:-100000}
export EDGES=${EDGES:-6}
CLIENTS=${CLIENTS:-$EDGES}
MESSAGES=${MESSAGES:-1}
CHANNEL=scale

# shellcheck source=cluster.sh
source bench/scripts/cluster.sh
IFS=, read -ra URLS <<<"$EDGE_URLS"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
sum_rss_mib() {
  local total=0
  for pid in "$@"; do total=$((total + $(rss_kib "$pid"))); done
  awk -v t="$total" 'BEGIN { printf "%.1f", t / 1024 }'
}

EDGES_IDLE=$(sum_rss_mib "${EDGE_PIDS[@]}")
per=$(((TOTAL + CLIENTS - 1) / CLIENTS))
CLIENT_PIDS=()
for i in $(seq 0 $((CLIENTS - 1))); do
  n=$per
  if [ "$i" -eq $((CLIENTS - 1)) ]; then n=$((TOTAL - per * (CLIENTS - 1))); fi
  url=${URLS[$((i % ${#URLS[@]}))]}
  "$BIN" bench --edge-url "$url" --channel "$CHANNEL" -n "$n" -m "$MESSAGES" --publishers 0 --sample-every 1 \
    >"$LOGS/client-$i.out" 2>"$LOGS/client-$i.err" &
  CLIENT_PIDS+=($!)
  PIDS+=($!)
done

echo "connecting $TOTAL subscribers: $CLIENTS generators, $EDGES edges" >&2
started=$SECONDS
for i in $(seq 0 $((CLIENTS - 1))); do
  until grep -q '^ready:' "$LOGS/client-$i.out"; do
    if ! kill -0 "${CLIENT_PIDS[$i]}" 2>/dev/null; then
      echo "generator $i ended before it was ready:" >&2
      tail -5 "$LOGS/client-$i.err" >&2
      exit 1
    fi
    if [ $((SECONDS - started)) -gt 600 ]; then
      echo "generator $i not ready after 600 s" >&2
      exit 1
    fi
    sleep 0.5
  done
done
echo "all subscribed after $((SECONDS - started)) s" >&2
EDGES_HELD=$(sum_rss_mib "${EDGE_PIDS[@]}")
CLIENTS_HELD=$(sum_rss_mib "${CLIENT_PIDS[@]}")

"$BIN" bench --edge-url "${URLS[0]}" --channel "$CHANNEL" -n 0 -m "$MESSAGES" >"$LOGS/publisher.out" 2>&1
for pid in "${CLIENT_PIDS[@]}"; do wait "$pid" || true; done

delivered=0
expected=0
worst=0
for i in $(seq 0 $((CLIENTS - 1))); do
  line=$(grep '^deliveries:' "$LOGS/client-$i.out" || echo "deliveries: 0 of 0 expected")
  d=$(echo "$line" | awk '{print $2}')
  e=$(echo "$line" | awk '{print $4}')
  delivered=$((delivered + d))
  expected=$((expected + e))
  latency=$(grep '^latency when read:' "$LOGS/client-$i.out" | cut -d: -f2- || true)
  max=$(echo "$latency" | sed -nE 's/.*max ([0-9.]+) ms.*/\1/p')
  echo "generator $i: $line; latency:$latency"
  worst=$(awk -v a="${max:-0}" -v b="$worst" 'BEGIN { print (a > b) ? a : b }')
done

echo "---"
echo "connections:            $TOTAL on $EDGES edges, held by $CLIENTS generators"
echo "deliveries:             $delivered of $expected expected ($MESSAGES message(s) to every connection)"
echo "delivery time:          $worst ms (publish → the last delivery read)"
echo "edges resident:         $EDGES_IDLE MiB before, $EDGES_HELD MiB holding the connections"
echo "  per connection:       $(awk -v h="$EDGES_HELD" -v i="$EDGES_IDLE" -v n="$TOTAL" 'BEGIN { printf "%.2f", (h - i) * 1024 / n }') KiB"
echo "generators resident:    $CLIENTS_HELD MiB"
if [ "$delivered" -ne "$((TOTAL * MESSAGES))" ]; then
  echo "LOST: $((TOTAL * MESSAGES - delivered)) deliveries" >&2
  exit 1
fi
