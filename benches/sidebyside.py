"""Two portd binaries side by side: `--version`, `get NEW` and `get EXISTING`,
5 rounds x 30 calls each, alternating the binaries per round, each round in a
fresh PORTD_HOME; medians and ratios to `--version`.

    python3 benches/sidebyside.py OLD_PORTD NEW_PORTD
"""
import os, statistics, subprocess, tempfile, time, sys
bins = {"old": sys.argv[1], "new": sys.argv[2]}
def t(cmd, env):
    s = time.perf_counter(); subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True); return time.perf_counter() - s
res = {(b, m): [] for b in bins for m in ("version", "new", "existing")}
for rnd in range(5):
    for b, path in bins.items():
        home = tempfile.mkdtemp()
        env = dict(os.environ, PORTD_HOME=home, XDG_CONFIG_HOME=home)
        for i in range(30):
            res[(b, "version")].append(t([path, "--version"], env))
            res[(b, "new")].append(t([path, "get", f"p{rnd}-{i}"], env))
            res[(b, "existing")].append(t([path, "get", f"p{rnd}-0"], env))
for b in bins:
    v, n, e = (statistics.median(res[(b, m)]) * 1000 for m in ("version", "new", "existing"))
    print(f"{b}: --version {v:.2f} ms  get NEW {n:.2f} ms ({n/v:.2f}x)  get EXISTING {e:.2f} ms ({e/v:.2f}x)")
