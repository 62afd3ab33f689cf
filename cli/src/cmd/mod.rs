//! One module per command (or per pair of closely related commands).

pub mod check;
pub mod completions;
pub mod config;
pub mod doctor;
pub mod get;
pub mod ls;
pub mod maintain;
pub mod release;
pub mod run;

use crate::args::ProjectArg;
use portd_store::{Error, ErrorKind, Project};

/// The project an argument names: `--dir`, a path-like name, a name, or
/// the current directory.
pub fn project(arg: &ProjectArg) -> Result<Project, Error> {
    if let Some(d) = &arg.dir {
        return Project::dir(d);
    }
    match arg.name.as_deref() {
        Some(n) => project_of(n),
        None => Project::current_dir(),
    }
}

/// A name, or a directory when it looks like a path (`.`, `./web`, `/srv/app`).
pub fn project_of(name: &str) -> Result<Project, Error> {
    if name.contains('/') || name == "." || name == ".." {
        Project::dir(std::path::Path::new(name))
    } else {
        Project::name(name)
    }
}

/// A usage error.
/// The note printed when a project's port changed: with `--move`, because
/// its old port was bound; otherwise because a pin or range asked for it.
pub fn moved(project: &Project, from: u16, to: u16, because_bound: bool) -> String {
    let why = if because_bound { " (bound by another process)" } else { "" };
    format!("moved `{}` from port {from}{why} to {to}", project.display())
}

pub fn usage(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Usage, msg)
}

/// Milliseconds since the epoch as RFC 3339 UTC (no time crate needed).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A short "how long ago" for tables.
pub fn ago(ms: u64) -> String {
    let s = portd_store::age(ms).as_secs();
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_764_028_800_123), "2025-11-25T00:00:00Z");
    }
}
