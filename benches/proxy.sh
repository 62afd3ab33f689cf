#!/usr/bin/env bash
# The proxy, measured side by side in one run (figures and targets in
# BENCHMARKS.md, "Issue: named URLs and the dashboard"):
#   1  HTTP against a node upstream answering `ok`
#      (benches/fixtures/proxy_upstream.js), with wrk -t1: p50 latency at
#      one connection and req/s at 64, for four columns: direct, portd's
#      proxy, nginx (Debian nginx-light: one worker, upstream keep-alive)
#      and portless 0.15.6 (npm, `--no-tls`); and the CPU time (utime +
#      stime) each proxy spent per request at 64 connections, which the
#      other load on the machine disturbs less. ROUNDS rounds (default 5),
#      the columns interleaved in each round; the medians. Targets: portd
#      adds <= 60 us p50; keeps >= 80 % of direct's req/s and >= 0.9x
#      nginx's
#   2  WebSocket echo round trip (benches/fixtures/ws_rtt.js), direct and
#      through portd's proxy (target <= 1.3x direct)
#   3  the proxy's memory with 50 routes (VmRSS after the load, VmHWM;
#      target <= 15 MB), its pooled upstream connections right after 8
#      concurrent requests and 1.5 s later (they close about 1 s after
#      their last use), and its CPU over 10 s with nothing happening
#      (utime+stime ticks; target 0)
#   4  first request through the proxy to a defined on-demand project that
#      sleeps (and to one that is stopped: the proxy starts it), beside the
#      same server's own start-up (benches/fixtures/fd_server.py, exec to
#      the first 200); target <= its start-up + 50 ms
# A column that cannot run (nginx or portless not installable) prints SKIP.
# PROXY_BENCH_SMOKE=1: one round of 1 s, short waits, few samples (CI: the
# script works and every column answers 200; the figures mean nothing).
# Private PORTD_HOME, config and ports (29500-29599: the script's own 29501-29504, the projects'
# 29510-29599; below the kernel's ephemeral range) under a temporary
# directory; every process it started is stopped on exit.
# Run: bash benches/proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/sweep.sh
SMOKE=${PROXY_BENCH_SMOKE:-}
if [ -n "$SMOKE" ]; then
  ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-1s} IDLE_S=2 SAMPLES=1 WS_N=200
else
  ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-2s} IDLE_S=10 SAMPLES=5 WS_N=2000
fi
PX=29501 NG=29502 PL=29503 BARE=29504
install() { # COMMAND PACKAGE
  command -v "$1" >/dev/null && return
  { apt-get install -y -q "$2" || { apt-get update -q && apt-get install -y -q "$2"; }; } \
    >/dev/null 2>&1 || true
  command -v "$1" >/dev/null
}
install wrk wrk || { echo "proxy.sh needs wrk (Debian package wrk)" >&2; exit 1; }
install ss iproute2 || { echo "proxy.sh needs ss (Debian package iproute2)" >&2; exit 1; }
command -v node >/dev/null || { echo "proxy.sh needs node" >&2; exit 1; }
had_nginx=$(PATH=$PATH:/usr/sbin command -v nginx || true)
PATH=$PATH:/usr/sbin install nginx nginx-light || true
# On a machine with systemd, installing Debian's package starts nginx on
# port 80: when this script installed it, that service is stopped again
# (the script runs its own nginx, on its own port).
if [ -z "$had_nginx" ] && command -v systemctl >/dev/null \
  && systemctl is-active nginx >/dev/null 2>&1; then
  systemctl disable --now nginx >/dev/null 2>&1 || true
fi
cargo build --release -q --locked -p portd -p portd-proxy
BIN="$PWD/target/release/portd"
PROXY="$PWD/target/release/portd-proxy"
WORK="$(mktemp -d)"
export PORTD_HOME="$WORK/home" PORTD_CONFIG="$WORK/config.toml"
cp benches/fixtures/proxy_upstream.js benches/fixtures/ws_rtt.js benches/fixtures/fd_server.py \
  cli/tests/fixtures/proxy/websocket.js "$WORK/"
# The projects' range leaves out the script's own ports (a proxy port
# inside a range is refused).
printf '[[range]]\nname = "bench"\nstart = 29510\nend = 29599\n' >"$PORTD_CONFIG"

cleanup() {
  disown -a 2>/dev/null || true
  "$BIN" stop --all >/dev/null 2>&1 || true
  [ -z "${NGINX_PID:-}" ] || kill "$NGINX_PID" 2>/dev/null || true
  sweep "$WORK"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # PORT: until it accepts (10 s)
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done
  echo "nothing listens on $1" >&2; return 1
}

# The routes (50): the upstream (a plain entry: node runs on its port); for
# item 4, 10 on-demand projects put to sleep now (5 woken directly, 5
# through the proxy) and 5 left stopped (one of each per sample: a port is
# never reused within the run); and 34 defined projects that never run.
# The servers run on the interpreter itself, not a wrapper found on PATH
# (pyenv's shim adds tens of milliseconds to every start).
PY=$(python3 -c 'import sys; print(sys.executable)')
UP=$("$BIN" get up)
for i in 0 1 2 3 4; do
  for n in s d c; do
    "$BIN" add "$n$i" --on-demand --fd --idle-timeout 1h -- "$PY" "$WORK/fd_server.py" >/dev/null 2>&1
  done
done
for i in $(seq 0 33); do
  "$BIN" add "p$i" -- "$PY" "$WORK/fd_server.py" >/dev/null 2>&1
done
"$BIN" start s0 s1 s2 s3 s4 d0 d1 d2 d3 d4 >/dev/null
PORT=$UP node "$WORK/proxy_upstream.js" >"$WORK/up.out" 2>&1 &
"$PROXY" --port "$PX" --home "$PORTD_HOME" >"$WORK/proxy.out" 2>&1 &
PROXY_PID=$!
wait_port "$UP"
wait_port "$PX"

# nginx: one worker, upstream keep-alive, everything under WORK.
NGINX=
if PATH=$PATH:/usr/sbin command -v nginx >/dev/null; then
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
EOF
  PATH=$PATH:/usr/sbin nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx/start.err" &
  NGINX_PID=$!
  if wait_port "$NG" 2>/dev/null; then
    NGINX=$(PATH=$PATH:/usr/sbin nginx -v 2>&1 | sed 's/.*version: //')
  else
    echo "nginx did not start: $(head -n 3 "$WORK/nginx/start.err" "$WORK/nginx/error.log" 2>/dev/null)" >&2
  fi
fi

# portless 0.15.6 from npm, into WORK, its state there too (no hosts file).
PORTLESS=
export PORTLESS_STATE_DIR="$WORK/portless-state" PORTLESS_SYNC_HOSTS=0
if timeout 180 npm install -q --no-audit --no-fund --prefix "$WORK/portless" portless@0.15.6 \
  >"$WORK/portless.install" 2>&1; then
  PL_BIN="$WORK/portless/node_modules/.bin/portless"
  "$PL_BIN" proxy start --no-tls -p "$PL" --foreground >"$WORK/portless.out" 2>&1 &
  PL_PID=$!
  if wait_port "$PL" 2>/dev/null && "$PL_BIN" alias bench "$UP" >>"$WORK/portless.out" 2>&1; then
    PORTLESS=0.15.6
  else
    echo "portless did not start: $(tail -n 3 "$WORK/portless.out")" >&2
  fi
else
  echo "portless could not be installed: $(tail -n 2 "$WORK/portless.install")" >&2
fi

# In CI every column must run.
if [ -n "${CI:-}" ] && { [ -z "$NGINX" ] || [ -z "$PORTLESS" ]; }; then
  echo "proxy.sh: nginx ${NGINX:-missing}, portless ${PORTLESS:-missing}: in CI every column must run" >&2
  exit 1
fi

echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u '+%F %H:%M'), $("$BIN" --version), node $(node --version), $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2), nginx ${NGINX:-SKIP}, portless ${PORTLESS:-SKIP}"
echo "wrk -t1, $DURATION per measurement, $ROUNDS rounds; wrk, node and the proxy share the $(nproc) cores"

BIN="$BIN" WORK="$WORK" UP="$UP" PX="$PX" NG="$NG" PL="$PL" BARE="$BARE" \
  NGINX="$NGINX" PORTLESS="$PORTLESS" PROXY_PID="$PROXY_PID" NGINX_PID="${NGINX:+$NGINX_PID}" \
  PL_PID="${PORTLESS:+$PL_PID}" ROUNDS="$ROUNDS" \
  DURATION="$DURATION" IDLE_S="$IDLE_S" SAMPLES="$SAMPLES" WS_N="$WS_N" SMOKE="$SMOKE" \
  python3 - <<'PY'
import json, os, re, socket, statistics, subprocess, sys, threading, time

E = os.environ
BIN, WORK, DURATION = E["BIN"], E["WORK"], E["DURATION"]
UP, PX, NG, PL, BARE = (int(E[k]) for k in ("UP", "PX", "NG", "PL", "BARE"))
PROXY_PID, ROUNDS, SAMPLES = int(E["PROXY_PID"]), int(E["ROUNDS"]), int(E["SAMPLES"])
med = statistics.median
failed = []

# name -> (port, Host header)
cols = {"direct": (UP, f"127.0.0.1:{UP}"), "portd": (PX, f"up.localhost:{PX}")}
if E["NGINX"]:
    cols["nginx"] = (NG, f"up.localhost:{NG}")
if E["PORTLESS"]:
    cols["portless"] = (PL, f"bench.localhost:{PL}")


def us(v):
    n = float(re.match(r"[\d.]+", v).group())
    return n * {"us": 1, "ms": 1e3, "s": 1e6}[re.search(r"[a-z]+$", v).group()]


def wrk(col, conns, latency=False):
    port, host = cols[col]
    args = ["wrk", "-t1", f"-c{conns}", f"-d{DURATION}", "-H", f"Host: {host}"]
    out = subprocess.run(args + (["--latency"] if latency else []) + [f"http://127.0.0.1:{port}/"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if bad or "Requests/sec" not in out:
        failed.append(f"{col} -c{conns}: {bad.group(0) if bad else out.strip()[-200:]}")
    if latency:
        m = re.search(r"^\s+50%\s+(\S+)", out, re.M)
        return us(m.group(1)) if m else float("nan")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    return (float(m.group(1)) if m else float("nan")), (int(n.group(1)) if n else 0)


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


# The process whose CPU time a request costs (utime+stime over the run).
cpu_pid = {"portd": PROXY_PID}
if E.get("NGINX_PID"):
    cpu_pid["nginx"] = int(E["NGINX_PID"])  # master_process off: it is the worker
if E.get("PL_PID"):
    cpu_pid["portless"] = int(E["PL_PID"])
HZ = os.sysconf("SC_CLK_TCK")


# --- 1. HTTP: p50 at 1 connection, req/s at 64 ------------------------------
for col in cols:  # warm-up: connections, pools, JITs
    subprocess.run(["wrk", "-t1", "-c64", "-d1s", "-H", f"Host: {cols[col][1]}",
                    f"http://127.0.0.1:{cols[col][0]}/"], stdout=subprocess.DEVNULL)
p50 = {c: [] for c in cols}
rps = {c: [] for c in cols}
cpu = {c: [] for c in cols if c in cpu_pid}
for r in range(ROUNDS):
    for c in cols:
        p50[c].append(wrk(c, 1, latency=True))
    for c in cols:
        t0 = ticks(cpu_pid[c]) if c in cpu else 0
        x, n = wrk(c, 64)
        rps[c].append(x)
        if c in cpu and n:
            cpu[c].append((ticks(cpu_pid[c]) - t0) / HZ * 1e6 / n)
    print(f"round {r + 1}: p50 " + ", ".join(f"{c} {p50[c][-1]:.0f}" for c in cols) + " us; req/s "
          + ", ".join(f"{c} {rps[c][-1]:.0f}" for c in cols), flush=True)
print(f"\n1. HTTP, medians of {ROUNDS} rounds")
d50, drps = med(p50["direct"]), med(rps["direct"])
for c in ("direct", "portd", "nginx", "portless"):
    if c not in cols:
        print(f"   {c:<9} SKIP")
        continue
    m50, mrps = med(p50[c]), med(rps[c])
    extra = "" if c == "direct" else f" (+{m50 - d50:.0f} us)"
    share = "" if c == "direct" else f" ({100 * mrps / drps:.0f} % of direct)"
    own = f"; CPU {med(cpu[c]):.1f} us a request" if cpu.get(c) else ""
    print(f"   {c:<9} p50 at 1 connection {m50:6.0f} us{extra:<12} req/s at 64 {mrps:8.0f}{share}{own}")
pd50, pdrps = med(p50["portd"]) - d50, med(rps["portd"])
print(f"   portd: +{pd50:.0f} us p50 (target <= 60), {100 * pdrps / drps:.0f} % of direct (target >= 80)"
      + (f", {pdrps / med(rps['nginx']):.2f}x nginx (target >= 0.9)" if "nginx" in cols else ""))
if "portd" in cols:
    ratios = [a / b for a, b in zip(rps["portd"], rps["direct"])]
    print("   portd/direct req/s by round: " + " ".join(f"{x:.2f}" for x in ratios)
          + ("; portd/nginx: " + " ".join(f"{a / b:.2f}" for a, b in zip(rps["portd"], rps["nginx"]))
             if "nginx" in cols else ""))


# --- 2. WebSocket echo round trip --------------------------------------------
def ws(port, host):
    out = subprocess.run(["node", os.path.join(WORK, "ws_rtt.js"), str(port), host, E["WS_N"]],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    if out.returncode != 0:
        failed.append(f"websocket via {host}: {out.stdout.strip()}")
        return float("nan"), float("nan")
    return tuple(map(float, out.stdout.split()))


wd, wp = [], []
for _ in range(max(1, min(ROUNDS, 3))):
    wd.append(ws(UP, f"127.0.0.1:{UP}"))
    wp.append(ws(PX, f"up.localhost:{PX}"))
wd50, wp50 = med(x[0] for x in wd), med(x[0] for x in wp)
print(f"\n2. WebSocket echo round trip (median of {E['WS_N']} frames, median of {len(wd)} runs): "
      f"direct {wd50:.0f} us, portd {wp50:.0f} us: {wp50 / wd50:.2f}x (target <= 1.3x); "
      f"p99 {med(x[1] for x in wd):.0f} / {med(x[1] for x in wp):.0f} us")


# --- 3. memory, pooled connections, idle CPU ----------------------------------
def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def get(port, host, timeout=30):
    """The status of a GET, its answer read to the end (Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split()[1]) if head.startswith(b"HTTP/") else 0


def pooled():
    """The proxy's connections to the upstream (ESTABLISHED, from its pid)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{UP} )"],
                         stdout=subprocess.PIPE, text=True).stdout
    return sum(1 for line in out.splitlines() if f"pid={PROXY_PID}," in line)


routes = len(json.loads(subprocess.run([BIN, "ls", "--json"], stdout=subprocess.PIPE,
                                       text=True, check=True).stdout))
rss, hwm = status(PROXY_PID, "VmRSS"), status(PROXY_PID, "VmHWM")
# 8 requests at once, each read to its end (a response that wrk abandons
# when it stops closes its upstream connection: it cannot be reused).
answers = []
threads = [threading.Thread(target=lambda: answers.append(get(PX, f"up.localhost:{PX}")))
           for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
just_after = pooled()
if answers != [200] * 8:
    failed.append(f"8 concurrent requests through the proxy answered {answers}")
if not just_after:
    failed.append("no pooled upstream connection right after the requests")
time.sleep(1.5)
after = pooled()
time.sleep(0.5)
t0 = ticks(PROXY_PID)
time.sleep(int(E["IDLE_S"]))
idle = ticks(PROXY_PID) - t0
print(f"\n3. proxy with {routes} routes: VmRSS {rss / 1024:.1f} MB after the load, VmHWM "
      f"{hwm / 1024:.1f} MB (target <= 15 MB); threads {status(PROXY_PID, 'Threads')}")
print(f"   pooled upstream connections: {just_after} right after 8 concurrent requests, "
      f"{after} 1.5 s later (target 0)")
print(f"   CPU over {E['IDLE_S']} s with nothing happening: {idle} ticks (target 0)")
if after:
    failed.append(f"{after} pooled upstream connections still open 1.5 s after the load")


# --- 4. first request to a sleeping / stopped on-demand project --------------
def portd(*args):
    r = subprocess.run([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"portd {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def bare():
    env = dict(os.environ, PORT=str(BARE))
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, os.path.join(WORK, "fd_server.py")], env=env)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                assert get(BARE, f"127.0.0.1:{BARE}") == 200
                return (time.perf_counter() - t) * 1e3
            except (ConnectionRefusedError, ConnectionResetError):
                time.sleep(0.001)
        raise SystemExit("the bare server did not answer")
    finally:
        p.kill()
        p.wait()


ports = {e["project"]: e["port"] for e in json.loads(portd("ls", "--json").stdout)}


def first(name, direct=False):
    """The first GET through the proxy (or directly) to NAME (sleeping, or
    stopped)."""
    t = time.perf_counter()
    code = get(ports[name], "localhost") if direct else get(PX, f"{name}.localhost:{PX}")
    ms = (time.perf_counter() - t) * 1e3
    if code != 200:
        failed.append(f"first request to {name}: {code}")
    return ms


b, d, s, st = [], [], [], []
for i in range(SAMPLES):  # interleaved, so that noise hits all four alike
    b.append(bare())
    d.append(first(f"d{i}", direct=True))
    s.append(first(f"s{i}"))
    st.append(first(f"c{i}"))
print(f"\n4. first request through the proxy (median of {SAMPLES}): the server's own start-up "
      f"{med(b):.1f} ms;\n   sleeping on-demand project, directly {med(d):.1f} ms (+{med(d) - med(b):.1f} ms), "
      f"through the proxy {med(s):.1f} ms (+{med(s) - med(b):.1f} ms); "
      f"\n   stopped, started by the proxy {med(st):.1f} ms (+{med(st) - med(b):.1f} ms); target <= +50 ms")

if failed:
    print("\nFAILED:\n  " + "\n  ".join(failed), file=sys.stderr)
    sys.exit(1)
PY
