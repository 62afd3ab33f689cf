//! Named port ranges and their validation.
//!
//! A [`Ranges`] value is always valid: non-empty, ordered by the user,
//! pairwise disjoint, every port in 1..=65535, names unique and well formed.
//! Allocation order and fallback are decided elsewhere (`candidates`).

use std::fmt;

/// One named, inclusive interval of ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRange {
    /// The range's name (`primary`, `overflow`, …).
    pub name: String,
    /// First port, inclusive.
    pub start: u16,
    /// Last port, inclusive.
    pub end: u16,
    /// Used automatically when earlier ranges are full; `false` means only on request.
    pub fallback: bool,
}

impl PortRange {
    /// A range; not yet validated.
    pub fn new(name: &str, start: u16, end: u16, fallback: bool) -> Self {
        PortRange { name: name.to_owned(), start, end, fallback }
    }

    /// Number of ports in the range.
    pub fn len(&self) -> usize {
        usize::from(self.end) - usize::from(self.start) + 1
    }

    /// Always false for a validated range.
    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }

    /// Offset of `port` in the range; `None` outside.
    pub fn offset(&self, port: u16) -> Option<usize> {
        self.contains(port).then(|| usize::from(port - self.start))
    }

    /// The port at `offset`.
    pub fn port_at(&self, offset: usize) -> u16 {
        debug_assert!(offset < self.len());
        self.start + offset as u16
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}-{}", self.name, self.start, self.end)
    }
}

/// Why a set of ranges was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeError {
    /// No range at all.
    NoRanges,
    /// A range name is empty or has characters outside `[A-Za-z0-9_-]`.
    BadName(String),
    /// Two ranges share a name.
    DuplicateName(String),
    /// `start > end`.
    Empty { name: String, start: u32, end: u32 },
    /// A bound is 0 or above 65535.
    OutOfBounds { name: String, port: u32 },
    /// Two ranges share ports.
    Overlap { a: String, b: String },
    /// No range has `fallback = true`, so a plain `get` could never allocate.
    NoFallback,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::NoRanges => write!(f, "no port range is configured"),
            RangeError::BadName(n) => {
                write!(f, "range name `{n}` is invalid (use letters, digits, `_` and `-`)")
            }
            RangeError::DuplicateName(n) => write!(f, "range `{n}` is defined twice"),
            RangeError::Empty { name, start, end } => {
                write!(f, "range `{name}` is empty: start {start} is above end {end}")
            }
            RangeError::OutOfBounds { name, port } => {
                write!(f, "range `{name}` has port {port}, outside 1-65535")
            }
            RangeError::Overlap { a, b } => write!(f, "ranges `{a}` and `{b}` overlap"),
            RangeError::NoFallback => {
                write!(f, "no range has `fallback = true`, so `portd get` could never allocate")
            }
        }
    }
}

impl std::error::Error for RangeError {}

/// Whether `name` is a valid range name.
pub fn valid_range_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A validated, ordered list of ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges(Vec<PortRange>);

impl Ranges {
    /// Validates raw `(name, start, end, fallback)` bounds given as `u32` so
    /// that out-of-bounds input is reported, never truncated.
    pub fn from_raw(raw: &[(String, u32, u32, bool)]) -> Result<Self, RangeError> {
        let mut out = Vec::with_capacity(raw.len());
        for (name, start, end, fallback) in raw {
            for &p in [start, end] {
                if p == 0 || p > 65535 {
                    return Err(RangeError::OutOfBounds { name: name.clone(), port: p });
                }
            }
            if start > end {
                return Err(RangeError::Empty { name: name.clone(), start: *start, end: *end });
            }
            out.push(PortRange::new(name, *start as u16, *end as u16, *fallback));
        }
        Self::new(out)
    }

    /// Validates a list of ranges.
    pub fn new(ranges: Vec<PortRange>) -> Result<Self, RangeError> {
        if ranges.is_empty() {
            return Err(RangeError::NoRanges);
        }
        for (i, r) in ranges.iter().enumerate() {
            if !valid_range_name(&r.name) {
                return Err(RangeError::BadName(r.name.clone()));
            }
            for &p in [r.start, r.end].iter() {
                if p == 0 {
                    return Err(RangeError::OutOfBounds { name: r.name.clone(), port: 0 });
                }
            }
            if r.start > r.end {
                return Err(RangeError::Empty {
                    name: r.name.clone(),
                    start: r.start.into(),
                    end: r.end.into(),
                });
            }
            for other in &ranges[..i] {
                if other.name == r.name {
                    return Err(RangeError::DuplicateName(r.name.clone()));
                }
                if r.start <= other.end && other.start <= r.end {
                    return Err(RangeError::Overlap { a: other.name.clone(), b: r.name.clone() });
                }
            }
        }
        if !ranges.iter().any(|r| r.fallback) {
            return Err(RangeError::NoFallback);
        }
        Ok(Ranges(ranges))
    }

    /// The defaults of the spec: primary 4000–4999, overflow 10000–14999
    /// (both automatic), experimental 15000–19999 (on request only).
    pub fn defaults() -> Self {
        Ranges(vec![
            PortRange::new("primary", 4000, 4999, true),
            PortRange::new("overflow", 10000, 14999, true),
            PortRange::new("experimental", 15000, 19999, false),
        ])
    }

    /// All ranges in configured order.
    pub fn iter(&self) -> std::slice::Iter<'_, PortRange> {
        self.0.iter()
    }

    /// The range called `name`.
    pub fn by_name(&self, name: &str) -> Option<&PortRange> {
        self.0.iter().find(|r| r.name == name)
    }

    /// The range containing `port`.
    pub fn containing(&self, port: u16) -> Option<&PortRange> {
        self.0.iter().find(|r| r.contains(port))
    }

    /// Ranges to try, in order: just `name` when given, else every fallback range.
    pub fn eligible<'a>(&'a self, name: Option<&'a str>) -> impl Iterator<Item = &'a PortRange> {
        self.0.iter().filter(move |r| match name {
            Some(n) => r.name == n,
            None => r.fallback,
        })
    }

    /// The names, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|r| r.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: &[(&str, u32, u32, bool)]) -> Result<Ranges, RangeError> {
        let v: Vec<_> = v.iter().map(|(n, s, e, f)| (n.to_string(), *s, *e, *f)).collect();
        Ranges::from_raw(&v)
    }

    #[test]
    fn defaults_are_valid() {
        let d = Ranges::defaults();
        assert_eq!(Ranges::new(d.0.clone()), Ok(d.clone()));
        let names: Vec<_> = d.eligible(None).map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["primary", "overflow"]);
        assert_eq!(d.containing(15000).unwrap().name, "experimental");
        assert_eq!(d.by_name("primary").unwrap().len(), 1000);
    }

    #[test]
    fn rejects_bad_ranges() {
        assert_eq!(raw(&[]), Err(RangeError::NoRanges));
        assert!(matches!(raw(&[("a", 0, 10, true)]), Err(RangeError::OutOfBounds { port: 0, .. })));
        assert!(matches!(
            raw(&[("a", 10, 70000, true)]),
            Err(RangeError::OutOfBounds { port: 70000, .. })
        ));
        assert!(matches!(raw(&[("a", 20, 10, true)]), Err(RangeError::Empty { .. })));
        assert!(matches!(
            raw(&[("a", 10, 20, true), ("b", 20, 30, true)]),
            Err(RangeError::Overlap { .. })
        ));
        assert!(matches!(
            raw(&[("a", 10, 20, true), ("a", 30, 40, true)]),
            Err(RangeError::DuplicateName(_))
        ));
        assert!(matches!(raw(&[("a b", 10, 20, true)]), Err(RangeError::BadName(_))));
        assert_eq!(raw(&[("a", 10, 20, false)]), Err(RangeError::NoFallback));
        assert!(raw(&[("a", 10, 10, true)]).is_ok());
    }
}
