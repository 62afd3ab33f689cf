//! A real interactive bash on a pseudo-terminal, driven from a test: what
//! a person at a terminal types and sees (`job_control.rs`,
//! `servers_pty.rs`).

use crate::util::Env;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// Drives `bash --norc --noprofile -i` on a pty. Reads steps from stdin,
/// one per line: `send HEX` (bytes to type, hex-encoded), `expect REGEX`
/// (prints `MATCHED <text up to the match>`), `sleep SECONDS`, `exited`
/// (waits for bash to end by itself; prints `EXITED STATUS`), `hangup`
/// (closes the terminal's master side, as a closed terminal window does;
/// waits for bash to end; prints `EXITED STATUS`). Exits 3 when an expected
/// text or an end does not come within 15 s.
const DRIVER: &str = r#"
import os, pty, re, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.environ['PS1'] = 'PROMPT$ '
    os.execvp('bash', ['bash', '--norc', '--noprofile', '-i'])
buf = b''
def expect(pat):
    global buf
    end = time.time() + 15
    while True:
        m = re.search(pat.encode(), buf)
        if m:
            out, buf = buf[:m.end()], buf[m.end():]
            return out.decode(errors='replace')
        r, _, _ = select.select([fd], [], [], max(0, end - time.time()))
        data = b''
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                pass
        if not data:
            print('TIMEOUT waiting for %r; got %r' % (pat, buf), flush=True)
            os.kill(pid, 9)
            sys.exit(3)
        buf += data
def ended(drain):
    end = time.time() + 15
    while time.time() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if drain:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    os.read(fd, 4096)
                except OSError:
                    time.sleep(0.05)
        else:
            time.sleep(0.05)
    print('TIMEOUT waiting for bash to end', flush=True)
    os.kill(pid, 9)
    sys.exit(3)
for line in sys.stdin:
    verb, _, arg = line.rstrip('\n').partition(' ')
    if verb == 'send':
        os.write(fd, bytes.fromhex(arg))
    elif verb == 'expect':
        print('MATCHED ' + repr(expect(arg)), flush=True)
    elif verb == 'sleep':
        time.sleep(float(arg))
    elif verb == 'exited':
        print('EXITED %d' % ended(True), flush=True)
    elif verb == 'hangup':
        os.close(fd)
        print('EXITED %d' % ended(False), flush=True)
try:
    os.kill(pid, 9)
except OSError:
    pass
"#;

/// The driver, and what it prints.
pub struct Pty {
    pub child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Pty {
    pub fn start(env: &Env) -> Pty {
        let mut child = Command::new("python3")
            .args(["-c", DRIVER])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", env.root())
            .env("XDG_CONFIG_HOME", env.root())
            .env("PORTD_HOME", env.home())
            .env("TERM", "dumb")
            .current_dir(env.root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Pty { child, out }
    }

    pub fn step(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, text: &str) {
        let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
        self.step(&format!("send {hex}"));
    }

    /// The driver's answer to the last step.
    #[track_caller]
    pub fn answer(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert!(line.starts_with(prefix), "on the terminal: {line}");
        line
    }

    /// Waits for `regex` on the terminal; returns the text up to it.
    #[track_caller]
    pub fn expect(&mut self, regex: &str) -> String {
        self.step(&format!("expect {regex}"));
        self.answer("MATCHED ")
    }

    /// Waits for bash to end (`exited`, or `hangup` first); returns its
    /// wait status.
    #[track_caller]
    pub fn end(&mut self, verb: &str) -> i32 {
        self.step(verb);
        self.answer("EXITED ").trim_end()["EXITED ".len()..].parse().unwrap()
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
