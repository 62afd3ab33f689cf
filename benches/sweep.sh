# Shared by the benchmark scripts (sourced, from the repository root).

# sweep DIR: kills (SIGKILL) every process whose command line names DIR,
# the run's temporary directory: whatever a failed run left behind.
sweep() {
  local p
  for p in /proc/[0-9]*; do
    if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$1"; then
      kill -9 "${p#/proc/}" 2>/dev/null || true
    fi
  done
}
