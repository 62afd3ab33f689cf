//! A project: what a port belongs to, by name or by directory.

use crate::error::{Error, Result};
use crate::record::{self, display_name};
use portd_core::validate_name;
use std::path::Path;

/// A project: a validated name, or a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Project(String);

impl Project {
    /// A named project (`myapp`, `myapp:api`).
    pub fn name(name: &str) -> Result<Project> {
        validate_name(name).map_err(|e| {
            Error::usage(e.to_string()).with_hint("project names look like `myapp` or `myapp:api`")
        })?;
        Ok(Project(name.to_owned()))
    }

    /// A directory project, keyed by its canonical absolute path.
    pub fn dir(path: &Path) -> Result<Project> {
        let canon = std::fs::canonicalize(path)
            .map_err(|e| Error::usage(format!("cannot use directory `{}`: {e}", path.display())))?;
        if !canon.is_dir() {
            return Err(Error::usage(format!("`{}` is not a directory", path.display())));
        }
        let s = canon.to_str().ok_or_else(|| {
            Error::usage(format!("directory `{}` is not valid UTF-8", path.display()))
        })?;
        Ok(Project(s.to_owned()))
    }

    /// The project of the current directory: its git work tree's root, or
    /// the directory itself.
    pub fn current_dir() -> Result<Project> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::usage(format!("cannot read the current directory: {e}")))?;
        let root = cwd.ancestors().find(|d| d.join(".git").exists()).unwrap_or(&cwd);
        Project::dir(root)
    }

    /// The private port of named project `self`'s relay (on-demand
    /// servers that bind their own port): the entry `NAME@relay`.
    pub fn relay(&self) -> Project {
        Project(format!("{}{}", self.0, record::RELAY_SUFFIX))
    }

    /// Parses a stored key (a name, an absolute path, or a relay's key).
    pub fn from_key(key: &str) -> Result<Project> {
        if (key.starts_with('/') || key.ends_with(record::RELAY_SUFFIX)) && record::valid_key(key) {
            Ok(Project(key.to_owned()))
        } else {
            Project::name(key)
        }
    }

    /// The key stored in the registry.
    pub fn key(&self) -> &str {
        &self.0
    }

    /// How it is shown: a name, or a directory's base name.
    pub fn display(&self) -> &str {
        display_name(&self.0)
    }
}

/// What a name may refer to: see [`Registry::matches`](crate::Registry::matches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Matches {
    /// The named project of that name, if it has an entry (or the directory
    /// project, when the name is its whole path).
    pub named: Option<Project>,
    /// The other directory projects whose path ends with the name.
    pub directories: Vec<Project>,
}
