#!/usr/bin/env bash
# Fuzz smoke: runs every fuzz target for a few seconds on the stable
# toolchain (`--sanitizer none`), starting from its saved corpus, and prints
# each target's executions and seconds. libFuzzer writes the inputs it finds
# into the first corpus directory it is given, so that is a scratch
# directory: fuzz/corpus/ only changes by hand. A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the script.
#
#   PORTD_FUZZ_SECONDS   seconds per target (default 5)
#   PORTD_FUZZ_TARGETS   targets to run (default: all of them)
#
# Installs cargo-fuzz (pinned) when it is missing. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds=${PORTD_FUZZ_SECONDS:-5}
targets=${PORTD_FUZZ_TARGETS:-record_decode definition_decode server_state_decode event_decode config_parse project_name arguments http_requests registry_model}
# Without a sanitizer, -malloc_limit_mb has no malloc hooks to act on (it
# is kept for runs with one), so the record targets meter their own
# allocations (testkit/src/alloc_meter.rs). The RSS limit catches slow growth, the
# timeout a hang (the registry waits for its lock for at most 10 s).
limits=(-rss_limit_mb=512 -malloc_limit_mb=64 -timeout=30)
start=$SECONDS

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
installed=$SECONDS
# cargo fuzz has no --locked: refuse a stale fuzz/Cargo.lock here instead.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
cargo fuzz build --sanitizer none
built=$SECONDS

# The registry target's per-input registries go to $TMPDIR: memory-backed
# where possible, as they are written with a sync per commit.
base=/tmp
if [ -d /dev/shm ] && [ -w /dev/shm ]; then base=/dev/shm; fi
scratch=$(mktemp -d "$base/portd-fuzz-smoke.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

failed=()
printf '\n%-20s %12s %8s\n' target runs seconds
for t in $targets; do
  mkdir -p "$scratch/$t" "$scratch/tmp"
  extra=()
  if [ -f "fuzz/$t.dict" ]; then extra+=("-dict=fuzz/$t.dict"); fi
  # One byte per step: explore whole sequences (portd_testkit::MAX_OPS) at once
  # rather than growing the length slowly over a short run.
  if [ "$t" = registry_model ]; then extra+=(-max_len=32 -len_control=0); fi
  log="$scratch/$t.log"
  if TMPDIR="$scratch/tmp" cargo fuzz run --sanitizer none "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" "${limits[@]}" "${extra[@]}" >"$log" 2>&1; then
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
    runs=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/' <<<"$done_line")
    secs=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/' <<<"$done_line")
    printf '%-20s %12s %8s\n' "$t" "${runs:-?}" "${secs:-?}"
  else
    printf '%-20s %12s\n' "$t" FAILED
    tail -n 40 "$log" | sed 's/^/    /'
    failed+=("$t")
  fi
done

printf '\ninstall %ss, build %ss, runs %ss, total %ss\n' "$((installed - start))" \
  "$((built - installed))" "$((SECONDS - built))" "$((SECONDS - start))"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz smoke failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
