//! Shrinking the resident memory of a process that is about to block for a
//! long time (a sleeping supervisor): what it frees comes back on demand,
//! as page faults, when it wakes.

use std::fs;

/// What [`trim_resident`] released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Whether the C library's allocator returned its free memory
    /// (`malloc_trim(0)`, glibc only).
    pub heap: bool,
    /// Bytes of file-backed mappings whose pages were dropped from this
    /// process's page tables.
    pub file_bytes: u64,
}

/// Makes this process use as little resident memory as it can before it
/// blocks for a long time:
/// - the allocator returns its free memory to the kernel (`malloc_trim(0)`
///   releases the free pages inside every arena, not only at the top);
/// - the pages of its read-only file-backed mappings (the program's and
///   the libraries' code and constants) leave its page tables
///   (`madvise(MADV_DONTNEED)`): they stay in the page cache, shared with
///   other processes, and come back as minor faults when touched. Only a
///   mapping that holds no private (copied-on-write) page is released:
///   `/proc/self/smaps` says `Anonymous: 0 kB` for it, so nothing is lost
///   (a relocated read-only section, which holds private pages, is kept).
///
/// The pages the caller touches after the call (its own stack, the code of
/// the blocking call) come back at once — with their neighbours: the kernel
/// maps a whole cached folio or fault-around window (64 KiB) per fault, so
/// a program's text that sits in large folios returns whole. Threads
/// already blocked touch nothing. Kernel reclaim may drop these clean pages
/// at any time anyway; this only does it before the memory is needed.
/// Measured on the `sleeper` example (`benches/sleeper.sh`): VmRSS 3.7 →
/// 2.6 MB, nearly all of it file pages shared with other processes; the
/// allocator's part is small (about 25 KB). `MADV_PAGEOUT` releases less
/// (it skips pages other processes map, such as the C library's, and
/// evicts the rest from the page cache, so that waking reads the disk).
/// Costs a fraction of a millisecond (0.3 ms there); call it once, right
/// before blocking.
pub fn trim_resident() -> Trimmed {
    let mut t = Trimmed::default();
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes an integer and only rearranges the
        // allocator's own free memory, under its own locks.
        unsafe { libc::malloc_trim(0) };
        t.heap = true;
    }
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else { return t };
    for m in clean_file_mappings(&smaps) {
        // SAFETY: [start, end) is a whole mapping of this process, file
        // backed, not writable and without private pages (its contents
        // equal the file's): MADV_DONTNEED only drops page-table entries,
        // and a later access refaults the same bytes from the file. No
        // Rust reference can observe a difference.
        let r = unsafe {
            libc::madvise(m.start as *mut libc::c_void, m.end - m.start, libc::MADV_DONTNEED)
        };
        if r == 0 {
            t.file_bytes += m.resident;
        }
    }
    t
}

/// One mapping of `/proc/self/smaps` that [`trim_resident`] may release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    /// Its resident bytes (`Rss:`).
    resident: u64,
}

/// The mappings of a `/proc/PID/smaps` text that are backed by a file, not
/// writable, and hold no anonymous (private, copied-on-write) page, with
/// resident pages.
fn clean_file_mappings(smaps: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    let mut cur: Option<(Mapping, bool)> = None; // (mapping, eligible so far)
    let finish = |cur: Option<(Mapping, bool)>, out: &mut Vec<Mapping>| {
        if let Some((m, true)) = cur
            && m.resident > 0
        {
            out.push(m);
        }
    };
    for line in smaps.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            // A header: range, permissions, offset, device, inode, path.
            finish(cur.take(), &mut out);
            let perms = f.next().unwrap_or("");
            let inode = f.nth(2).unwrap_or("0");
            let path = f.next().unwrap_or("");
            let eligible = perms.len() == 4
                && !perms.contains('w')
                && perms.starts_with('r')
                && inode != "0"
                && path.starts_with('/');
            cur = Some((Mapping { start, end, resident: 0 }, eligible));
            continue;
        }
        let Some((m, eligible)) = cur.as_mut() else { continue };
        let kb = || f.clone().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        match first {
            "Rss:" => m.resident = kb() * 1024,
            // Private pages: releasing them would lose their contents.
            "Anonymous:" | "Swap:" | "Private_Dirty:" if kb() != 0 => *eligible = false,
            // Locked pages stay by request.
            "Locked:" if kb() != 0 => *eligible = false,
            "VmFlags:" if line.contains(" lo") || line.contains(" io") => *eligible = false,
            _ => {}
        }
    }
    finish(cur.take(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c2a00000-55d0c2b00000 r-xp 00010000 fd:01 1234  /usr/bin/portd
Size:               1024 kB
Rss:                 400 kB
Anonymous:             0 kB
Swap:                  0 kB
Locked:                0 kB
VmFlags: rd ex mr mw me dw
55d0c2b00000-55d0c2b10000 r--p 00110000 fd:01 1234  /usr/bin/portd
Rss:                  64 kB
Anonymous:            64 kB
VmFlags: rd mr mw me dw ac
55d0c2b10000-55d0c2b20000 rw-p 00120000 fd:01 1234  /usr/bin/portd
Rss:                  64 kB
Anonymous:             8 kB
VmFlags: rd wr mr mw me dw ac
7f0000000000-7f0000100000 r--p 00000000 00:00 0 
Rss:                  12 kB
Anonymous:            12 kB
7f0000100000-7f0000200000 r--s 00000000 fd:01 99  /tmp/some file
Rss:                  16 kB
Anonymous:             0 kB
7f0000300000-7f0000400000 r-xp 00000000 fd:01 98  /lib/libc.so.6
Rss:                   0 kB
Anonymous:             0 kB
7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0  [vdso]
Rss:                   4 kB
";

    #[test]
    fn releases_only_clean_read_only_file_mappings_with_resident_pages() {
        let m = clean_file_mappings(SMAPS);
        let starts: Vec<usize> = m.iter().map(|m| m.start).collect();
        assert_eq!(starts, [0x55d0c2a00000, 0x7f0000100000], "{m:?}");
        assert_eq!(m[0].resident, 400 * 1024);
        assert_eq!(m[0].end, 0x55d0c2b00000);
    }

    #[test]
    fn trimming_this_process_keeps_it_working_and_smaller() {
        let status = |key: &str| -> u64 {
            let s = fs::read_to_string("/proc/self/status").unwrap();
            let line = s.lines().find(|l| l.starts_with(key)).unwrap();
            line.split_ascii_whitespace().nth(1).unwrap().parse().unwrap()
        };
        let before = status("RssFile:");
        let t = trim_resident();
        let after = status("RssFile:");
        assert!(t.file_bytes > 0, "{t:?}");
        assert!(after < before, "RssFile {before} kB -> {after} kB");
        // Code and constants fault back in: the process still works.
        let v: Vec<String> = (0..1000).map(|i| format!("{i}")).collect();
        assert_eq!(v[999], "999");
    }
}
