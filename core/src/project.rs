//! Project keys: validated names, and the stable hash behind a project's
//! preferred port.

use std::fmt;

/// Longest accepted project name.
pub const MAX_NAME_LEN: usize = 128;

/// Why a project name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// Longer than [`MAX_NAME_LEN`] characters (all ASCII by then).
    TooLong(usize),
    /// Does not start with an ASCII letter or digit.
    BadStart(char),
    /// Has a character outside `[A-Za-z0-9._:-]`.
    BadChar(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("the project name is empty"),
            NameError::TooLong(n) => {
                write!(f, "the project name is {n} characters long; the limit is {MAX_NAME_LEN}")
            }
            NameError::BadStart(c) => {
                write!(
                    f,
                    "the project name starts with {c:?}; it must start with a letter or digit"
                )
            }
            NameError::BadChar(c) => write!(
                f,
                "the project name contains {c:?}; use letters, digits, `.`, `_`, `:` and `-`"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a project name: 1–128 chars of `[A-Za-z0-9._:-]`, starting alphanumeric.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let first = name.chars().next().ok_or(NameError::Empty)?;
    if !first.is_ascii_alphanumeric() {
        return Err(NameError::BadStart(first));
    }
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(NameError::BadChar(c));
    }
    // Only ASCII is left, so bytes and characters are the same count.
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    Ok(())
}

/// 64-bit FNV-1a: tiny, stable across versions and machines, and good
/// enough to spread project keys over a range.
pub fn stable_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The offset of `key`'s preferred port in a range of `len` ports.
pub fn preferred_offset(key: &str, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    (stable_hash(key) % len as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "myapp", "myapp:api", "A.b_c-d:9", &"x".repeat(128)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(&"x".repeat(129)), Err(NameError::TooLong(129)));
        assert_eq!(validate_name("-x"), Err(NameError::BadStart('-')));
        assert_eq!(validate_name(".x"), Err(NameError::BadStart('.')));
        assert_eq!(validate_name("a b"), Err(NameError::BadChar(' ')));
        assert_eq!(validate_name("a/b"), Err(NameError::BadChar('/')));
        assert_eq!(validate_name("é"), Err(NameError::BadStart('é')));
        // A long name with a character outside the set is refused for that
        // character, not for a length counted in bytes.
        assert_eq!(validate_name(&format!("a{}", "é".repeat(70))), Err(NameError::BadChar('é')));
    }

    #[test]
    fn hash_is_stable() {
        // Pinned: changing the hash would move every project's preferred port.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(preferred_offset("myapp", 1000), (stable_hash("myapp") % 1000) as usize);
        assert_eq!(preferred_offset("x", 0), 0);
    }
}
