//! Reading one script of a `package.json`.
//!
//! `npm run dev` runs whatever `scripts.dev` says; to know whether that is a
//! dev server that ignores `PORT`, [`crate::inject`] reads it here. Only a
//! regular file of at most [`MAX_SIZE`] bytes is read, and every way of not
//! finding the script is an [`Error`] value, never a panic.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest `package.json` read (1 MiB): real ones are a few KB, and a
/// FIFO or a huge file in its place must not hang or exhaust portd.
pub const MAX_SIZE: u64 = 1 << 20;

/// Why a script could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// There is no `package.json` in the directory.
    NoFile(PathBuf),
    /// `package.json` is not a regular file (a directory, a FIFO, a device).
    NotAFile(PathBuf),
    /// It is larger than [`MAX_SIZE`].
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// It could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        message: String,
    },
    /// It is not valid JSON, or not a JSON object.
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and column where known.
        message: String,
    },
    /// It has no script of that name.
    NoScript {
        /// The file.
        path: PathBuf,
        /// The script asked for.
        name: String,
    },
    /// `scripts.NAME` is there but is not a string.
    NotAString {
        /// The file.
        path: PathBuf,
        /// The script asked for.
        name: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoFile(p) => write!(f, "no `{}`", p.display()),
            Error::NotAFile(p) => write!(f, "`{}` is not a regular file", p.display()),
            Error::TooLarge { path, size } => write!(
                f,
                "`{}` has {size} bytes, more than the {MAX_SIZE} portd reads",
                path.display()
            ),
            Error::Io { path, message } => {
                write!(f, "cannot read `{}`: {message}", path.display())
            }
            Error::Invalid { path, message } => {
                write!(f, "`{}` is not valid: {message}", path.display())
            }
            Error::NoScript { path, name } => {
                write!(f, "`{}` has no script `{name}`", path.display())
            }
            Error::NotAString { path, name } => {
                write!(f, "script `{name}` of `{}` is not a string", path.display())
            }
        }
    }
}

impl std::error::Error for Error {}

/// The text of `scripts.NAME` in `DIR/package.json`.
pub fn script(dir: &Path, name: &str) -> Result<String, Error> {
    let path = dir.join("package.json");
    let text = read_capped(&path)?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid { path: path.clone(), message: e.to_string() })?;
    let Some(top) = value.as_object() else {
        return Err(Error::Invalid { path, message: "it is not a JSON object".to_owned() });
    };
    let no_script = |path: PathBuf| Error::NoScript { path, name: name.to_owned() };
    let Some(scripts) = top.get("scripts") else {
        return Err(no_script(path));
    };
    let Some(scripts) = scripts.as_object() else {
        return Err(Error::Invalid { path, message: "`scripts` is not an object".to_owned() });
    };
    match scripts.get(name) {
        None => Err(no_script(path)),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Error::NotAString { path, name: name.to_owned() }),
    }
}

/// Reads a regular file of at most [`MAX_SIZE`] bytes as UTF-8. The type is
/// checked before opening (opening a FIFO would wait for a writer) and again
/// on the opened file, whose size is the one that counts; reading stops at
/// the cap whatever the size said.
fn read_capped(path: &Path) -> Result<String, Error> {
    let io = |e: std::io::Error| Error::Io { path: path.to_owned(), message: e.to_string() };
    let not_found = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NoFile(path.to_owned())
        } else {
            io(e)
        }
    };
    if !std::fs::metadata(path).map_err(not_found)?.is_file() {
        return Err(Error::NotAFile(path.to_owned()));
    }
    let file = File::open(path).map_err(not_found)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(Error::NotAFile(path.to_owned()));
    }
    if meta.len() > MAX_SIZE {
        return Err(Error::TooLarge { path: path.to_owned(), size: meta.len() });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_SIZE + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_SIZE {
        return Err(Error::TooLarge { path: path.to_owned(), size: bytes.len() as u64 });
    }
    String::from_utf8(bytes).map_err(|e| Error::Invalid {
        path: path.to_owned(),
        message: format!("not UTF-8 (at byte {})", e.utf8_error().valid_up_to()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(json: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("package.json"), json).unwrap();
        d
    }

    #[test]
    fn a_script_is_read_by_name() {
        let d = dir_with(r#"{"scripts":{"dev":"vite --open","build":"vite build"}}"#);
        assert_eq!(script(d.path(), "dev").unwrap(), "vite --open");
        assert_eq!(script(d.path(), "build").unwrap(), "vite build");
    }

    #[test]
    fn a_missing_file_script_or_scripts_table_is_an_error_naming_it() {
        let empty = tempfile::tempdir().unwrap();
        let e = script(empty.path(), "dev").unwrap_err();
        assert!(matches!(e, Error::NoFile(_)), "{e:?}");
        assert!(e.to_string().contains("package.json"), "{e}");

        let d = dir_with(r#"{"scripts":{"build":"vite build"}}"#);
        let e = script(d.path(), "dev").unwrap_err();
        assert!(matches!(&e, Error::NoScript { name, .. } if name == "dev"), "{e:?}");
        assert!(e.to_string().contains("no script `dev`"), "{e}");

        let d = dir_with(r#"{"name":"x"}"#);
        assert!(matches!(script(d.path(), "dev"), Err(Error::NoScript { .. })));
    }

    #[test]
    fn bad_json_and_wrong_shapes_are_errors_not_panics() {
        for (json, want) in [
            ("{", "Invalid"),
            ("", "Invalid"),
            ("[1,2]", "Invalid"),
            (r#"{"scripts":"vite"}"#, "Invalid"),
            (r#"{"scripts":{"dev":["vite"]}}"#, "NotAString"),
            (r#"{"scripts":{"dev":null}}"#, "NotAString"),
        ] {
            let d = dir_with(json);
            let e = script(d.path(), "dev").unwrap_err();
            assert!(format!("{e:?}").starts_with(want), "{json}: {e:?}");
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("package.json"), b"{\"scripts\":{\"dev\":\"\xff\"}}").unwrap();
        assert!(matches!(script(d.path(), "dev"), Err(Error::Invalid { .. })));
    }

    #[test]
    fn only_a_regular_file_under_the_cap_is_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("package.json")).unwrap();
        assert!(matches!(script(d.path(), "dev"), Err(Error::NotAFile(_))));

        let d = tempfile::tempdir().unwrap();
        let mut big = String::from(r#"{"scripts":{"dev":"vite"},"pad":""#);
        big.push_str(&"x".repeat(MAX_SIZE as usize));
        big.push_str("\"}");
        std::fs::write(d.path().join("package.json"), big).unwrap();
        let e = script(d.path(), "dev").unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
        assert!(e.to_string().contains("more than the 1048576"), "{e}");
    }

    #[test]
    fn a_fifo_in_its_place_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("package.json");
        let made = std::process::Command::new("mkfifo").arg(&p).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo (coreutils) is needed");
        // No writer ever comes: opening it would block this test forever.
        assert!(matches!(script(d.path(), "dev"), Err(Error::NotAFile(_))));
    }
}
