#!/usr/bin/env bash
# Managed servers, measured side by side in one run (figures and targets in
# BENCHMARKS.md, "Issue: managed servers"):
#   1  cost while sleeping: 50 on-demand projects (`--on-demand --fd`,
#      benches/fixtures/fd_server.py) after `portd start --all`; for each
#      sleeping `portd __serve`: CPU ticks (utime+stime) used over 10 s
#      (target 0) and VmRSS, RssAnon, RssFile, Pss (target RSS <= 3 MB)
#   2  first request to a sleeping project (connect, GET, time to the 200)
#      beside the same server started bare (exec to the first 200, connect
#      polled every 1 ms); target: <= the bare startup + 50 ms
#   3  the Knowledge Manager scenario: 50 defined, 10 in use (hit once), 40
#      sleeping, against the same 50 started as ordinary (not on-demand)
#      servers and hit once: RSS of every supervisor (`__serve`) and all
#      its descendants (`__supervise`, the server); target 70-80 % less
#   4  `portd start` of a running server (median of 20) and of a cold one
#      (`python3 -m http.server`, `--health tcp`; median of 10), beside
#      http.server's own startup
# Private PORTD_HOME and config (ports 35000-35499; bare servers on 36001-36003)
# under a temporary directory; every process this run started is stopped on
# exit. Run: bash benches/servers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/sweep.sh
cargo build --release -q -p portd
BIN="$PWD/target/release/portd"
WORK="$(mktemp -d)"
export PORTD_HOME="$WORK/home" PORTD_CONFIG="$WORK/config.toml"
# The fixture runs from WORK, so every process of this run names WORK in its
# command line (`__serve … --home WORK/home`, the servers, `--directory
# WORK/www`): the clean-up finds exactly those.
cp benches/fixtures/fd_server.py "$WORK/"
mkdir -p "$WORK/www"
printf '[[range]]\nname = "bench"\nstart = 35000\nend = 35499\n' >"$PORTD_CONFIG"

cleanup() {
  "$BIN" stop --all >/dev/null 2>&1 || true
  sweep "$WORK"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Linux $(uname -r)"
echo "date: $(date -u +%F), $("$BIN" --version)"

BIN="$BIN" WORK="$WORK" python3 - <<'PY'
import json, os, socket, statistics, subprocess, sys, time

BIN, WORK = os.environ["BIN"], os.environ["WORK"]
FIXTURE = os.path.join(WORK, "fd_server.py")
# The interpreter itself, not a wrapper found on PATH (pyenv's shim is a
# shell script that adds tens of milliseconds to every start).
PYTHON = sys.executable
N, IN_USE, SAMPLES = 50, 10, 10
BARE_PORT, BARE_FD_PORT, BARE_HTTP_PORT = 36001, 36002, 36003
med = statistics.median


def portd(*args, check=True):
    return subprocess.run([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=check)


def timed_portd(*args):
    t = time.perf_counter()
    portd(*args)
    return (time.perf_counter() - t) * 1e3


def servers():
    """project -> its `server` object in `ls --json`."""
    return {e["project"]: e for e in json.loads(portd("ls", "--json").stdout) if e.get("server")}


def kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def pss(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])  # utime, stime


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")


def tree(root):
    """root and all its descendants, from the parent pids in /proc."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def get(port, timeout=30):
    """One GET over a fresh connection; the status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split()[1]) if head.startswith(b"HTTP/") else 0


def until_200(port, deadline_s=30):
    """Connects every 1 ms until the port accepts, then GETs: the status."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            return get(port)
        except (ConnectionRefusedError, ConnectionResetError):
            time.sleep(0.001)
    raise SystemExit(f"nothing answered on port {port}")


def stop_proc(p):
    p.kill()
    p.wait()


def bare_port():
    """The fixture started bare, binding PORT: exec to the first 200, ms."""
    env = dict(os.environ, PORT=str(BARE_PORT))
    t = time.perf_counter()
    p = subprocess.Popen([PYTHON, FIXTURE], env=env)
    try:
        assert until_200(BARE_PORT) == 200
        return (time.perf_counter() - t) * 1e3
    finally:
        stop_proc(p)


def bare_fd():
    """The fixture started bare on a socket it inherits as fd 3 (as under
    portd): exec to the first 200, ms."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", BARE_FD_PORT))
    ls.listen(128)
    fd = ls.fileno()
    env = dict(os.environ, LISTEN_FDS="1")
    env.pop("PORT", None)
    t = time.perf_counter()
    # Python's own descriptors are not inherited (PEP 446): only fd 3 is.
    p = subprocess.Popen([PYTHON, FIXTURE], env=env, close_fds=False,
                         preexec_fn=lambda: os.dup2(fd, 3) if fd != 3 else os.set_inheritable(3, True))
    try:
        assert get(BARE_FD_PORT) == 200
        return (time.perf_counter() - t) * 1e3
    finally:
        stop_proc(p)
        ls.close()


def bare_http_server():
    """`python3 -m http.server` started bare: exec to the first 200, ms."""
    t = time.perf_counter()
    p = subprocess.Popen([PYTHON, "-m", "http.server", str(BARE_HTTP_PORT), "--bind",
                          "127.0.0.1", "--directory", os.path.join(WORK, "www")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert until_200(BARE_HTTP_PORT) == 200
        return (time.perf_counter() - t) * 1e3
    finally:
        stop_proc(p)


def stats(values):
    return max(values), med(values), sum(values)


def mb(k):
    return k / 1024


# --- 1. cost while sleeping ------------------------------------------------
for i in range(N):
    portd("add", f"p{i}", "--on-demand", "--fd", "--idle-timeout", "1h", "--",
          PYTHON, FIXTURE)
start_all_ms = timed_portd("start", "--all")
time.sleep(1)
srv = servers()
sleepers = {}
for i in range(N):
    s = srv[f"p{i}"]["server"]
    assert s["state"] == "sleeping", (f"p{i}", s)
    pid = s["supervisor_pid"]
    assert b"__serve" in cmdline(pid), cmdline(pid)
    assert tree(pid) == [pid], f"p{i}: a sleeping supervisor has no children"
    sleepers[f"p{i}"] = pid
pids = list(sleepers.values())
t0 = {p: ticks(p) for p in pids}
mem = {k: [kb(p, k) for p in pids] for k in ("VmRSS", "RssAnon", "RssFile")}
mem["Pss"] = [pss(p) for p in pids]
threads = [kb(p, "Threads") for p in pids]
time.sleep(10)
cpu = [ticks(p) - t0[p] for p in pids]
mem_after = [kb(p, "VmRSS") for p in pids]
print(f"1. {N} sleeping supervisors (start --all took {start_all_ms:.0f} ms; "
      f"{med(threads):.0f} threads each)")
print(f"   CPU ticks over 10 s: sum {sum(cpu)}, max {max(cpu)}; VmRSS max after the 10 s "
      f"{max(mem_after)} kB")
for k, v in mem.items():
    hi, m, s = stats(v)
    print(f"   {k:<8} max {hi:>6} kB  median {m:>7.0f} kB  sum {mb(s):7.1f} MB")

# --- 2. first request to a sleeping project vs the server's own startup ----
ports = {e["project"]: e["port"] for e in json.loads(portd("ls", "--json").stdout)}
bare, bare_fds, first = [], [], []
for i in range(SAMPLES):  # interleaved, so that noise hits all three alike
    bare.append(bare_port())
    time.sleep(0.2)
    bare_fds.append(bare_fd())
    time.sleep(0.2)
    t = time.perf_counter()
    assert get(ports[f"p{i}"]) == 200
    first.append((time.perf_counter() - t) * 1e3)
    time.sleep(0.2)
print(f"2. first GET, median of {SAMPLES}: bare (binds PORT) {med(bare):.1f} ms, "
      f"bare (fd 3) {med(bare_fds):.1f} ms, sleeping project {med(first):.1f} ms")
print(f"   sleeping project, min/max: {min(first):.1f}/{max(first):.1f} ms; "
      f"bare min/max {min(bare):.1f}/{max(bare):.1f} ms")

# --- 3. Knowledge Manager: 10 in use + 40 sleeping vs 50 running -----------
time.sleep(1)


def role(pid):
    argv = cmdline(pid)
    return argv[1].decode() if len(argv) > 1 and argv[1].startswith(b"__") else "server"


def footprint(projects, roles=None):
    """Sum of VmRSS and Pss (kB) over each project's supervisor tree; the
    number of processes. `roles` collects VmRSS by role (`__serve`,
    `__supervise`, `server`)."""
    srv = servers()
    rss = ps = n = 0
    for name in projects:
        for p in tree(srv[name]["server"]["supervisor_pid"]):
            try:
                r = kb(p, "VmRSS")
                rss += r
                ps += pss(p)
                n += 1
                if roles is not None:
                    roles.setdefault(role(p), []).append(
                        (r, kb(p, "RssAnon"), kb(p, "RssFile")))
            except OSError:
                pass
    return rss, ps, n


srv = servers()
in_use = [f"p{i}" for i in range(IN_USE)]
asleep = [f"p{i}" for i in range(IN_USE, N)]
assert all(srv[p]["server"]["state"] == "running" for p in in_use), "the 10 in use run"
assert all(srv[p]["server"]["state"] == "sleeping" for p in asleep)
od_use, od_sleep = footprint(in_use), footprint(asleep)
od_rss, od_pss = od_use[0] + od_sleep[0], od_use[1] + od_sleep[1]
per_server = od_use[0] / IN_USE
stop_ms = timed_portd("stop", "--all")
for i in range(N):
    portd("add", f"q{i}", "--", PYTHON, FIXTURE)
t = time.perf_counter()
portd("start", *[f"q{i}" for i in range(N)])
start50_ms = (time.perf_counter() - t) * 1e3
qports = {e["project"]: e["port"] for e in json.loads(portd("ls", "--json").stdout)}
for i in range(N):
    assert get(qports[f"q{i}"]) == 200
time.sleep(1)
roles = {}
all_rss, all_pss, all_n = footprint([f"q{i}" for i in range(N)], roles)
saved = 1 - od_rss / all_rss
saved_pss = 1 - od_pss / all_pss
print(f"3. on demand, {IN_USE} in use + {N - IN_USE} sleeping: RSS {mb(od_rss):.1f} MB "
      f"({mb(od_use[0]):.1f} MB in use, {od_use[2]} processes; {mb(od_sleep[0]):.1f} MB "
      f"asleep, {od_sleep[2]}), Pss {mb(od_pss):.1f} MB")
print(f"   all {N} running: RSS {mb(all_rss):.1f} MB ({all_n} processes; "
      f"{mb(all_rss) / N:.1f} MB a server with its 2 supervisors), Pss {mb(all_pss):.1f} MB")
print("   a running server, median VmRSS (RssAnon + RssFile) by process: " + ", ".join(
    f"{k} {med(r[0] for r in v):.0f} ({med(r[1] for r in v):.0f} + {med(r[2] for r in v):.0f}) kB"
    for k, v in sorted(roles.items())))
print(f"   saved: {saved:.1%} of RSS, {saved_pss:.1%} of Pss; "
      f"`stop --all` of 50: {stop_ms:.0f} ms; `start` of 50 cold: {start50_ms:.0f} ms")

# --- 4. portd start: running, cold -----------------------------------------
portd("stop", *[f"q{i}" for i in range(1, N)])
running = [timed_portd("start", "q0") for _ in range(20)]
portd("add", "h", "--health", "tcp", "--", PYTHON, "-m", "http.server", "{port}",
      "--bind", "127.0.0.1", "--directory", os.path.join(WORK, "www"))
cold, bare_http = [], []
for _ in range(SAMPLES):
    cold.append(timed_portd("start", "h"))
    portd("stop", "h")
    time.sleep(0.2)
    bare_http.append(bare_http_server())
    time.sleep(0.2)
portd("stop", "--all")
print(f"4. portd start, running: median {med(running):.1f} ms (of 20); cold http.server: "
      f"median {med(cold):.0f} ms (of {SAMPLES}); bare http.server to its first 200: "
      f"{med(bare_http):.0f} ms")

# --- summary ----------------------------------------------------------------
def yes(ok):
    return "yes" if ok else "NO"


rss_hi = max(mem["VmRSS"])
added = med(first) - med(bare)
added_fd = med(first) - med(bare_fds)
rows = [
    ("1 sleeping __serve: CPU ticks in 10 s (max)", f"{max(cpu)} (sum of {N}: {sum(cpu)})",
     "0", yes(max(cpu) == 0)),
    ("1 sleeping __serve: VmRSS max/median", f"{rss_hi} / {med(mem['VmRSS']):.0f} kB",
     "<= 3 MB each", yes(rss_hi <= 3072)),
    ("1   RssAnon / RssFile / Pss (max)",
     f"{max(mem['RssAnon'])} / {max(mem['RssFile'])} / {max(mem['Pss'])} kB", "", ""),
    (f"1   sum over {N} (VmRSS / Pss)", f"{mb(sum(mem['VmRSS'])):.1f} / "
     f"{mb(sum(mem['Pss'])):.1f} MB", "", ""),
    ("2 first GET to a sleeping project (median)", f"{med(first):.1f} ms", "", ""),
    ("2   the server started bare (median)", f"{med(bare):.1f} ms (fd 3: {med(bare_fds):.1f})",
     "", ""),
    ("2   added by portd (vs fd 3 / vs PORT)", f"{added_fd:+.1f} / {added:+.1f} ms",
     "<= +50 ms", yes(max(added, added_fd) <= 50)),
    (f"3 RSS, {IN_USE} in use + {N - IN_USE} asleep", f"{mb(od_rss):.1f} MB "
     f"(Pss {mb(od_pss):.1f})", "", ""),
    (f"3 RSS, all {N} running", f"{mb(all_rss):.1f} MB (Pss {mb(all_pss):.1f})", "", ""),
    ("3   a running server: __serve/__supervise/server",
     " / ".join(f"{med(r[0] for r in roles.get(k, [(0,)])):.0f}"
                for k in ("__serve", "__supervise", "server"))
     + " kB", "", ""),
    ("3   memory saved", f"{saved:.1%} (Pss {saved_pss:.1%})", "70-80 % less",
     yes(saved >= 0.70)),
    ("4 portd start, running (median of 20)", f"{med(running):.1f} ms", "", ""),
    (f"4 portd start, cold http.server (median of {SAMPLES})",
     f"{med(cold):.0f} ms (bare {med(bare_http):.0f})", "", ""),
]
print()
print(f"{'figure':<50}{'measured':<30}{'target':<15}met")
for r in rows:
    print(f"{r[0]:<50}{r[1]:<30}{r[2]:<15}{r[3]}")
PY
