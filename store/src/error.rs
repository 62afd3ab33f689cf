//! The registry's one error type.
//!
//! Every error is a [`kind`](Error::kind) (which the CLI maps to an exit
//! code), a one-line message that names the problem, and an optional hint
//! that names the fix. `Display` prints the message and, when there is one,
//! `; hint: …` on the same line. An error built from an I/O or storage
//! error keeps it as its [`source`](std::error::Error::source) (the
//! message already quotes its text), so a program can inspect, say, the
//! [`std::io::ErrorKind`]; no storage-engine type appears in the API.

use std::fmt;
use std::sync::Arc;

/// What went wrong, coarsely: one exit code each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input: a name, a port, a range that does not exist, a missing flag.
    Usage,
    /// Every eligible port is held by an active lease or bound.
    NoFreePort,
    /// The project has no entry.
    UnknownProject,
    /// The port is held by another project or bound by a process.
    PortBusy,
    /// Another process kept the registry locked past `lock_timeout`.
    RegistryBusy,
    /// The registry file is damaged, or written by a newer portd.
    Damaged,
    /// The configuration (file or environment) is invalid.
    Config,
    /// The registry location is unsafe or not ours: refused.
    Permission,
    /// A command to run was not found (a shell's exit 127).
    CommandNotFound,
    /// A command to run was found but cannot be executed: not executable,
    /// a directory, a bad interpreter line (a shell's exit 126).
    CommandNotExecutable,
    /// Anything else (I/O and the like).
    Other,
}

/// An error of the registry.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    /// The file system refused a write (permissions, read-only mount).
    unwritable: bool,
    /// The I/O or storage error it came from, shared by clones.
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Equal when kind, message and hint are (the source is not compared).
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.message == other.message
            && self.hint == other.hint
            && self.unwritable == other.unwritable
    }
}

impl Eq for Error {}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorKind {
    /// The exit code of this kind (the table in `portd --help` and the
    /// README).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage => 2,
            ErrorKind::NoFreePort => 3,
            ErrorKind::UnknownProject => 4,
            ErrorKind::PortBusy => 5,
            ErrorKind::RegistryBusy => 6,
            ErrorKind::Damaged => 7,
            ErrorKind::Config => 8,
            ErrorKind::Permission => 9,
            ErrorKind::CommandNotFound => 127,
            ErrorKind::CommandNotExecutable => 126,
            _ => 1,
        }
    }
}

impl Error {
    /// The exit code of its kind.
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }

    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: one_line(message.into()),
            hint: None,
            unwritable: false,
            source: None,
        }
    }

    /// Keeps `source` as the underlying error.
    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Adds the hint line.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(one_line(hint.into()));
        self
    }

    /// Whether the file system refused access (EACCES, EROFS), as opposed
    /// to portd refusing (a foreign entry, an unsafe location).
    pub(crate) fn is_unwritable(&self) -> bool {
        self.unwritable
    }

    /// The kind, for exit codes.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to do about it, when known.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// A usage error.
    pub fn usage(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, m)
    }
    pub(crate) fn config(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, m)
    }
    pub(crate) fn damaged(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Damaged, m)
    }
    pub(crate) fn permission(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permission, m)
    }

    /// An I/O error while doing `what`.
    pub(crate) fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                ErrorKind::Permission
            }
            _ => ErrorKind::Other,
        };
        let read_only = e.kind() == std::io::ErrorKind::ReadOnlyFilesystem;
        let mut err = Self::new(kind, format!("{what}: {e}")).with_source(e);
        err.unwritable = kind == ErrorKind::Permission;
        if read_only { err.with_hint(READ_ONLY_HINT) } else { err }
    }
}

/// The fix for a registry that cannot be written.
pub(crate) const READ_ONLY_HINT: &str =
    "make the registry directory and file writable, or point `PORTD_HOME` at a writable directory";

/// Keeps a message on one line: control characters that came in with
/// user input (a newline in a config value or a variable, say) are shown
/// escaped, as `\n`.
fn one_line(s: String) -> String {
    if !s.contains(char::is_control) {
        return s;
    }
    s.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match &self.hint {
            Some(h) => write!(f, "; hint: {h}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Error {
    /// Whether the storage itself failed (damage, I/O, a commit): an open
    /// file that saw this is closed rather than used again. A refusal of
    /// the request (unknown project, busy port, usage) is not.
    pub(crate) fn storage_failed(&self) -> bool {
        matches!(self.kind, ErrorKind::Damaged | ErrorKind::Other) || self.source.is_some()
    }
}

impl From<portd_core::Panicked> for Error {
    fn from(p: portd_core::Panicked) -> Self {
        Error::new(ErrorKind::Other, p.to_string())
            .with_hint("the request may or may not have been committed: check with `portd show` (or `Registry::show`) before trying again")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_on_one_line() {
        let e = Error::usage("`1\nx` has an unknown unit").with_hint("a\r\tb");
        assert_eq!(e.message(), "`1\\nx` has an unknown unit");
        assert_eq!(e.hint(), Some("a\\r\\tb"));
        assert_eq!(Error::usage("café `ok`").message(), "café `ok`");
    }

    #[test]
    fn display_shows_the_message_and_the_hint_on_one_line() {
        let e = Error::usage("no command to run").with_hint("pass the program");
        assert_eq!(e.to_string(), "no command to run; hint: pass the program");
        assert_eq!(Error::usage("bad `x`").to_string(), "bad `x`");
    }

    #[test]
    fn an_io_error_is_kept_as_the_source() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Error::io("cannot read `f`", io);
        assert_eq!(e.message(), "cannot read `f`: gone");
        let source = e.source().expect("the io error is the source");
        let io = source.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        // Clones share it.
        assert!(e.clone().source().is_some());
        assert!(Error::usage("x").source().is_none());
    }

    #[test]
    fn a_storage_error_is_kept_as_the_source() {
        use std::error::Error as _;
        let e = crate::db::db_err(redb::Error::Corrupted("bad page".into()));
        assert_eq!(e.kind(), ErrorKind::Damaged);
        let source = e.source().expect("the redb error is the source");
        assert!(source.downcast_ref::<redb::Error>().is_some());
    }
}
