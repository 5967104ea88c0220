#!/usr/bin/env bash
# Edge failover at scale on one machine: a control plane and two edges (see
# cluster.sh), CLIENTS clients (default 10,000) spread over both on ten
# channels with history while 100 messages/s are published; after a 5 s
# warm-up edge 1 is SIGKILLed. Prints how its clients came back on edge 2
# (time to resubscribed), and whether any message was lost without the
# client being told, or came twice; exits non-zero if so.
#
#   bench/scripts/failover.sh [CLIENTS] [more `herald bench` options]
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIENTS=${1:-10000}
shift || true
# shellcheck source=cluster.sh
source bench/scripts/cluster.sh
"$BIN" bench --edge-url "$EDGE_URLS" --failover "$CLIENTS" --kill-pid "${EDGE_PIDS[0]}" \
  --channel hist:failover --rate 100 "$@"
