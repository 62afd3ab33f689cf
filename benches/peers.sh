#!/usr/bin/env bash
# portd beside the tools it replaces, in one run (medians):
#   A. 50 ports in one process: Python portpicker, npm get-port, and portd's
#      library (existing registry opened, 50 new projects in one durable
#      transaction, closed). The Rust portpicker crate is in `cargo bench`
#      ("50 ports in one process").
#   B. 50 separate CLI calls: portd get ×50 (new names) beside
#      `python -c 'portpicker.pick_unused_port()'` ×50 and `node get-port` ×50.
# Installs Python portpicker into target/peers/venv and get-port into
# target/peers/node. None of the peers persists anything or keeps ports
# unique across processes. Run: bash benches/peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
P="$PWD/target/peers"
mkdir -p "$P/node"
[ -x "$P/venv/bin/python" ] || python3 -m venv "$P/venv"
"$P/venv/bin/python" -c 'import portpicker' 2>/dev/null || "$P/venv/bin/pip" install -q portpicker
if [ ! -d "$P/node/node_modules/get-port" ]; then
  (cd "$P/node" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install -s get-port >/dev/null)
fi
cat > "$P/node/fifty.mjs" <<'JS'
import getPort from 'get-port';
const ms = [];
for (let r = 0; r < 20; r++) {
  const t = process.hrtime.bigint();
  for (let i = 0; i < 50; i++) await getPort();
  ms.push(Number(process.hrtime.bigint() - t) / 1e6);
}
ms.sort((a, b) => a - b);
console.log(ms[10].toFixed(3));
JS
cat > "$P/node/one.mjs" <<'JS'
import getPort from 'get-port';
console.log(await getPort());
JS
cargo build --release -q -p portd
cargo build --release -q -p portd-benches --example inproc50
BIN="$PWD/target/release/portd"
INPROC="$PWD/target/release/examples/inproc50"
echo "machine: $(nproc) cores, $(uname -r); date: $(date -u +%F); $("$BIN" --version); node $(node --version)"

BIN="$BIN" INPROC="$INPROC" P="$P" python3 - <<'PY'
import os, statistics, subprocess, tempfile, time
BIN, INPROC, P = os.environ["BIN"], os.environ["INPROC"], os.environ["P"]
py, node = f"{P}/venv/bin/python", "node"
med = statistics.median
portd_in = float(subprocess.check_output([INPROC, "50"], text=True).split("median_ms=")[1].split()[0])
pp_in = float(subprocess.check_output([py, "-c", """
import portpicker, time, statistics
ms = []
for r in range(20):
    t = time.perf_counter()
    ports = [portpicker.pick_unused_port() for _ in range(50)]
    ms.append((time.perf_counter() - t) * 1e3)
    for p in ports: portpicker.return_port(p)
print(statistics.median(ms))
"""], text=True))
gp_in = float(subprocess.check_output([node, f"{P}/node/fifty.mjs"], text=True, cwd=f"{P}/node"))
print("\nA. 50 ports in one process (median)")
print(f"  {'portd library get_many (durable)':<40}{portd_in:>9.2f} ms")
for name, v in [("Python portpicker", pp_in), ("npm get-port", gp_in)]:
    print(f"  {name:<40}{v:>9.2f} ms   {v/portd_in:.1f}x portd")

def fifty(cmd_for, reps=5):
    out = []
    for r in range(reps):
        h = tempfile.mkdtemp()
        env = dict(os.environ, PORTD_HOME=h)
        t = time.perf_counter()
        for i in range(50):
            subprocess.run(cmd_for(i, r), env=env, stdout=subprocess.DEVNULL, check=True, cwd=f"{P}/node")
        out.append((time.perf_counter() - t) * 1e3)
    return med(out)
portd_cli = fifty(lambda i, r: [BIN, "get", f"p{r}-{i}"])
pp_cli = fifty(lambda i, r: [py, "-c", "import portpicker; print(portpicker.pick_unused_port())"])
gp_cli = fifty(lambda i, r: [node, "one.mjs"])
print("\nB. 50 separate CLI calls (median of 5)")
print(f"  {'portd get (new names, durable)':<40}{portd_cli:>9.1f} ms")
for name, v in [("Python portpicker", pp_cli), ("npm get-port", gp_cli)]:
    print(f"  {name:<40}{v:>9.1f} ms   {v/portd_cli:.1f}x portd")
PY
