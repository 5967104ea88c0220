#!/usr/bin/env bash
# The soak on one machine: a control plane and one edge (see cluster.sh);
# for SECONDS (default 60) the edge holds 5,000 idle connections, 1,000 slow
# requests (one byte a second; half slow WebSocket upgrade headers to the
# edge, half slow publish bodies to the API) and a storm of 2,000 clients
# connecting at once every 10 s, while a publisher and a subscriber keep
# working at 50 messages/s. Prints what was held; exits non-zero when the
# working pair lost anything or an idle connection was dropped.
#
#   bench/scripts/soak.sh [SECONDS] [more `herald bench` options]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_=${1:-60}
shift || true
EDGES=1
# shellcheck source=cluster.sh
source bench/scripts/cluster.sh
"$BIN" bench --edge-url "$EDGE_URLS" --api-url "$CP_URL" --soak "$SECONDS_" \
  --idle-connections 5000 --slow 1000 --connect-storm 2000 --storm-every 10 --rate 50 "$@"
