//! The only way portd writes output.
//!
//! stdout carries data only (what `$(portd get)` captures); messages,
//! warnings and errors go to stderr. A closed stdout (`portd ls | head`) is
//! not an error. Colour is never used: nothing depends on it.

use std::io::{self, Write};

/// Where output goes, and how much of it.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// Print JSON on stdout instead of text.
    pub json: bool,
    /// Suppress informational messages and warnings on stderr.
    pub quiet: bool,
    /// Extra detail on stderr.
    pub verbose: bool,
}

impl Printer {
    /// Writes data to stdout. A broken pipe is swallowed: the reader is gone.
    pub fn data(&self, text: &str) {
        let mut out = io::stdout().lock();
        let r = out
            .write_all(text.as_bytes())
            .and_then(|()| if text.ends_with('\n') { Ok(()) } else { out.write_all(b"\n") });
        let _ = r.and_then(|()| out.flush());
    }

    /// Writes a value as pretty JSON on stdout.
    pub fn json<T: serde::Serialize>(&self, value: &T) {
        // Serialising our own plain structs cannot fail.
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        self.data(&text);
    }

    /// An informational line on stderr (hidden by `-q`).
    pub fn info(&self, text: &str) {
        if !self.quiet {
            let _ = writeln!(io::stderr().lock(), "{text}");
        }
    }

    /// A warning on stderr (hidden by `-q`).
    pub fn warn(&self, text: &str) {
        if !self.quiet {
            let _ = writeln!(io::stderr().lock(), "warning: {text}");
        }
    }

    /// A detail shown with `-v`.
    pub fn detail(&self, text: &str) {
        if self.verbose && !self.quiet {
            let _ = writeln!(io::stderr().lock(), "{text}");
        }
    }

    /// The error line and its optional hint; never suppressed.
    pub fn error(&self, message: &str, hint: Option<&str>) {
        let mut err = io::stderr().lock();
        let _ = writeln!(err, "error: {message}");
        if let Some(h) = hint {
            let _ = writeln!(err, "hint: {h}");
        }
    }
}

/// Formats rows as a left-aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// A command line for people to read on one line: arguments that need it
/// are single-quoted as a shell would take them, control characters are
/// escaped (a newline in an argument never breaks the output's lines).
pub fn command_line(args: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,{}".contains(c))
    };
    let quote = |a: &str| {
        let inner: String = a
            .chars()
            .flat_map(|c| match c {
                '\'' => "'\\''".chars().collect::<Vec<_>>(),
                c if c.is_control() => c.escape_default().collect(),
                c => vec![c],
            })
            .collect();
        format!("'{inner}'")
    };
    args.iter().map(|a| if plain(a) { a.clone() } else { quote(a) }).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::command_line;

    #[test]
    fn command_lines_stay_on_one_line_and_quote_what_needs_it() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&args(&["python3", "-m", "http.server", "4100"])),
            "python3 -m http.server 4100"
        );
        assert_eq!(
            command_line(&args(&["sh", "-c", "echo hi; exit 7"])),
            "sh -c 'echo hi; exit 7'"
        );
        assert_eq!(command_line(&args(&["a\nb", "it's", ""])), r"'a\nb' 'it'\''s' ''");
    }
}
