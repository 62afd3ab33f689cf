#!/usr/bin/env bash
# A sleeping supervisor's cost, measured from outside: the `sleeper`
# example (benches/examples/sleeper.rs: a registry opened as portd does, an
# acceptor and a waker thread blocked, the main thread waiting for signals)
# without and with `trim_resident()`. Prints VmRSS, RssAnon and RssFile
# one second after it is asleep, and the CPU ticks it used over the next
# SECONDS (default 10). Run: bash benches/sleeper.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SECONDS_ASLEEP:-10}
cargo build --release -q -p portd-benches --example sleeper
BIN="$PWD/target/release/examples/sleeper"
home=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$home"' EXIT
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$2/status"; }
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
echo "machine: $(nproc) cores, $(uname -r); date: $(date -u +%F)"
printf '%-8s %10s %10s %10s %12s\n' mode VmRSS_kB RssAnon_kB RssFile_kB "cpu_ticks/${seconds}s"
for mode in --no-trim --trim; do
  coproc SLEEPER { exec "$BIN" "$home" "$mode"; }
  pid=$SLEEPER_PID
  while read -r line <&"${SLEEPER[0]}"; do [ "$line" = ready ] && break; done
  sleep 1
  rss=$(kb VmRSS "$pid") anon=$(kb RssAnon "$pid") file=$(kb RssFile "$pid")
  t0=$(ticks "$pid")
  sleep "$seconds"
  t1=$(ticks "$pid")
  printf '%-8s %10s %10s %10s %12s\n' "${mode#--}" "$rss" "$anon" "$file" "$((t1 - t0))"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
done
