//! A server's log: a size-capped file with one rotated copy, its tail, and following it.
//! (Minimal version; replaced by the full one.)
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// An append-only log file.
#[derive(Debug)]
pub struct LogFile {
    file: std::fs::File,
    #[allow(dead_code)]
    path: PathBuf,
}

impl LogFile {
    /// Opens (creating) the log at `path`.
    pub fn open(path: &Path, _cap: u64) -> io::Result<LogFile> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogFile { file, path: path.to_owned() })
    }

    /// Appends `buf`.
    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }
}

/// Copies `reader` into `file` until EOF.
pub fn pump(mut reader: impl Read, mut file: LogFile) {
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let _ = file.write_all(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The last `n` lines.
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    Ok(lines[lines.len().saturating_sub(n)..].to_vec())
}

/// Prints the last `n` lines, then new lines as they come, until `stop`.
pub fn follow(
    path: &Path,
    n: usize,
    out: &mut impl Write,
    stop: impl Fn() -> bool,
) -> io::Result<()> {
    for l in tail(path, n)? {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    let mut f = std::fs::File::open(path)?;
    use std::io::Seek;
    f.seek(io::SeekFrom::End(0))?;
    let mut buf = [0u8; 8192];
    while !stop() {
        let k = f.read(&mut buf)?;
        if k == 0 {
            std::thread::sleep(std::time::Duration::from_millis(100));
        } else {
            out.write_all(&buf[..k])?;
            out.flush()?;
        }
    }
    Ok(())
}
