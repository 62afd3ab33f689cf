//! The on-disk encoding of entries: `[version byte][postcard body]`.
//!
//! Decoding is strict: an unknown version, leftover bytes or an
//! out-of-range field is an error (the registry is then reported damaged),
//! never a panic. postcard reads lengths against the input, so a crafted
//! length cannot make it allocate beyond the input.

use portd_core::{Owner, valid_range_name, validate_name};
use serde::{Deserialize, Serialize};

/// Version byte of the current record layout.
pub const RECORD_V1: u8 = 1;
/// Longest command line kept for an entry, in bytes.
const MAX_COMMAND: usize = 8 * 1024;

/// One project's reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The project key: a name, or a directory's absolute path.
    pub project: String,
    /// Its port.
    pub port: u16,
    /// The range the port came from.
    pub range: String,
    /// The process holding an active lease, if any.
    pub owner: Option<Owner>,
    /// uid of the user who created the entry.
    pub uid: u32,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Last time the project asked for its port, milliseconds since the epoch.
    pub last_used_ms: u64,
    /// The owner's command line, when known.
    pub command: Option<Vec<String>>,
    /// The child process `portd run` started, when there is one.
    pub child_pid: Option<u32>,
}

impl Entry {
    /// How the project is shown: a name as is, a directory by its base name.
    pub fn display_name(&self) -> &str {
        display_name(&self.project)
    }

    /// Whether this is a directory project.
    pub fn is_dir(&self) -> bool {
        self.project.starts_with('/')
    }
}

/// How a project key is shown.
pub fn display_name(key: &str) -> &str {
    if key.starts_with('/') {
        key.trim_end_matches('/').rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(key)
    } else {
        key
    }
}

/// How each of `keys` is shown when listed together: like
/// [`display_name`], but a directory whose base name another listed
/// project shares is shown with as many parent directories as tell it
/// apart (`a/app`, `b/app`), up to its full path.
pub fn shown_names(keys: &[&str]) -> Vec<String> {
    let base: Vec<&str> = keys.iter().map(|k| display_name(k)).collect();
    let tail = |key: &str, n: usize| -> String {
        let parts: Vec<&str> = key.trim_end_matches('/').rsplit('/').take(n).collect();
        let s = parts.into_iter().rev().collect::<Vec<_>>().join("/");
        if s.len() + 1 >= key.trim_end_matches('/').len() { key.to_owned() } else { s }
    };
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let clash = |j: usize| j != i && base[j] == base[i];
            if !key.starts_with('/') || !(0..keys.len()).any(clash) {
                return base[i].to_owned();
            }
            let depth = key.trim_end_matches('/').matches('/').count();
            (2..=depth)
                .map(|n| tail(key, n))
                .find(|t| {
                    !(0..keys.len()).any(|j| {
                        clash(j) && keys[j].starts_with('/') && tail(keys[j], n_of(t)) == *t
                    })
                })
                .unwrap_or_else(|| (*key).to_owned())
        })
        .collect()
}

/// How many path components `t` has.
fn n_of(t: &str) -> usize {
    t.split('/').filter(|s| !s.is_empty()).count()
}

/// Whether `key` is a well-formed project key.
pub fn valid_key(key: &str) -> bool {
    if key.starts_with('/') {
        key.len() <= 4096 && !key.contains('\0')
    } else if let Some(name) = key.strip_suffix(RELAY_SUFFIX) {
        validate_name(name).is_ok()
    } else {
        validate_name(key).is_ok()
    }
}

/// The suffix of the key of a managed server's relay port (`api@relay`):
/// `@` is in no project name, so it never clashes with one.
pub const RELAY_SUFFIX: &str = "@relay";

#[derive(Serialize, Deserialize)]
struct OwnerV1 {
    pid: u32,
    start_time: u64,
    boot_id: u128,
    uid: u32,
}

impl From<Owner> for OwnerV1 {
    fn from(o: Owner) -> OwnerV1 {
        OwnerV1 { pid: o.pid, start_time: o.start_time, boot_id: o.boot_id, uid: o.uid }
    }
}

impl From<OwnerV1> for Owner {
    fn from(o: OwnerV1) -> Owner {
        Owner { pid: o.pid, start_time: o.start_time, boot_id: o.boot_id, uid: o.uid }
    }
}

/// Serde for an optional [`Owner`] in other records, stored as an entry's
/// owner is (`#[serde(with = "crate::record::owner_opt")]`).
pub(crate) mod owner_opt {
    use super::{Owner, OwnerV1};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(o: &Option<Owner>, s: S) -> Result<S::Ok, S::Error> {
        o.map(OwnerV1::from).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Owner>, D::Error> {
        Ok(Option::<OwnerV1>::deserialize(d)?.map(Owner::from))
    }
}

#[derive(Serialize, Deserialize)]
struct EntryV1 {
    port: u16,
    range: String,
    owner: Option<OwnerV1>,
    uid: u32,
    created_ms: u64,
    last_used_ms: u64,
    command: Option<Vec<String>>,
    child_pid: Option<u32>,
}

/// Encodes `value` as a record: the version byte, then its postcard
/// encoding (the one layout of every record but an entry's).
pub(crate) fn encode_versioned<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    // Serialising plain owned data into a Vec cannot fail.
    out.extend(postcard::to_allocvec(value).unwrap_or_default());
    out
}

/// Decodes what [`encode_versioned`] wrote with `version`: an unknown
/// version, undecodable bytes or bytes after the value are an error, in
/// words.
pub(crate) fn decode_versioned<T: serde::de::DeserializeOwned>(
    version: u8,
    bytes: &[u8],
) -> Result<T, String> {
    let (&v, body) = bytes.split_first().ok_or("empty record")?;
    if v != version {
        return Err(format!("unknown record version {v}"));
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| format!("undecodable ({e})"))?;
    if !rest.is_empty() {
        return Err("trailing bytes".to_owned());
    }
    Ok(value)
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

/// Encodes an entry's value (the key is stored separately).
pub fn encode(e: &Entry) -> Vec<u8> {
    let mut command = e.command.clone();
    if let Some(c) = &mut command {
        // Keep records small: a huge command line is cut, argument by argument.
        let mut total = 0;
        c.retain(|a| {
            total += a.len();
            total <= MAX_COMMAND
        });
    }
    let body = EntryV1 {
        port: e.port,
        range: e.range.clone(),
        owner: e.owner.map(OwnerV1::from),
        uid: e.uid,
        created_ms: e.created_ms,
        last_used_ms: e.last_used_ms,
        command,
        child_pid: e.child_pid,
    };
    let mut out = vec![RECORD_V1];
    // Serialising plain owned data into a Vec cannot fail.
    out.extend(postcard::to_allocvec(&body).unwrap_or_default());
    out
}

/// Decodes and validates the record stored under `key`.
pub fn decode(key: &str, bytes: &[u8]) -> Result<Entry, DecodeError> {
    let err = |m: &str| DecodeError(format!("record of `{key}`: {m}"));
    if !valid_key(key) {
        return Err(err("invalid project key"));
    }
    let (&version, body) = bytes.split_first().ok_or_else(|| err("empty record"))?;
    if version != RECORD_V1 {
        return Err(err(&format!("unknown record version {version}")));
    }
    let (v, rest): (EntryV1, _) =
        postcard::take_from_bytes(body).map_err(|e| err(&format!("undecodable ({e})")))?;
    if !rest.is_empty() {
        return Err(err("trailing bytes"));
    }
    if v.port == 0 {
        return Err(err("port 0"));
    }
    if !valid_range_name(&v.range) {
        return Err(err("invalid range name"));
    }
    if v.created_ms > v.last_used_ms.saturating_add(86_400_000) {
        return Err(err("created after last use"));
    }
    if let Some(o) = &v.owner
        && (o.pid == 0 || o.pid > i32::MAX as u32)
    {
        return Err(err("invalid owner pid"));
    }
    if let Some(c) = &v.command
        && c.iter().map(String::len).sum::<usize>() > MAX_COMMAND
    {
        return Err(err("command line too long"));
    }
    Ok(Entry {
        project: key.to_owned(),
        port: v.port,
        range: v.range,
        owner: v.owner.map(Owner::from),
        uid: v.uid,
        created_ms: v.created_ms,
        last_used_ms: v.last_used_ms,
        command: v.command,
        child_pid: v.child_pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            project: "myapp".into(),
            port: 4123,
            range: "primary".into(),
            owner: Some(Owner { pid: 42, start_time: 7, boot_id: u128::MAX, uid: 1000 }),
            uid: 1000,
            created_ms: 1,
            last_used_ms: 2,
            command: Some(vec!["npm".into(), "start".into()]),
            child_pid: Some(43),
        }
    }

    #[test]
    fn round_trip() {
        let e = sample();
        assert_eq!(decode("myapp", &encode(&e)), Ok(e));
    }

    #[test]
    fn strict_decoding() {
        let good = encode(&sample());
        assert!(decode("myapp", &[]).is_err());
        assert!(decode("bad name", &good).is_err());
        let mut v2 = good.clone();
        v2[0] = 2;
        assert!(decode("myapp", &v2).unwrap_err().0.contains("version 2"));
        let mut long = good.clone();
        long.push(0);
        assert!(decode("myapp", &long).unwrap_err().0.contains("trailing"));
        for n in 1..good.len() {
            assert!(decode("myapp", &good[..n]).is_err(), "truncated at {n}");
        }
        // A huge declared string length must fail cleanly.
        let crafted = [1u8, 0x83, 0x20, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode("myapp", &crafted).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x1234_5678;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 48) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8).collect();
            let _ = decode("k", &bytes);
        }
    }

    #[test]
    fn shown_names_tell_same_named_directories_apart() {
        let keys = ["/w/a/app", "/w/b/app", "app", "/w/web", "/x/a/app2", "/y/a/app2"];
        assert_eq!(shown_names(&keys), ["a/app", "b/app", "app", "web", "/x/a/app2", "/y/a/app2"]);
        // A directory that clashes only with a name shows one parent.
        assert_eq!(shown_names(&["/w/v/app", "app"]), ["v/app", "app"]);
        // Told apart only by the whole path: the full path.
        assert_eq!(shown_names(&["/app", "/w/app"]), ["/app", "/w/app"]);
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("/home/u/proj"), "proj");
        assert_eq!(display_name("/"), "/");
        assert_eq!(display_name("myapp:api"), "myapp:api");
    }
}
