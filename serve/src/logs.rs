//! A server's log: a size-capped file with one rotated copy, its tail, and
//! following it.
//!
//! The supervisor copies the server's stdout and stderr into `NAME.log`
//! ([`pump`] into a [`LogFile`]). When the next write would pass the cap, the
//! file is renamed to `NAME.log.1` (replacing the previous copy) and a new
//! one begins, so a log never takes more than about twice its cap. Readers
//! ([`tail`], [`follow`]) see both files as one stream.
//!
//! This module does not decide where logs live or how large they may grow:
//! the caller passes the path and the cap.

use portd_core::sys;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The default cap of a log file (each of the two files).
pub const DEFAULT_CAP: u64 = 10 << 20;

/// After the log could not be written, how long [`pump`] discards output
/// before it tries again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How often [`follow`] looks at its stop flag (and at the file, should a
/// change notification be missed).
const FOLLOW_TICK: Duration = Duration::from_millis(200);

/// Blocks read at once by [`tail`] and [`follow`].
const BLOCK: usize = 64 << 10;

/// The rotated copy of the log at `path`: `PATH.1`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// An open log file that rotates at its cap.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    cap: u64,
    /// Whether the file ends inside a line (its last byte is not `\n`).
    open_line: bool,
}

impl LogFile {
    /// Opens the log at `path` for appending, creating its missing parent
    /// directories (0700) and the file (0600). A file readable by others is
    /// made private. Refuses a symlink or anything but a regular file in
    /// `path`'s place. `cap_bytes` (at least 1) bounds each of the two
    /// files.
    pub fn open(path: &Path, cap_bytes: u64) -> io::Result<LogFile> {
        use std::os::unix::fs::DirBuilderExt;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create `{}`: {e}", parent.display()))
            })?;
        }
        let file = open_log(path)?;
        let len = file.metadata()?.len();
        let mut last = [0u8];
        let open_line =
            len > 0 && file.read_exact_at(&mut last, len - 1).is_ok() && last[0] != b'\n';
        Ok(LogFile { path: path.to_owned(), file, cap: cap_bytes.max(1), open_line })
    }

    /// The path of the log.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `buf`. Before a write that would take the file past its cap,
    /// the file is rotated to `PATH.1`; the bytes up to the last line end
    /// that still fits are written first, so a line is never split between
    /// the two files unless it is longer than the cap itself (or reached
    /// this method in pieces). A file truncated or removed by someone else
    /// is noticed: writing goes on at its real size, or in a new file.
    pub fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let mut len = self.current_len()?;
        while !buf.is_empty() {
            let room = self.cap.saturating_sub(len);
            if buf.len() as u64 <= room {
                return self.append(buf);
            }
            let head = &buf[..room as usize];
            match head.iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    self.append(&buf[..=i])?;
                    buf = &buf[i + 1..];
                }
                // A line longer than the cap: it cannot be kept whole.
                None if len == 0 => {
                    self.append(head)?;
                    buf = &buf[head.len()..];
                }
                None => {}
            }
            self.rotate()?;
            len = 0;
        }
        Ok(())
    }

    /// The file's size now, reopening it if it was removed.
    fn current_len(&mut self) -> io::Result<u64> {
        let m = self.file.metadata()?;
        if m.nlink() == 0 {
            self.file = open_log(&self.path)?;
            self.open_line = false;
            return Ok(self.file.metadata()?.len());
        }
        Ok(m.len())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        if let Some(&last) = bytes.last() {
            self.open_line = last != b'\n';
        }
        Ok(())
    }

    /// Moves the file to `PATH.1` and starts a new one.
    fn rotate(&mut self) -> io::Result<()> {
        let old = rotated_path(&self.path);
        match fs::rename(&self.path, &old) {
            Ok(()) => {}
            // Removed by someone: start the new file all the same.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot rotate `{}` to `{}`: {e}", self.path.display(), old.display()),
                ));
            }
        }
        self.file = open_log(&self.path)?;
        self.open_line = false;
        Ok(())
    }

    /// Writes a line from portd itself, past the cap if need be, on a line
    /// of its own.
    fn note(&mut self, text: &str) -> io::Result<()> {
        let line = self.note_line(text);
        self.append(line.as_bytes())
    }

    /// `portd: TEXT` as a line of its own.
    fn note_line(&self, text: &str) -> String {
        let start = if self.open_line { "\n" } else { "" };
        format!("{start}portd: {text}\n")
    }
}

/// Opens (or creates) a log for appending, refusing anything but a regular
/// file, and makes it private.
pub(crate) fn open_log(path: &Path) -> io::Result<File> {
    // Looked at first only for a clear message; the open itself refuses a
    // symlink, and the check after it is the one that counts.
    if let Ok(m) = fs::symlink_metadata(path)
        && !m.is_file()
    {
        return Err(not_regular(path, &m.file_type()));
    }
    let file = sys::open_append_nofollow(path, 0o600)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open `{}`: {e}", path.display())))?;
    let m = file.metadata()?;
    if !m.is_file() {
        return Err(not_regular(path, &m.file_type()));
    }
    if m.permissions().mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

fn not_regular(path: &Path, ft: &fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("`{}` is {}, not a regular file", path.display(), sys::file_kind(ft)),
    )
}

/// What [`pump`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pumped {
    /// Bytes read from the pipe and written to the log.
    pub copied: u64,
    /// Bytes read from the pipe and discarded because the log could not be
    /// written.
    pub dropped: u64,
}

/// Copies `reader` (the server's stdout and stderr pipe) into `file` until
/// end of file; meant for a thread of its own.
///
/// Whatever it reads is written at once, so the writer never waits longer
/// than one write to disk. When the log cannot be written (disk full, …),
/// it keeps reading and discards the output, so that the server never
/// blocks on a full pipe; it says so in the log if it can, tries again
/// every few seconds, and once writing works again says how much was lost.
pub fn pump(reader: impl Read, file: LogFile) -> Pumped {
    pump_retrying(reader, file, RETRY_AFTER)
}

/// Why and since when output is being discarded.
struct Outage {
    error: String,
    since: Instant,
    dropped: u64,
}

fn pump_retrying(mut reader: impl Read, mut file: LogFile, retry: Duration) -> Pumped {
    let mut buf = vec![0u8; BLOCK];
    let mut done = Pumped::default();
    let mut outage: Option<Outage> = None;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if outage.is_none() {
                    let _ = file.note(&format!("cannot read the server's output any more: {e}"));
                }
                break;
            }
        };
        let bytes = &buf[..n];
        if let Some(o) = &mut outage {
            if o.since.elapsed() < retry {
                o.dropped += n as u64;
                done.dropped += n as u64;
                continue;
            }
            // Through the cap and rotation: a real test of the log.
            let note =
                file.note_line(&format!("{} bytes of output were lost: {}", o.dropped, o.error));
            if file.write_all(note.as_bytes()).is_err() {
                o.since = Instant::now();
                o.dropped += n as u64;
                done.dropped += n as u64;
                continue;
            }
            outage = None;
        }
        match file.write_all(bytes) {
            Ok(()) => done.copied += n as u64,
            Err(e) => {
                let error = format!("cannot write the log: {e}");
                let _ = file.note(&format!("{error}; discarding output until it works again"));
                outage = Some(Outage { error, since: Instant::now(), dropped: n as u64 });
                done.dropped += n as u64;
            }
        }
    }
    done
}

/// The last `n` lines of the log at `path`, oldest first, reading the
/// rotated copy `PATH.1` too when the current file holds fewer. Only the
/// end of each file is read (backwards, in blocks). Bytes that are not
/// UTF-8 are replaced; line ends (`\n`, `\r\n`) are removed. An empty log
/// gives no lines; a log that does not exist is an error (`NotFound`) that
/// says so.
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<String>> {
    let (old, current) = tail_bytes(path, n)?;
    let mut lines = split_lines(&old);
    lines.extend(split_lines(&current));
    Ok(lines)
}

/// The raw bytes of the last `n` lines: those from `PATH.1`, those from
/// `PATH`.
fn tail_bytes(path: &Path, n: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let current = open_read(path)?;
    let old_path = rotated_path(path);
    let old = open_read(&old_path)?;
    if current.is_none() && old.is_none() {
        return Err(no_log(path));
    }
    let (cur_bytes, found) = match &current {
        Some(f) => last_lines(f, f.metadata()?.len(), n)?,
        None => (Vec::new(), 0),
    };
    let old_bytes = match &old {
        Some(f) if found < n => last_lines(f, f.metadata()?.len(), n - found)?.0,
        _ => Vec::new(),
    };
    Ok((old_bytes, cur_bytes))
}

fn no_log(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("there is no log at `{}` (the server has not run yet)", path.display()),
    )
}

/// Opens a log for reading; `None` when it does not exist.
fn open_read(path: &Path) -> io::Result<Option<File>> {
    match sys::open_nofollow_read(path) {
        Ok(f) => {
            let m = f.metadata()?;
            if m.is_file() { Ok(Some(f)) } else { Err(not_regular(path, &m.file_type())) }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot read `{}`: {e}", path.display()))),
    }
}

/// The bytes of the last `n` lines of `file` before offset `end`, and how
/// many lines they are. A last line without its `\n` counts as a line.
fn last_lines(file: &File, end: u64, n: usize) -> io::Result<(Vec<u8>, usize)> {
    if n == 0 || end == 0 {
        return Ok((Vec::new(), 0));
    }
    // A final `\n` ends the last line; it does not start another.
    let mut last = [0u8];
    file.read_exact_at(&mut last, end - 1)?;
    let counted_below = if last[0] == b'\n' { end - 1 } else { end };
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut pos = end;
    let mut newlines = 0;
    let mut start = None;
    while pos > 0 && start.is_none() {
        let from = pos.saturating_sub(BLOCK as u64);
        let mut block = vec![0u8; (pos - from) as usize];
        file.read_exact_at(&mut block, from)?;
        let below = (counted_below.saturating_sub(from) as usize).min(block.len());
        for (i, _) in block[..below].iter().enumerate().rev().filter(|(_, b)| **b == b'\n') {
            newlines += 1;
            if newlines == n {
                start = Some(i + 1);
                break;
            }
        }
        blocks.push(block);
        pos = from;
    }
    let mut bytes = Vec::new();
    for (k, block) in blocks.iter().rev().enumerate() {
        let skip = if k == 0 { start.unwrap_or(0) } else { 0 };
        bytes.extend_from_slice(&block[skip..]);
    }
    let lines = if start.is_some() { n } else { newlines + 1 };
    Ok((bytes, lines))
}

fn split_lines(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned())
        .collect()
}

/// The file [`follow`] reads, and how far.
struct Followed {
    file: File,
    id: (u64, u64),
    pos: u64,
}

impl Followed {
    fn open(path: &Path) -> io::Result<Option<Followed>> {
        Ok(open_read(path)?.map(|file| {
            let m = file.metadata().ok();
            let id = m.as_ref().map_or((0, 0), |m| (m.dev(), m.ino()));
            Followed { file, id, pos: 0 }
        }))
    }

    /// Copies what was appended since the last call to `out`.
    fn copy_new(&mut self, out: &mut impl Write, buf: &mut [u8]) -> io::Result<()> {
        loop {
            let n = match self.file.read_at(buf, self.pos) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(());
            }
            out.write_all(&buf[..n])?;
            self.pos += n as u64;
        }
    }
}

/// Prints the last `n` lines of the log at `path` to `out` (as [`tail`]
/// does, bytes unchanged), then every byte appended to it, until `stop()`
/// says so. It sleeps in the kernel between changes (inotify on the log's
/// directory), notices within a moment when `stop()` turns true, and keeps
/// up with rotation: the rest of the old file is printed, then the new file
/// from its start; a truncated file is read again from its start. A log
/// that does not exist is an error, as for [`tail`]; an error writing to
/// `out` (a closed pipe, …) ends it.
pub fn follow(
    path: &Path,
    n: usize,
    out: &mut impl Write,
    stop: impl Fn() -> bool,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Open first and print the tail up to the size seen, so that nothing
    // written meanwhile is lost or printed twice.
    let mut cur = Followed::open(path)?;
    let old = open_read(&rotated_path(path))?;
    if cur.is_none() && old.is_none() {
        return Err(no_log(path));
    }
    let watch = sys::Watch::new(dir)?;
    let mut found = 0;
    let mut cur_bytes = Vec::new();
    if let Some(c) = &mut cur {
        c.pos = c.file.metadata()?.len();
        (cur_bytes, found) = last_lines(&c.file, c.pos, n)?;
    }
    if let Some(o) = &old
        && found < n
    {
        let (mut bytes, _) = last_lines(o, o.metadata()?.len(), n - found)?;
        if !bytes.is_empty() && !bytes.ends_with(b"\n") && !cur_bytes.is_empty() {
            bytes.push(b'\n');
        }
        out.write_all(&bytes)?;
    }
    // The files printed (or older than what was printed): a rotated copy
    // not among them was missed while it was the current file.
    let mut seen: Vec<(u64, u64)> = Vec::new();
    if let Some(m) = old.map(|o| o.metadata()).transpose()? {
        seen.push((m.dev(), m.ino()));
    }
    seen.extend(cur.as_ref().map(|c| c.id));
    out.write_all(&cur_bytes)?;
    out.flush()?;
    let mut buf = vec![0u8; BLOCK];
    while !stop() {
        // Looked at before reading: if the name now holds another file, the
        // old one was complete before that, so reading it to its end after
        // this look loses nothing.
        let now = fs::symlink_metadata(path);
        let read_from = cur.as_ref().map_or(0, |c| c.pos);
        if let Some(c) = &mut cur {
            c.copy_new(out, &mut buf)?;
        }
        match (now, &mut cur) {
            (Ok(m), Some(c)) if c.id == (m.dev(), m.ino()) => {
                // Smaller than what was read before the look: truncated.
                if m.len() < read_from {
                    c.pos = 0;
                    continue;
                }
            }
            (Ok(_), _) => {
                // Rotated or recreated: the new file from its start. Had the
                // log rotated twice since the last look, the file in between
                // is the rotated copy now: printed whole first.
                let copy = Followed::open(&rotated_path(path)).ok().flatten();
                if let Some(mut copy) = copy.filter(|c| !seen.contains(&c.id)) {
                    copy.copy_new(out, &mut buf)?;
                    seen.push(copy.id);
                }
                cur = Followed::open(path)?;
                seen.extend(cur.as_ref().map(|c| c.id));
                // Inode numbers are reused: only the latest few count.
                if seen.len() > 4 {
                    seen.drain(..seen.len() - 4);
                }
                continue;
            }
            // Between the rotation's rename and the new file.
            (Err(e), _) if e.kind() == io::ErrorKind::NotFound => {}
            (Err(e), _) => return Err(e),
        }
        out.flush()?;
        watch.wait(FOLLOW_TICK)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn creates_a_private_directory_and_file_and_appends() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("logs/deep/api.log");
        let mut log = LogFile::open(&path, 1000).unwrap();
        log.write_all(b"one\n").unwrap();
        drop(log);
        let mut log = LogFile::open(&path, 1000).unwrap();
        log.write_all(b"two\n").unwrap();
        assert_eq!(read(&path), "one\ntwo\n");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&tmp.path().join("logs")), 0o700);
        assert_eq!(mode(&tmp.path().join("logs/deep")), 0o700);
        // A log readable by others is made private when opened.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        LogFile::open(&path, 1000).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn refuses_a_symlink_a_fifo_and_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        fs::write(&target, "secret\n").unwrap();
        let link = tmp.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = LogFile::open(&link, 100).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link, not a regular file"), "{e}");
        assert_eq!(read(&target), "secret\n", "nothing written through the link");

        let fifo = tmp.path().join("fifo.log");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        let e = LogFile::open(&fifo, 100).unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        let e = tail(&fifo, 3).unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");

        let e = LogFile::open(tmp.path(), 100).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
    }

    #[test]
    fn rotates_before_a_write_that_would_pass_the_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        let old = rotated_path(&path);
        assert_eq!(old, tmp.path().join("a.log.1"));
        let mut log = LogFile::open(&path, 20).unwrap();
        log.write_all(b"0123456789\n").unwrap(); // 11 bytes
        log.write_all(b"abcdefgh\n").unwrap(); // 20: exactly the cap
        assert_eq!(read(&path), "0123456789\nabcdefgh\n");
        assert!(!old.exists());
        log.write_all(b"x\n").unwrap();
        assert_eq!(read(&old), "0123456789\nabcdefgh\n");
        assert_eq!(read(&path), "x\n");
        // Several lines at once: those that fit stay, the rest go on.
        log.write_all(b"1234567\n12345678\nlast\n").unwrap();
        assert_eq!(read(&old), "x\n1234567\n12345678\n");
        assert_eq!(read(&path), "last\n");
        // One copy is kept.
        log.write_all(b"0123456789012345\n").unwrap();
        assert_eq!(read(&old), "last\n");
        assert_eq!(read(&path), "0123456789012345\n");
        let names: Vec<_> =
            fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // A line longer than the cap is cut at the cap.
        log.write_all(b"abcdefghijklmnopqrstuvwxyz\n").unwrap();
        assert_eq!(read(&old), "abcdefghijklmnopqrst");
        assert_eq!(read(&path), "uvwxyz\n");
        for p in [&path, &old] {
            assert!(fs::metadata(p).unwrap().len() <= 20);
        }
    }

    #[test]
    fn a_removed_or_truncated_log_is_noticed_by_the_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        let mut log = LogFile::open(&path, 20).unwrap();
        log.write_all(b"0123456789\n").unwrap();
        fs::remove_file(&path).unwrap();
        log.write_all(b"after rm\n").unwrap();
        assert_eq!(read(&path), "after rm\n");
        fs::write(&path, "").unwrap();
        log.write_all(b"0123456789\n").unwrap();
        log.write_all(b"01234567\n").unwrap();
        assert_eq!(read(&path), "0123456789\n01234567\n", "the cap counts from the truncation");
        log.write_all(b"x\n").unwrap();
        assert_eq!(read(&path), "x\n");
    }

    #[test]
    fn tail_reads_across_the_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        let mut log = LogFile::open(&path, 100).unwrap();
        for i in 0..25 {
            log.write_all(format!("line {i:02}\n").as_bytes()).unwrap(); // 8 bytes each
        }
        // 12 lines (96 bytes) per file: 00..11 were rotated out by 12..23.
        assert_eq!(read(&rotated_path(&path)).lines().next(), Some("line 12"));
        assert_eq!(read(&path), "line 24\n");
        let want = |r: std::ops::Range<i32>| r.map(|i| format!("line {i:02}")).collect::<Vec<_>>();
        assert_eq!(tail(&path, 1).unwrap(), want(24..25));
        assert_eq!(tail(&path, 3).unwrap(), want(22..25));
        assert_eq!(tail(&path, 13).unwrap(), want(12..25));
        assert_eq!(tail(&path, 1000).unwrap(), want(12..25));
        assert_eq!(tail(&path, 0).unwrap(), Vec::<String>::new());
        // The current file missing (between rename and creation).
        fs::remove_file(&path).unwrap();
        assert_eq!(tail(&path, 2).unwrap(), want(22..24));
    }

    #[test]
    fn tail_of_a_big_file_reads_only_its_end() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("big.log");
        let mut text = String::new();
        for i in 0..200_000 {
            text.push_str(&format!("line number {i}\n"));
        }
        text.push_str("no newline at the end");
        fs::write(&path, &text).unwrap();
        let t = Instant::now();
        let got = tail(&path, 3).unwrap();
        let took = t.elapsed();
        assert_eq!(got, ["line number 199998", "line number 199999", "no newline at the end"]);
        // Lines spanning block boundaries, and more lines than one block.
        let got = tail(&path, 10_000).unwrap();
        assert_eq!(got.len(), 10_000);
        assert_eq!(got[0], "line number 190001");
        assert_eq!(got[5000], "line number 195001");
        assert_eq!(got[9999], "no newline at the end");
        // Not a benchmark: a whole-file read would still pass, but not by much.
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    #[test]
    fn tail_keeps_odd_content_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        fs::write(&path, b"crlf\r\n\n\xff bad utf8\n").unwrap();
        assert_eq!(tail(&path, 5).unwrap(), ["crlf", "", "\u{fffd} bad utf8"]);
        fs::write(&path, b"\n").unwrap();
        assert_eq!(tail(&path, 5).unwrap(), [""]);
    }

    #[test]
    fn tail_of_an_empty_log_is_empty_and_of_a_missing_one_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        let e = tail(&path, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            format!("there is no log at `{}` (the server has not run yet)", path.display())
        );
        let e = tail(&tmp.path().join("none/a.log"), 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        LogFile::open(&path, 100).unwrap();
        assert_eq!(tail(&path, 10).unwrap(), Vec::<String>::new());
    }

    /// Collects what `follow` prints, for another thread to look at.
    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
        /// Waits (up to 10 s) until the output is `want`.
        fn wait_for(&self, want: &str) {
            let t = Instant::now();
            while self.text() != want {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "got {:?}, want {want:?}",
                    self.text()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Runs `follow` in a thread; stops and joins it when dropped.
    struct Follower {
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<io::Result<()>>>,
        out: Shared,
    }
    impl Follower {
        fn start(path: &Path, n: usize) -> Follower {
            let stop = Arc::new(AtomicBool::new(false));
            let out = Shared::default();
            let (p, s, mut o) = (path.to_owned(), stop.clone(), out.clone());
            let thread =
                std::thread::spawn(move || follow(&p, n, &mut o, || s.load(Ordering::Relaxed)));
            Follower { stop, thread: Some(thread), out }
        }
        fn finish(mut self) -> io::Result<()> {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.take().unwrap().join().unwrap()
        }
    }
    impl Drop for Follower {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    #[test]
    fn follow_prints_the_tail_then_lines_appended_later() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        let mut log = LogFile::open(&path, 1 << 20).unwrap();
        log.write_all(b"one\ntwo\nthree\n").unwrap();
        let f = Follower::start(&path, 2);
        f.out.wait_for("two\nthree\n");
        log.write_all(b"four\n").unwrap();
        f.out.wait_for("two\nthree\nfour\n");
        log.write_all(b"fi").unwrap();
        f.out.wait_for("two\nthree\nfour\nfi");
        log.write_all(b"ve\n").unwrap();
        f.out.wait_for("two\nthree\nfour\nfive\n");
        let t = Instant::now();
        f.finish().unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "stops soon: {:?}", t.elapsed());
    }

    #[test]
    fn follow_keeps_up_with_rotation_while_a_writer_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        let mut log = LogFile::open(&path, 1000).unwrap();
        log.write_all(b"before\n").unwrap();
        let f = Follower::start(&path, 5);
        f.out.wait_for("before\n");
        let writer = std::thread::spawn(move || {
            let mut want = String::from("before\n");
            for i in 0..400 {
                let line = format!("line {i:04}\n");
                log.write_all(line.as_bytes()).unwrap();
                want.push_str(&line);
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            want
        });
        let want = writer.join().unwrap();
        // 4000 bytes through 1000-byte files: rotated four times.
        f.out.wait_for(&want);
        f.finish().unwrap();
    }

    #[test]
    fn follow_reads_a_truncated_log_from_its_start() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        fs::write(&path, "old line\n").unwrap();
        let f = Follower::start(&path, 10);
        f.out.wait_for("old line\n");
        fs::write(&path, "").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut log = LogFile::open(&path, 1000).unwrap();
        log.write_all(b"new\n").unwrap();
        f.out.wait_for("old line\nnew\n");
        f.finish().unwrap();
    }

    #[test]
    fn follow_prints_the_rotated_copy_when_the_current_file_is_short() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        fs::write(rotated_path(&path), "a\nb\nunfinished").unwrap();
        fs::write(&path, "c\n").unwrap();
        let f = Follower::start(&path, 3);
        f.out.wait_for("b\nunfinished\nc\n");
        f.finish().unwrap();
        let e = follow(&tmp.path().join("none.log"), 3, &mut io::sink(), || true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("there is no log at"), "{e}");
    }

    /// An output that can be made to block, as a slow terminal would.
    #[derive(Clone, Default)]
    struct Gate {
        out: Shared,
        state: Arc<(std::sync::Mutex<(bool, bool)>, std::sync::Condvar)>, // (closed, a write waits)
    }
    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let (lock, cv) = &*self.state;
            let mut st = lock.lock().unwrap();
            while st.0 {
                st.1 = true;
                cv.notify_all();
                st = cv.wait(st).unwrap();
            }
            st.1 = false;
            drop(st);
            self.out.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Gate {
        fn set_closed(&self, closed: bool) {
            self.state.0.lock().unwrap().0 = closed;
            self.state.1.notify_all();
        }
        fn wait_for_a_blocked_write(&self) {
            let (lock, cv) = &*self.state;
            let st = lock.lock().unwrap();
            let (_st, timeout) =
                cv.wait_timeout_while(st, Duration::from_secs(10), |s| !s.1).unwrap();
            assert!(!timeout.timed_out(), "follow never wrote");
        }
    }

    #[test]
    fn follow_prints_a_whole_file_it_missed_between_two_rotations() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        let mut log = LogFile::open(&path, 100).unwrap();
        log.write_all(b"first\n").unwrap();
        let gate = Gate::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, mut g) = (path.clone(), stop.clone(), gate.clone());
        let thread =
            std::thread::spawn(move || follow(&p, 10, &mut g, || s.load(Ordering::Relaxed)));
        gate.out.wait_for("first\n");
        gate.set_closed(true);
        log.write_all(b"second\n").unwrap();
        gate.wait_for_a_blocked_write();
        // Now, while `follow` is stuck on its output: two rotations.
        let mut want = String::from("first\nsecond\n");
        for i in 0..25 {
            let line = format!("line {i:02}\n"); // 8 bytes: 12 a file
            log.write_all(line.as_bytes()).unwrap();
            want.push_str(&line);
        }
        assert_eq!(read(&rotated_path(&path)).lines().next(), Some("line 10"));
        assert_eq!(read(&path), "line 22\nline 23\nline 24\n");
        gate.set_closed(false);
        gate.out.wait_for(&want);
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap().unwrap();
    }

    #[test]
    fn follow_does_not_print_the_rotated_copy_again_when_the_log_is_recreated() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        fs::write(rotated_path(&path), "old\n").unwrap();
        let mut log = LogFile::open(&path, 100).unwrap();
        log.write_all(b"current\n").unwrap();
        let f = Follower::start(&path, 5);
        f.out.wait_for("old\ncurrent\n");
        fs::remove_file(&path).unwrap();
        log.write_all(b"new file\n").unwrap();
        f.out.wait_for("old\ncurrent\nnew file\n");
        std::thread::sleep(Duration::from_millis(300));
        f.out.wait_for("old\ncurrent\nnew file\n");
        f.finish().unwrap();
    }

    /// Kills and reaps a child when dropped.
    struct ChildGuard(std::process::Child);
    impl Drop for ChildGuard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn spawn_sh(script: &str) -> ChildGuard {
        use std::process::{Command, Stdio};
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ChildGuard(child)
    }

    #[test]
    fn pump_copies_a_child_process_output_until_it_exits() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        let mut child = spawn_sh(
            "i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done; printf tail",
        );
        let out = child.0.stdout.take().unwrap();
        let log = LogFile::open(&path, 10_000).unwrap();
        let pump = std::thread::spawn(move || pump(out, log));
        assert!(child.0.wait().unwrap().success());
        let done = pump.join().unwrap();
        let mut all = read(&rotated_path(&path));
        all.push_str(&read(&path));
        assert!(all.ends_with("line 2999\ntail"), "{}", &all[all.len() - 30..]);
        assert_eq!(done.dropped, 0);
        let total: u64 = (0..3000).map(|i| format!("line {i}\n").len() as u64).sum::<u64>() + 4;
        assert_eq!(done.copied, total);
        // Every line whole: the rotated copy starts and ends on line bounds.
        let old = read(&rotated_path(&path));
        assert!(old.starts_with("line ") && old.ends_with('\n'));
        assert!(fs::metadata(&path).unwrap().len() <= 10_000);
    }

    #[test]
    fn pump_drains_the_pipe_when_the_log_cannot_be_written_and_says_so_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        // A directory in the rotated copy's place makes every rotation fail.
        fs::create_dir(rotated_path(&path)).unwrap();
        fs::write(rotated_path(&path).join("x"), "").unwrap();
        // 2 MB: far more than a pipe holds, so a pump that stopped reading
        // would leave the child blocked.
        let mut child = spawn_sh("head -c 2000000 /dev/zero | tr '\\0' 'x' | fold -w 99");
        let out = child.0.stdout.take().unwrap();
        let log = LogFile::open(&path, 1000).unwrap();
        let pump = std::thread::spawn(move || pump(out, log));
        let t = Instant::now();
        while child.0.try_wait().unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(20), "the child is blocked on its pipe");
            std::thread::sleep(Duration::from_millis(10));
        }
        let done = pump.join().unwrap();
        assert_eq!(done.copied + done.dropped, 2_000_000 + 2_000_000 / 99);
        assert!(done.dropped > 1_900_000, "{done:?}");
        let text = read(&path);
        let notes: Vec<_> = text.lines().filter(|l| l.starts_with("portd: ")).collect();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("portd: cannot write the log: cannot rotate"), "{}", notes[0]);
        assert!(notes[0].ends_with("; discarding output until it works again"), "{}", notes[0]);
    }

    #[test]
    fn pump_writes_again_once_the_log_works_and_counts_what_was_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        let blocker = rotated_path(&path);
        fs::create_dir(&blocker).unwrap();
        fs::write(blocker.join("x"), "").unwrap();
        let (r, mut w) = io::pipe().unwrap();
        let log = LogFile::open(&path, 300).unwrap();
        let pump = std::thread::spawn(move || pump_retrying(r, log, Duration::from_millis(100)));
        let wait_until = |what: &dyn Fn(&str) -> bool| {
            let t = Instant::now();
            while !what(&read(&path)) {
                assert!(t.elapsed() < Duration::from_secs(10), "{}", read(&path));
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        let first = format!("{}\n", "f".repeat(294));
        w.write_all(first.as_bytes()).unwrap(); // 295 bytes: fits
        wait_until(&|t| t.len() == 295);
        w.write_all(b"lost line\n").unwrap(); // must rotate, which fails
        wait_until(&|t| t.contains("portd: "));
        fs::remove_dir_all(&blocker).unwrap();
        w.write_all(b"also lost\n").unwrap(); // within the retry delay
        std::thread::sleep(Duration::from_millis(150));
        w.write_all(b"kept\n").unwrap();
        drop(w);
        let done = pump.join().unwrap();
        assert_eq!(done, Pumped { copied: 300, dropped: 20 });
        let old = read(&blocker);
        let (line, note) = old.split_at(295);
        assert_eq!(line, first);
        assert!(note.starts_with("portd: cannot write the log: cannot rotate"), "{note}");
        assert!(note.ends_with("; discarding output until it works again\n"), "{note}");
        assert_eq!(note.lines().count(), 1);
        let current = read(&path);
        let lost = "portd: 20 bytes of output were lost: cannot write the log: cannot rotate";
        assert!(current.starts_with(lost), "{current}");
        assert!(current.ends_with(")\nkept\n"), "{current}");
        assert_eq!(current.lines().count(), 2);
    }
}
