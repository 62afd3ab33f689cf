//! Health checks: `tcp`, `http:/PATH` and `cmd:COMMAND`.
