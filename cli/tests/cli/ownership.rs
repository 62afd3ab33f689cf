//! Whose is the server on a project's port? One rule decides for `get`,
//! `check` and `doctor`: the entry's live owner, its recorded child, their
//! descendants, and the process group the lease's command leads. A server
//! started by hand with the project's port in its environment is adopted
//! as the owner. And `check` says what the OS says: a port this user cannot
//! bind, a socket bound but not listening, connections in TIME_WAIT.

use crate::util::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A background process, killed (with its process group when it leads
/// one) and reaped when dropped.
struct Proc(Child);

impl Proc {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` in a process group of its own, output discarded.
fn start(mut cmd: Command) -> Proc {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    Proc(cmd.spawn().expect("cannot start a test process"))
}

/// Waits until something answers HTTP on 127.0.0.1:port.
fn serving(port: u16) {
    wait_for(&format!("a server on {port}"), Duration::from_secs(20), || {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/")
    });
}

fn check_json(env: &Env, port: u16) -> CheckJson {
    let mut all: Vec<CheckJson> = env.run(&["check", &port.to_string(), "--json"]).json();
    assert_eq!(all.len(), 1);
    all.remove(0)
}

/// `python3 -m http.server PORT` on loopback.
fn python_server(port: u16) -> Command {
    let mut c = Command::new("python3");
    c.args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"]);
    c
}

/// Asserts that every process bound to `port` is the project's owner,
/// in `check --json` and in the human output, and that there are at
/// least `min` of them.
#[track_caller]
fn all_owners(env: &Env, port: u16, project: &str, min: usize) -> CheckJson {
    let c = check_json(env, port);
    assert_eq!((c.project.as_deref(), c.state.as_deref()), (Some(project), Some("active")));
    assert!(c.bound_by.len() >= min, "{c:#?}");
    assert!(c.bound_by.iter().all(|h| h.is_owner), "{c:#?}");
    let out = env.run(&["check", &port.to_string()]);
    let text = out.ok();
    assert!(text.starts_with(&format!("port {port}: held\n")), "{text}");
    assert_eq!(text.matches("(the project's owner)").count(), c.bound_by.len(), "{text}");
    assert!(!text.contains("NOT"), "{text}");
    c
}

#[test]
fn check_calls_the_server_of_portd_run_the_projects_owner() {
    let env = private_range(25000, 100);
    let run =
        start(env.command(["run", "own-http", "--", "python3", "-m", "http.server", "{port}"]));
    let port = wait_port(&env, "own-http");
    serving(port);
    let c = all_owners(&env, port, "own-http", 1);
    assert!(c.bound_by.iter().any(|h| h.name.starts_with("python")), "{c:#?}");
    drop(run);
}

/// The port of `name` once its `portd run` lease is recorded.
fn wait_port(env: &Env, name: &str) -> u16 {
    let mut port = 0;
    wait_for(&format!("`{name}` to be leased"), Duration::from_secs(20), || {
        let e = env.ls().into_iter().find(|e| e.project == name && e.child_pid.is_some());
        port = e.map_or(0, |e| e.port);
        port != 0
    });
    port
}

#[test]
fn check_calls_gunicorns_master_and_workers_under_run_fd_the_owner() {
    if Command::new("gunicorn").arg("--version").output().is_err() {
        return skip("gunicorn is not installed (`python3 -m pip install gunicorn`)");
    }
    let env = private_range(25100, 100);
    let app = env.root().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("hello.py"),
        "def app(environ, start_response):\n    \
         start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
         return [b'hello\\n']\n",
    )
    .unwrap();
    let dir = app.to_str().unwrap();
    // Without `--bind`: gunicorn takes the socket from `LISTEN_FDS` itself.
    let run = start(env.command([
        "run",
        "own-gunicorn",
        "--fd",
        "--",
        "gunicorn",
        "-w",
        "2",
        "--chdir",
        dir,
        "hello:app",
    ]));
    let port = wait_port(&env, "own-gunicorn");
    serving(port);
    // The master and both workers hold the socket.
    wait_for("gunicorn's workers", Duration::from_secs(20), || {
        check_json(&env, port).bound_by.iter().filter(|h| h.name.contains("gunicorn")).count() >= 3
    });
    all_owners(&env, port, "own-gunicorn", 3);
    drop(run);
}

#[test]
fn check_calls_the_children_of_a_pid_owner_the_owner() {
    let env = private_range(25200, 100);
    let port = env.run(&["get", "own-kids"]).port();
    let script = format!("python3 -m http.server {port} --bind 127.0.0.1 & wait");
    let mut sh = Command::new("sh");
    sh.args(["-c", &script]);
    let sh = start(sh);
    serving(port);
    let out = env.run(&["get", "own-kids", "--pid", &sh.id().to_string()]);
    assert_eq!((out.code, out.stdout.clone(), out.stderr.as_str()), (0, format!("{port}\n"), ""));
    let c = all_owners(&env, port, "own-kids", 1);
    assert!(c.bound_by.iter().all(|h| h.pid != sh.id()), "the shell itself does not listen");
    // And so `get` is quiet about it, and `--free` agrees.
    assert_eq!(env.run(&["get", "own-kids"]).port(), port);
    assert_eq!(env.run(&["get", "own-kids", "--free"]).port(), port);
}

const NODE_SERVER: &str = "require('http')\n  \
    .createServer((req, res) => res.end('api\\n'))\n  \
    .listen(Number(process.env.PORT));\n";

/// `sh -c LINE` in `dir`, with `portd` on the `PATH` and the test's
/// registry and configuration, as a user's shell would run it.
fn shell_line(env: &Env, dir: &Path, line: &str, extra: &[(&str, &str)]) -> Command {
    let bin = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut c = Command::new("sh");
    c.args(["-c", line])
        .env_clear()
        .env("PATH", path)
        .env("HOME", env.root())
        .env("XDG_CONFIG_HOME", env.root())
        .env("PORTD_HOME", env.home())
        .envs(extra.iter().copied())
        .current_dir(dir);
    c
}

fn node_app(env: &Env) -> std::path::PathBuf {
    let dir = env.root().join("api");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("server.js"), NODE_SERVER).unwrap();
    dir
}

fn have_node() -> bool {
    Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn a_server_started_as_the_readme_shows_is_adopted_as_the_owner_silently() {
    if !have_node() {
        return skip("node is not installed");
    }
    let env = private_range(25300, 100);
    let dir = node_app(&env);
    let port = env.run(&["get", "api"]).port();
    let server = start(shell_line(&env, &dir, "PORT=$(portd get api) node server.js", &[]));
    serving(port);

    // No warning, ever: the listener carries api's port in its environment.
    assert_eq!(env.run(&["get", "api"]).port(), port);
    let e = env.ls().into_iter().find(|e| e.project == "api").unwrap();
    assert_eq!(e.state, "active", "{e:#?}");
    let pid = e.pid.expect("the server is recorded as the owner");
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmd).contains("server.js"), "pid {pid} is the server");
    assert_eq!(env.run(&["get", "api"]).port(), port);
    assert_eq!(env.run(&["get", "api", "--free"]).port(), port);
    let c = all_owners(&env, port, "api", 1);
    assert_eq!(c.owner_pid, Some(pid));
    let doctor = env.run(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&doctor.stdout).unwrap();
    let bound = report["findings"].as_array().unwrap().iter().find(|f| f["check"] == "bound");
    assert_eq!(bound.unwrap()["status"], "ok", "{doctor:#?}");

    // When the server stops, the lease is idle again and keeps the port
    // (the server may be a grandchild of the test: its exit is awaited).
    drop(server);
    wait_for("the adopted server to be gone", Duration::from_secs(5), || {
        env.ls().into_iter().any(|e| e.project == "api" && e.state == "idle" && e.port == port)
    });
}

#[test]
fn get_free_adopts_a_server_started_with_the_projects_port() {
    if !have_node() {
        return skip("node is not installed");
    }
    let env = private_range(25400, 100);
    let dir = node_app(&env);
    let port = env.run(&["get", "api"]).port();
    let server = start(shell_line(&env, &dir, "PORT=$(portd get api) node server.js", &[]));
    serving(port);
    // The first call after the start is `--free`: it adopts too.
    assert_eq!(env.run(&["get", "api", "--free"]).port(), port);
    let e = env.ls().into_iter().find(|e| e.project == "api").unwrap();
    assert_eq!(e.state, "active", "{e:#?}");
    assert_eq!(env.run(&["get", "api"]).port(), port);
    drop(server);
}

#[test]
fn a_server_exported_for_another_project_is_not_adopted() {
    if !have_node() {
        return skip("node is not installed");
    }
    let env = private_range(25500, 100);
    let dir = node_app(&env);
    let port = env.run(&["get", "api"]).port();
    let p = port.to_string();
    let vars = [("PORT", p.as_str()), ("PORTD_PORT", p.as_str()), ("PORTD_PROJECT", "web")];
    let server = start(shell_line(&env, &dir, "exec node server.js", &vars));
    serving(port);
    let out = env.run(&["get", "api"]);
    assert_eq!((out.code, out.stdout.clone()), (0, format!("{port}\n")), "{out:#?}");
    let pid = server.id();
    assert_eq!(
        out.stderr,
        format!("warning: port {port} is bound by pid {pid} (node), not by `api`'s owner\n")
    );
    let e = env.ls().into_iter().find(|e| e.project == "api").unwrap();
    assert_eq!((e.state.as_str(), e.pid), ("idle", None));
    let err = env.run(&["get", "api", "--free"]).error(5).to_owned();
    assert!(err.starts_with(&format!("error: port {port} is bound by pid {pid} (node)")), "{err}");
}

#[test]
fn get_port_with_the_pid_of_its_listener_adopts_the_running_server() {
    let env = private_range(25600, 100);
    // A free port for a new project, as allocation would see it.
    let port = env.run(&["get", "scout"]).port();
    env.run(&["release", "scout"]);
    let server = start(python_server(port));
    serving(port);
    let p = port.to_string();

    // Another process's pid is refused, and nothing changes.
    let mut sleep = Command::new("sleep");
    sleep.arg("60");
    let other = start(sleep);
    let before = env.ls_raw();
    let other = other.id().to_string();
    let err = env.run(&["get", "adopted", "--port", &p, "--pid", &other]).error(5).to_owned();
    assert!(
        err.starts_with(&format!("error: port {port} is bound by pid {}", server.id())),
        "{err}"
    );
    assert_eq!(env.ls_raw(), before);

    // The listener's own pid is granted its port.
    let out = env.run(&["get", "adopted", "--port", &p, "--pid", &server.id().to_string()]);
    assert_eq!(out.port(), port);
    let e = env.ls().into_iter().find(|e| e.project == "adopted").unwrap();
    assert_eq!((e.state.as_str(), e.pid, e.port), ("active", Some(server.id()), port));
    all_owners(&env, port, "adopted", 1);
}

#[test]
fn get_port_with_the_pid_of_the_listeners_parent_is_granted_too() {
    let env = private_range(25700, 100);
    let port = env.run(&["get", "scout"]).port();
    env.run(&["release", "scout"]);
    let mut sh = Command::new("sh");
    sh.args(["-c", &format!("python3 -m http.server {port} --bind 127.0.0.1 & wait")]);
    let sh = start(sh);
    serving(port);
    let out =
        env.run(&["get", "family", "--port", &port.to_string(), "--pid", &sh.id().to_string()]);
    assert_eq!(out.port(), port);
    all_owners(&env, port, "family", 1);
}

// ---- what the OS says -----------------------------------------------------

/// `portd ARGS` as a user who cannot bind ports below 1024: this user
/// when not root, else uid 65534 (with a registry of its own).
fn unprivileged(env: &Env, args: &[&str]) -> Output {
    let mut cmd = env.command(args);
    if is_root(env) {
        std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let _ = std::fs::create_dir(env.home());
        std::os::unix::fs::chown(env.home(), Some(65534), Some(65534)).unwrap();
        cmd.uid(65534).gid(65534);
    }
    env.output(cmd)
}

/// Whether ports below 1024 are privileged here.
fn privileged_ports() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .is_some_and(|start| start >= 1024)
}

#[test]
fn check_says_a_privileged_port_cannot_be_bound_by_this_user() {
    if !privileged_ports() {
        return skip("ports below 1024 are not privileged here");
    }
    let env = Env::new();
    env.write_config(
        "allow_privileged = true\n[[range]]\nname = \"low\"\nstart = 900\nend = 909\n",
    );
    let out = unprivileged(&env, &["check", "905", "--json"]);
    let c: Vec<CheckJson> = out.json();
    let c = &c[0];
    assert_eq!((c.port, c.bindable, c.free, c.denied), (905, false, false, true), "{c:#?}");
    assert!(c.bound_by.is_empty(), "{c:#?}");
    let out = unprivileged(&env, &["check", "905"]);
    assert_eq!(
        out.ok(),
        "port 905: cannot be bound by this user\n  \
         range      low\n  \
         bind       denied: ports below 1024 need root or CAP_NET_BIND_SERVICE\n"
    );
}

#[test]
fn get_says_when_no_port_of_the_range_can_be_bound_by_this_user() {
    if !privileged_ports() {
        return skip("ports below 1024 are not privileged here");
    }
    let env = Env::new();
    env.write_config(
        "allow_privileged = true\n[[range]]\nname = \"low\"\nstart = 900\nend = 909\n",
    );
    let out = unprivileged(&env, &["get", "lowly"]);
    assert_eq!(
        out.error(3),
        "error: no free port: this user cannot bind any port of `low 900-909`\n\
         hint: ports below 1024 need root or CAP_NET_BIND_SERVICE: configure a range above 1023\n"
    );
}

#[test]
fn check_names_the_process_of_a_socket_bound_but_not_listening() {
    use socket2::{Domain, Protocol, Socket, Type};
    if kernel_version() < (6, 5) {
        return skip("Linux before 6.5 does not report sockets bound but not listening");
    }
    let env = private_range(25800, 100);
    let port = env.run(&["get", "scout"]).port();
    env.run(&["release", "scout"]);
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into()).unwrap();
    let me = std::process::id();
    let c = check_json(&env, port);
    assert_eq!((c.bindable, c.free, c.denied), (false, false, false), "{c:#?}");
    let h = c.bound_by.iter().find(|h| h.pid == me).expect("this process is named");
    assert!(!h.listening && !h.is_owner, "{h:#?}");
    let out = env.run(&["check", &port.to_string()]);
    let text = out.ok();
    assert!(text.starts_with(&format!("port {port}: bound\n")), "{text}");
    assert!(text.contains(&format!("  bound      not listening, by pid {me} (")), "{text}");
    assert!(!text.contains("cannot see"), "{text}");
    drop(s);
}

/// Leaves a connection in TIME_WAIT on `port`: the server side closes first.
fn time_wait_on(port: u16) {
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s, _) = l.accept().unwrap();
    drop(s);
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).unwrap();
    drop(c);
    drop(l);
    std::thread::sleep(Duration::from_millis(50));
}

#[test]
fn check_and_get_port_agree_on_a_port_in_time_wait() {
    let env = private_range(25900, 100);
    let port = env.run(&["get", "scout"]).port();
    env.run(&["release", "scout"]);
    time_wait_on(port);
    let c = check_json(&env, port);
    let before = env.ls_raw();
    let got = env.run(&["get", "latecomer", "--port", &port.to_string()]);
    assert_eq!(c.free, got.code == 0, "check and get disagree: {c:#?} {got:#?}");
    assert_eq!((c.free, c.bindable, c.time_wait), (false, true, true), "{c:#?}");
    assert_eq!(
        got.error(5),
        format!(
            "error: port {port} has connections in TIME_WAIT: a new server cannot bind it yet\n\
             hint: it is free again within a minute; or pick another port\n"
        )
    );
    assert_eq!(env.ls_raw(), before);
    let text = env.run(&["check", &port.to_string()]).ok().to_owned();
    assert!(text.starts_with(&format!("port {port}: busy\n")), "{text}");
    assert!(
        text.contains("  bound      no; connections in TIME_WAIT keep it from a new server\n"),
        "{text}"
    );
}
