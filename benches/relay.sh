#!/usr/bin/env bash
# The on-demand relay's cost, side by side with the direct path, under a
# real load generator (wrk) against a node server:
#   latency:    wrk -t1 -c1 -d5s --latency, GET of a 2-byte body: p50 and p99
#   throughput: wrk -t2 -c8 -d5s, GET of a 1 MiB body: requests and MB/s
# Each measurement runs direct then through the relay
# (benches/examples/relay.rs), ROUNDS times (default 3), and the summary
# gives the medians. Installs wrk with apt-get when it is missing; needs
# node. Ports: UPSTREAM (default 31480) and RELAY (31481), loopback only.
# Run: bash benches/relay.sh
set -euo pipefail
cd "$(dirname "$0")/.."
UPSTREAM=${UPSTREAM:-31480}
RELAY=${RELAY:-31481}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || sudo apt-get install -y wrk; }
command -v node >/dev/null || { echo "relay.sh needs node" >&2; exit 1; }
cargo build --release -q -p portd-benches --example relay
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/server.js" <<'JS'
const http = require('http');
const big = Buffer.alloc(1 << 20, 'x');
http.createServer((req, res) => {
  const body = req.url === '/big' ? big : 'ok';
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('ready'));
JS
wait_ready() { # FILE
  for _ in $(seq 200); do grep -q ready "$1" 2>/dev/null && return; sleep 0.05; done
  echo "not ready: $1" >&2; cat "$1" >&2; exit 1
}
PORT=$UPSTREAM node "$work/server.js" >"$work/node.out" 2>&1 &
pids+=($!)
target/release/examples/relay "$RELAY" "$UPSTREAM" >"$work/relay.out" 2>&1 &
relay_pid=$!
pids+=($relay_pid)
wait_ready "$work/node.out"
wait_ready "$work/relay.out"

# wrk's figures in microseconds / per second / MB per second.
us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1e6 }'; }
mbs() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /GB$/) print n * 1024; else if (v ~ /KB$/) print n / 1024; else print n }'; }
latency() { # PORT -> "p50_us p99_us"
  local out; out=$(wrk -t1 -c1 -d"$DURATION" --latency "http://127.0.0.1:$1/")
  echo "$(us "$(awk '$1 == "50%" { print $2 }' <<<"$out")") $(us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
}
throughput() { # PORT -> "req_per_s MB_per_s"
  local out; out=$(wrk -t2 -c8 -d"$DURATION" "http://127.0.0.1:$1/big")
  echo "$(awk '$1 == "Requests/sec:" { print $2 }' <<<"$out") $(mbs "$(awk '$1 == "Transfer/sec:" { print $2 }' <<<"$out")")"
}
echo "machine: $(nproc) cores, $(uname -r); date: $(date -u +%F); node $(node --version); $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
: >"$work/rows"
for r in $(seq "$ROUNDS"); do
  wrk -t1 -c1 -d1s "http://127.0.0.1:$UPSTREAM/" >/dev/null # warm-up
  wrk -t1 -c1 -d1s "http://127.0.0.1:$RELAY/" >/dev/null
  d=$(latency "$UPSTREAM"); v=$(latency "$RELAY")
  dt=$(throughput "$UPSTREAM"); vt=$(throughput "$RELAY")
  echo "round $r: latency direct p50/p99 ${d// //} us, relay ${v// //} us; 1 MiB direct ${dt// / req\/s } MB/s, relay ${vt// / req\/s } MB/s"
  echo "$d $v $dt $vt" >>"$work/rows"
done
kill -TERM "$relay_pid"
wait "$relay_pid" 2>/dev/null || true
echo "relay counted: $(tail -n 1 "$work/relay.out")"
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
m = lambda i: statistics.median(r[i] for r in rows)
d50, d99, v50, v99, drq, dmb, vrq, vmb = (m(i) for i in range(8))
print(f"\nmedians of {len(rows)} rounds")
print(f"  latency p50: direct {d50:.0f} us, relay {v50:.0f} us, added {v50 - d50:+.0f} us (target <= +100 us)")
print(f"  latency p99: direct {d99:.0f} us, relay {v99:.0f} us")
print(f"  1 MiB bodies: direct {dmb:.0f} MB/s ({drq:.0f} req/s), relay {vmb:.0f} MB/s ({vrq:.0f} req/s): {100 * vmb / dmb:.0f} % of direct (target >= 80 %)")
PY
