//! What the examples in `benches/examples/` share: writing their one-line
//! results (the workspace's lints keep `println!` out), reading their
//! numeric flags, and the private registry they allocate from. The
//! benchmarks themselves live in `benches/`.

use portd_store::{Config, Ranges, Registry};
use std::path::Path;

/// Writes one line to stdout.
pub fn out(line: &str) {
    std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n").as_bytes())
        .expect("stdout");
}

/// Writes one line to stderr.
pub fn err(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
}

/// The value after `flag` in `args`, if any.
pub fn value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// The number after `flag`, `default` when `flag` is absent; an error line
/// when it is not a number.
pub fn number(args: &[String], flag: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == flag) {
        Some(_) => value(args, flag)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("error: `{flag}` needs a positive number")),
        None => Ok(default),
    }
}

/// A registry in `dir` whose only range, 20000–59999, is far larger than
/// any count an example asks for, so that a figure is allocation, not
/// exhaustion.
pub fn registry(dir: &Path) -> Registry {
    let ranges = Ranges::from_raw(&[("bench".into(), 20000, 59999, true)]).expect("range");
    Registry::open(dir.join("portd"), Config { ranges, ..Config::default() }).expect("open")
}
