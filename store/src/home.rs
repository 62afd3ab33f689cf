//! Where the registry lives, and whether that place is safe to use.
//!
//! `$PORTD_HOME`, else `$XDG_STATE_HOME/portd`, else `~/.local/state/portd`.
//! The directory is created 0700 and must be owned by the current user and
//! writable by nobody else; the registry file must not be a symlink. An
//! unsafe location is refused ([`ErrorKind::Permission`](crate::ErrorKind)),
//! never "fixed" behind the user's back.

use crate::error::{Error, Result};
use portd_core::sys;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The registry file's name inside the home directory.
pub const REGISTRY_FILE: &str = "registry.redb";
/// The lock file's name inside the home directory.
pub const LOCK_FILE: &str = "registry.lock";

/// Resolves the registry directory from the environment.
pub fn default_home(get: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf> {
    if let Some(h) = get("PORTD_HOME").filter(|h| !h.is_empty()) {
        return absolute("PORTD_HOME", &h);
    }
    if let Some(x) = get("XDG_STATE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Ok(Path::new(&x).join("portd"));
    }
    match get("HOME").filter(|h| Path::new(h).is_absolute()) {
        Some(h) => Ok(Path::new(&h).join(".local/state/portd")),
        None => Err(Error::config("cannot locate the registry: `HOME` is not set")
            .with_hint("set `PORTD_HOME` to a directory for the registry")),
    }
}

/// A path named by an environment variable (`PORTD_HOME`, `PORTD_CONFIG`)
/// must be absolute: a relative one would name another file in every
/// directory the user `cd`s to.
pub(crate) fn absolute(var: &str, p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    Err(Error::config(format!("invalid environment variable `{var}`: `{p}` is not an absolute path"))
        .with_hint(format!(
            "give the full path (e.g. `{var}=$PWD/{}`), so that it does not depend on the current directory",
            p.trim_start_matches("./")
        )))
}

/// The mode of the files portd creates: private, or shared with the
/// directory's group in a shared registry.
pub(crate) fn file_mode(shared: bool) -> u32 {
    if shared { 0o660 } else { 0o600 }
}

/// Gives a file portd just created its mode, whatever the umask.
pub(crate) fn set_mode(file: &fs::File, shared: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if shared { file.set_permissions(fs::Permissions::from_mode(file_mode(true))) } else { Ok(()) }
}

/// Creates the directory if it is missing (0700; a shared one 2770, so
/// that files inherit its group), then checks it.
pub fn prepare(dir: &Path, shared: bool) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("cannot create `{}`", parent.display()), e))?;
            }
            match fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) if shared => {
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o2770))
                        .map_err(|e| Error::io(format!("cannot share `{}`", dir.display()), e))?;
                }
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("cannot create registry directory `{}`", dir.display()),
                        e,
                    ));
                }
            }
        }
        Err(e) => return Err(Error::io(format!("cannot inspect `{}`", dir.display()), e)),
    }
    check_dir(dir, shared)
}

/// The mode bits that make a location unsafe: anyone else's write access,
/// or, in a shared registry, write access for users outside its group.
pub(crate) fn unsafe_bits(shared: bool) -> u32 {
    if shared { 0o002 } else { 0o022 }
}

/// Refuses a registry directory that is not a directory, not ours (unless
/// shared), or writable by others (by other groups, when shared).
pub fn check_dir(dir: &Path, shared: bool) -> Result<()> {
    let md = fs::metadata(dir).map_err(|e| {
        Error::io(format!("cannot inspect registry directory `{}`", dir.display()), e)
    })?;
    if !md.is_dir() {
        return Err(Error::permission(format!(
            "registry directory `{}` is not a directory",
            dir.display()
        ))
        .with_hint("move that file away, or point `PORTD_HOME` at a directory"));
    }
    let me = sys::euid();
    if md.uid() != me && !shared {
        return Err(Error::permission(format!(
            "registry directory `{}` is owned by uid {}, not by you (uid {me})",
            dir.display(),
            md.uid()
        ))
        .with_hint(
            "use your own directory (set `PORTD_HOME`), or opt in to a shared registry with `PORTD_SHARED=1`",
        ));
    }
    if md.mode() & unsafe_bits(shared) != 0 {
        return Err(Error::permission(format!(
            "registry directory `{}` is writable by other users (mode {:o})",
            dir.display(),
            md.mode() & 0o7777
        ))
        .with_hint(if shared {
            format!("run `chmod o-w {}`", dir.display())
        } else if md.mode() & 0o002 == 0 {
            format!(
                "run `chmod 700 {}`, or opt in to a registry shared by its group with `PORTD_SHARED=1`",
                dir.display()
            )
        } else {
            format!("run `chmod 700 {}`", dir.display())
        }));
    }
    Ok(())
}

/// Refuses a registry file that is a symlink, not ours, or writable by others.
/// A missing file is fine (it will be created).
pub fn check_file(path: &Path, shared: bool) -> Result<bool> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("cannot inspect `{}`", path.display()), e)),
    };
    if md.file_type().is_symlink() {
        return Err(Error::permission(format!(
            "registry file `{}` is a symbolic link",
            path.display()
        ))
        .with_hint("replace the link with the file itself, or remove it"));
    }
    if !md.is_file() {
        return Err(Error::permission(format!(
            "registry file `{}` is not a regular file",
            path.display()
        ))
        .with_hint("move it away; portd will create a fresh registry"));
    }
    if md.uid() != sys::euid() && !shared {
        return Err(Error::permission(format!(
            "registry file `{}` is owned by uid {}, not by you",
            path.display(),
            md.uid()
        ))
        .with_hint("use your own registry: set `PORTD_HOME`"));
    }
    if md.mode() & unsafe_bits(shared) != 0 {
        return Err(Error::permission(format!(
            "registry file `{}` is writable by other users (mode {:o})",
            path.display(),
            md.mode() & 0o7777
        ))
        .with_hint(format!("run `chmod {:o} {}`", file_mode(shared), path.display())));
    }
    Ok(true)
}
