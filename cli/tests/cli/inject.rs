//! `portd run` with a real Vite dev server, which ignores `PORT`: the flags
//! portd appends put it on the project's port, `--no-inject` leaves it on
//! its own default, a script with shell operators gets a note and nothing
//! added, and a port the user gave is not given twice.
//!
//! The fixture `tests/fixtures/vite-app` pins Vite in its lockfile; `.ci/run`
//! installs it (`npm ci`). Without its `node_modules` these tests skip.

use crate::util::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `portd run` in the background whose stdout and stderr are collected
/// as they come. Dropping it (also on a failed assertion) ends it: SIGTERM,
/// which portd forwards to the command's group, then SIGKILL, which takes
/// the command with it.
struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(env: &Env, dir: &Path, args: &[&str]) -> Running {
        let mut child = env
            .command(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start portd");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let pump = |from: Box<dyn Read + Send>, to: Arc<Mutex<String>>| {
            std::thread::spawn(move || {
                for line in BufReader::new(from).lines().map_while(Result::ok) {
                    let mut t = to.lock().unwrap();
                    t.push_str(&line);
                    t.push('\n');
                }
            })
        };
        let readers = vec![
            pump(Box::new(child.stdout.take().unwrap()), stdout.clone()),
            pump(Box::new(child.stderr.take().unwrap()), stderr.clone()),
        ];
        Running { child, stdout, stderr, readers }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Fails the test, with what it printed, if `portd run` has exited.
    #[track_caller]
    fn still_running(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "`portd run` exited early ({st})\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
        }
    }

    /// Ends the run with SIGTERM and returns its exit status as a shell
    /// shows it (128+N for a death by signal N) and everything it printed.
    fn stop(mut self) -> (i32, String, String) {
        let status = self.terminate();
        for r in std::mem::take(&mut self.readers) {
            let _ = r.join();
        }
        let code = status.code().or(status.signal().map(|n| 128 + n)).unwrap_or(-1);
        (code, self.stdout(), self.stderr())
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        if let Some(st) = self.child.try_wait().unwrap() {
            return st;
        }
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// One HTTP/1.0 GET of `/` on localhost:port (127.0.0.1 or ::1, as Vite's
/// own default host `localhost` may be either); the whole response.
fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("localhost", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The port `portd run` leased for `name`, once it has recorded the command.
fn leased(env: &Env, run: &mut Running, name: &str) -> u16 {
    let mut port = None;
    wait_for(&format!("`{name}` to be active"), Duration::from_secs(15), || {
        run.still_running();
        port = env
            .ls()
            .into_iter()
            .find(|e| e.project == name && e.child_pid.is_some())
            .map(|e| e.port);
        port.is_some()
    });
    port.unwrap()
}

/// Polls `GET /` on `port` until it answers (Vite takes a moment to start);
/// the response.
fn served(run: &mut Running, port: u16) -> String {
    let mut body = String::new();
    wait_for(&format!("Vite on port {port}"), Duration::from_secs(15), || {
        run.still_running();
        match http_get(port) {
            Ok(b) => {
                body = b;
                true
            }
            Err(_) => false,
        }
    });
    body
}

fn added_line(port: u16) -> String {
    format!(
        "portd: added `--port {port} --strictPort --host 127.0.0.1` (vite ignores PORT); \
         pass `--no-inject` to stop this"
    )
}

/// portd's own lines on stderr, but for its account of processes it
/// stopped at the end ("portd: stopped 1 process left by …"): whether Vite
/// outlives npm's exit at SIGTERM is a race.
fn portd_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("portd") && !l.starts_with("portd: stopped ")).collect()
}

/// Asserts the end of a run stopped by SIGTERM: portd passes on the
/// command's death by that signal (or npm's exit status for it).
#[track_caller]
fn ended_by_sigterm(code: i32, stderr: &str) {
    assert!(code == 143 || code == 1, "exit {code}; stderr:\n{stderr}");
    assert!(!stderr.contains("error:"), "{stderr}");
}

#[test]
fn npm_run_dev_of_a_vite_script_serves_on_the_leased_port() {
    let Some(dir) = vite_fixture() else { return };
    let env = private_range(30500, 100);
    let mut run = Running::start(&env, &dir, &["run", "inject-web", "--", "npm", "run", "dev"]);
    let port = leased(&env, &mut run, "inject-web");
    let body = served(&mut run, port);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains(VITE_MARKER), "{body}");
    let (code, stdout, stderr) = run.stop();
    ended_by_sigterm(code, &stderr);
    // The one line about the flags, printed before the command starts.
    assert_eq!(stderr.lines().next(), Some(added_line(port).as_str()), "{stderr}");
    assert_eq!(portd_lines(&stderr), [added_line(port)], "{stderr}");
    // npm ran the script with the flags after `--`, so Vite saw them.
    assert!(
        stdout.contains(&format!("> vite --port {port} --strictPort --host 127.0.0.1")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("http://127.0.0.1:{port}/")), "{stdout}");
    // The lease went idle with the run.
    let e = env.ls().into_iter().find(|e| e.project == "inject-web").unwrap();
    assert_eq!((e.port, e.state.as_str()), (port, "idle"));
}

#[test]
fn npx_vite_gets_the_flags_and_quiet_hides_the_line() {
    let Some(dir) = vite_fixture() else { return };
    let env = private_range(30600, 100);
    let mut run = Running::start(&env, &dir, &["run", "inject-npx", "--", "npx", "vite"]);
    let port = leased(&env, &mut run, "inject-npx");
    assert!(served(&mut run, port).contains(VITE_MARKER));
    let (code, stdout, stderr) = run.stop();
    ended_by_sigterm(code, &stderr);
    assert_eq!(stderr.lines().next(), Some(added_line(port).as_str()), "{stderr}");
    assert_eq!(portd_lines(&stderr), [added_line(port)], "{stderr}");
    assert!(stdout.contains(&format!("http://127.0.0.1:{port}/")), "{stdout}");

    // With -q the flags are added all the same, and nothing is said.
    let mut run = Running::start(&env, &dir, &["-q", "run", "inject-npx", "--", "npx", "vite"]);
    let again = leased(&env, &mut run, "inject-npx");
    assert_eq!(again, port, "the same project, the same port");
    assert!(served(&mut run, port).contains(VITE_MARKER));
    let (code, _, stderr) = run.stop();
    ended_by_sigterm(code, &stderr);
    assert!(portd_lines(&stderr).is_empty(), "{stderr}");
}

#[test]
fn no_inject_leaves_vite_on_its_own_port() {
    let Some(dir) = vite_fixture() else { return };
    let env = private_range(30700, 100);
    let mut run =
        Running::start(&env, &dir, &["run", "inject-off", "--no-inject", "--", "npx", "vite"]);
    let port = leased(&env, &mut run, "inject-off");
    // Vite says where it listens once it is ready: not on the lease.
    let mut local = String::new();
    wait_for("Vite to be ready", Duration::from_secs(15), || {
        run.still_running();
        local = run.stdout().lines().find(|l| l.contains("Local:")).unwrap_or_default().to_owned();
        !local.is_empty()
    });
    assert!(!local.contains(&format!(":{port}/")), "{local}");
    // And the leased port stays silent for a while.
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        assert!(http_get(port).is_err(), "something answers on the leased port {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, stdout, stderr) = run.stop();
    ended_by_sigterm(code, &stderr);
    assert!(portd_lines(&stderr).is_empty(), "{stderr}");
    assert!(!stdout.contains("--port"), "{stdout}");
}

#[test]
fn a_script_with_shell_operators_gets_a_note_and_nothing_added() {
    let Some(dir) = vite_fixture() else { return };
    let env = private_range(30800, 100);
    let mut run = Running::start(&env, &dir, &["run", "inject-both", "--", "npm", "run", "both"]);
    leased(&env, &mut run, "inject-both");
    // npm echoes the script it runs: unchanged.
    wait_for("npm to run the script", Duration::from_secs(15), || {
        run.still_running();
        run.stdout().contains("> vite && echo done")
    });
    let (code, stdout, stderr) = run.stop();
    ended_by_sigterm(code, &stderr);
    let note = "portd: the `both` script (`vite && echo done`) has shell operators, so nothing \
                was added (vite ignores PORT); give it `--port $PORT` in the script, or run the \
                server directly with `--port {port}`";
    assert_eq!(stderr.lines().next(), Some(note), "{stderr}");
    assert_eq!(portd_lines(&stderr), [note], "{stderr}");
    assert!(!stdout.contains("--port"), "{stdout}");
}

#[test]
fn a_port_the_user_gave_is_not_given_twice() {
    let Some(dir) = vite_fixture() else { return };
    let env = private_range(30900, 100);
    let args = ["run", "inject-own", "--", "npx", "vite", "--port", "{port}", "--strictPort"];
    let mut run = Running::start(&env, &dir, &args);
    let port = leased(&env, &mut run, "inject-own");
    assert!(served(&mut run, port).contains(VITE_MARKER));
    let (code, stdout, stderr) = run.stop();
    ended_by_sigterm(code, &stderr);
    assert!(portd_lines(&stderr).is_empty(), "nothing added, nothing said: {stderr}");
    // Vite's own default host (localhost), as the user asked nothing else.
    assert!(stdout.contains(&format!("http://localhost:{port}/")), "{stdout}");
}
