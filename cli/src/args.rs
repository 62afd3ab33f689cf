//! Command-line arguments as written (clap derive). Resolution into a
//! registry, a project and options happens in `main.rs` and the commands.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// The exit-code table, shown in `--help` and the README.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  ok                       5  port busy
  1  other error              6  registry busy (lock timeout)
  2  usage                    7  registry damaged
  3  no free port             8  configuration invalid
  4  unknown project          9  permission refused
                             10  server failed to start (not healthy in time)"
    };
}

const MAIN_AFTER: &str = concat!(
    "Examples:
  portd get myapp                 print myapp's port (the same every time)
  PORT=$(portd get myapp) npm start
  eval \"$(portd env myapp)\"       export PORT for this shell
  portd ls                        what holds which port
  portd check 4123                who has port 4123, and why

Environment:
  PORTD_HOME          registry directory (an absolute path)
  PORTD_CONFIG        config file (an absolute path)
  PORTD_RANGE         range of new allocations when none is asked for
  PORTD_PORT          pin the port (with PORTD_PROJECT_KEY: for that project only)
  PORTD_PROJECT       the shown name of the project PORTD_PORT was exported for
  PORTD_PROJECT_KEY   its key (name or directory path): the pin applies to it only
  PORTD_LOCK_TIMEOUT  how long to wait for a busy registry (100ms to 10m)
  PORTD_IDLE_TTL      idle entries older than this are dropped (1m to 36500d)
  PORTD_SHARED        1 or true: a registry shared between users (0 or false: not)
  PORTD_BACKTRACE     set: print the full report of a crash (for bug reports)
  PORTD_PROXY_PORT    the proxy's port (default 7780)
  PORTD_PROXY_BIN     the `portd-proxy` binary (default: the one beside portd)
  PORTD_BIN           the `portd` binary the proxy starts servers with (set by `portd proxy`)

",
    exit_codes!()
);

/// portd: a stable, unique, really-free port for every project, with no daemon.
#[derive(Debug, Parser)]
#[command(name = "portd", version, about, after_help = MAIN_AFTER, max_term_width = 100)]
pub struct Cli {
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Registry directory (same as PORTD_HOME).
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Print only data: no messages or warnings.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Say more on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// A project: a name, a directory, or (neither) the current directory.
#[derive(Debug, Args, Clone)]
pub struct ProjectArg {
    /// Project name (`myapp`, `myapp:api`); a path (`./web`) names a directory project.
    /// Default: the current directory's git work tree, or the directory itself.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Use this directory as the project.
    #[arg(long, value_name = "DIR", conflicts_with = "name")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Allocate only from this range (e.g. `experimental`).
    #[arg(long, value_name = "RANGE")]
    pub range: Option<String>,
    /// Ask for exactly this port.
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub port: Option<u16>,
    /// Fail (exit 5) unless the port can be bound right now.
    #[arg(long)]
    pub free: bool,
    /// If the port is bound by another process, take a fresh one instead of failing.
    #[arg(long = "move")]
    pub move_port: bool,
    /// Record this running process as the lease's owner.
    #[arg(long, value_name = "PID", value_parser = parse_pid)]
    pub pid: Option<u32>,
    /// Require the UDP port to be free as well.
    #[arg(long)]
    pub udp: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Allocate only from this range.
    #[arg(long, value_name = "RANGE")]
    pub range: Option<String>,
    /// Ask for exactly this port.
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub port: Option<u16>,
    /// Bind the port first and pass the listening sockets from fd 3 (systemd
    /// protocol: LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES): 127.0.0.1 and, where
    /// IPv6 is up, ::1 (two sockets); with `--host`, that address only.
    #[arg(long)]
    pub fd: bool,
    /// If the port is bound by another process, take a fresh one instead of failing.
    #[arg(long = "move")]
    pub move_port: bool,
    /// Require the UDP port to be free as well.
    #[arg(long)]
    pub udp: bool,
    /// Set HOST for the command, and the `--host` given to dev servers that
    /// ignore PORT; with `--fd`, the address to listen on (`0.0.0.0` or `::`
    /// reach the network; default: loopback).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// When the command exits, how long what it left running gets between
    /// SIGTERM and SIGKILL (`500ms`, `5s`, `1m`).
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_grace)]
    pub kill_grace: std::time::Duration,
    /// Do not append `--port N` (and `--strictPort`, `--host`) to dev servers
    /// that ignore PORT (vite, astro, ng serve, react-router, rsbuild, expo).
    #[arg(long)]
    pub no_inject: bool,
    /// The command and its arguments; `{port}` is replaced by the port.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the project's port, allocating one on first use.
    #[command(after_help = "\
Examples:
  portd get myapp                 4123 (stable: the same answer every time)
  portd get                       the current git work tree's port
  portd get ci-42 --range experimental
  portd get myapp --free --move   a port that can be bound now, moving if needed
  portd get myapp --json")]
    Get(GetArgs),
    /// Run a command on the project's port, holding an active lease while it runs.
    #[command(after_help = "\
Examples:
  portd run myapp -- npm run dev                 the server reads PORT
  portd run api -- python3 -m http.server {port}
  portd run web -- npm run dev                   a vite script: `--port N --strictPort
                                                 --host 127.0.0.1` appended (after `--`)
  portd run svc --fd -- ./server                 listening sockets from fd 3 (systemd style)

Dev servers that ignore PORT (vite, astro, ng serve, react-router, rsbuild, expo), run directly,
through npx/pnpm exec/yarn dlx/bunx, or as a package.json script, get `--port N` (and
`--strictPort`, `--host 127.0.0.1` where the tool has them) appended, said on stderr (-q hides
it); not when the command names a port already, nor with --no-inject.

The command gets PORT, PORTD_PORT, PORTD_PROJECT and PORTD_PROJECT_KEY. SIGINT, SIGTERM,
SIGHUP and SIGQUIT are forwarded to its process group; a second Ctrl-C within 2 s kills it;
Ctrl-Z stops the job (`fg`, `bg` resume). When the command exits, what it left running is
stopped (SIGTERM, then SIGKILL after --kill-grace or at a second Ctrl-C). portd exits with
the command's status; killed by signal N, it dies of signal N (a shell shows 128+N); 127/126
when the command cannot be started. If portd is killed, the command dies with it.")]
    Run(RunArgs),
    #[command(name = "__supervise", hide = true)]
    Supervise {
        /// The rest of its arguments come on a pipe (see `SuperviseArgs`).
        #[arg(long, default_value_t = 0)]
        fds: usize,
    },
    #[command(name = "__exec", hide = true)]
    Exec {
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 1)]
        fds: usize,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print `export PORT=…` lines for `eval "$(portd env)"`.
    #[command(after_help = "Example:\n  vars=$(portd env myapp) && eval \"$vars\" && npm start")]
    Env(GetArgs),
    /// List entries: project, port, range, state, pid, command, last used.
    #[command(alias = "list")]
    Ls {
        /// Also list released projects and the port each had last.
        #[arg(long)]
        all: bool,
    },
    /// Show one entry in full.
    Show {
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Free projects' ports (their last port is remembered for next time).
    #[command(after_help = "\
A project whose owner is running (an active entry) is refused, exit 5, unless --force:
its server would keep serving a port that the next `get` could hand to another project.

Examples:
  portd release myapp api
  portd release --idle")]
    Release {
        /// Projects to release (a name as `portd ls` shows it, or a directory).
        #[arg(value_name = "NAME", required_unless_present = "idle")]
        names: Vec<String>,
        /// Release every idle entry (no live owner).
        #[arg(long, conflicts_with = "names")]
        idle: bool,
        /// Also release projects whose owner is running.
        #[arg(long, conflicts_with = "idle")]
        force: bool,
    },
    /// Explain ports: free? excluded? held by which project? bound by which process?
    #[command(after_help = "Example:\n  portd check 4123 4200")]
    Check {
        /// Ports to check.
        #[arg(value_name = "PORT", required = true, value_parser = parse_port)]
        ports: Vec<u16>,
        /// Check UDP as well.
        #[arg(long)]
        udp: bool,
    },
    /// Reclaim the leases of dead processes now, and drop expired idle entries.
    Cleanup,
    /// Per range: ports used, active and idle, and the registry's size; with
    /// --detailed, managed servers: states, memory, startup times, events.
    Status {
        /// Managed servers: running/sleeping/stopped, memory used and saved,
        /// average startup time, idle shutdowns and restarts in the last 24 h,
        /// and each server's state, port, uptime, memory, connections, last event.
        #[arg(long)]
        detailed: bool,
    },
    /// Check the registry's health, permissions, configuration and ranges; print each fix.
    #[command(after_help = "\
Checks: configuration, ranges against the kernel's ephemeral range, the
registry directory (owner, mode, network file system), the lock, redb's
integrity check on a private copy of the file, every record and index row,
entries outside the ranges, leases of dead processes, ports bound by others.
Exits 0 when nothing is broken (warnings included), else with the exit code
of the first error. The registry file is never changed, except by --repair.

Examples:
  portd doctor
  portd doctor --repair    # a damaged registry: move it aside, start afresh")]
    Doctor {
        /// Move a damaged registry aside (`registry.redb.damaged-<time>`) and start
        /// a fresh one, rebuilding the entries of running processes.
        #[arg(long)]
        repair: bool,
    },
    /// Empty the registry (the old file is kept as a backup; the newest 5 backups are kept).
    Reset {
        /// Really do it.
        #[arg(long)]
        yes: bool,
        /// Even while projects' owners are running (refused otherwise, exit 5).
        #[arg(long)]
        force: bool,
    },
    /// Print the effective configuration and where each value came from.
    Config,
    /// Print shell completions (bash, zsh and fish also complete project names).
    #[command(after_help = "\
Examples:
  portd completions bash > ~/.local/share/bash-completion/completions/portd
  portd completions zsh > ~/.zfunc/_portd
  portd completions fish > ~/.config/fish/completions/portd.fish")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Define a managed server: its command, directory, environment and policies.
    #[command(after_help = "\
Examples:
  portd add api -- node server.js                  the server reads PORT
  portd add web --dir ./web --env API_URL={url:api} -- npm run dev
  portd add docs --on-demand --idle-timeout 10m -- python3 -m http.server {port}
  portd add svc --health http:/health --restart always -- ./server

`{port}` is the project's port; `{port:NAME}` and `{url:NAME}` another project's
(`portd start` starts a defined NAME first). The port is allocated now and kept while
the server is defined. Re-adding prints what changed.")]
    Add(AddArgs),
    /// Stop managed servers and remove their definitions (the ports are remembered).
    Rm {
        /// Defined servers.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Start managed servers (or find them running) and print their ports.
    #[command(after_help = "\
Examples:
  PORT=$(portd start api)
  portd start api web       one port per line, in this order
  portd start --all

Waits until the server is healthy (its --start-timeout); an on-demand server is left
sleeping: its supervisor holds the port and the first connection starts it. A server that
does not become healthy exits 10 with the reason and the last lines of its log.")]
    Start {
        /// Defined servers.
        #[arg(value_name = "NAME", required_unless_present = "all")]
        names: Vec<String>,
        /// Every defined server.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// If the port is bound by another process, move to a free one.
        #[arg(long = "move")]
        move_port: bool,
    },
    /// Stop managed servers (SIGTERM to the group, SIGKILL after the kill grace).
    Stop {
        /// Defined servers.
        #[arg(value_name = "NAME", required_unless_present = "all")]
        names: Vec<String>,
        /// Every defined server.
        #[arg(long, conflicts_with = "names")]
        all: bool,
    },
    /// Restart managed servers on the same port and wait until they are healthy.
    Restart {
        /// Defined servers.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Print a managed server's log (its output and its supervisor's lines).
    #[command(after_help = "Examples:\n  portd logs api -n 50\n  portd logs api -f")]
    Logs {
        /// A defined server.
        #[arg(value_name = "NAME")]
        name: String,
        /// Keep printing lines as they are written (Ctrl-C to stop).
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines.
        #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
        lines: usize,
    },
    /// Print a project's URL: `http://NAME.localhost:P/` while the
    /// registry's proxy runs, else `http://localhost:PORT/`.
    Url {
        /// A project.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Start a managed server if needed and open its URL (xdg-open), or print it.
    Open {
        /// A project.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Serve NAME.localhost URLs for every project (the proxy); start, stop or show it.
    #[command(after_help = "\
Examples:
  portd proxy                     in the foreground (Ctrl-C stops it)
  portd proxy start               in the background, one per registry; prints its port
  portd proxy status
  portd proxy stop

The proxy listens on 127.0.0.1 and ::1 only (default port 7780, or PORTD_PROXY_PORT).
http://NAME.localhost:P/ goes to project NAME's port (`myapp:api` is api.myapp.localhost);
a defined server that does not run is started by its first request. It is the
`portd-proxy` binary beside `portd` (or PORTD_PROXY_BIN).")]
    Proxy(ProxyArgs),
    #[command(name = "__serve", hide = true)]
    Serve {
        key: String,
        #[arg(long = "move")]
        move_port: bool,
    },
    /// Prints the registry's project names for the completion scripts.
    #[command(name = "__complete-projects", hide = true)]
    CompleteProjects,
}

/// `portd proxy`'s arguments.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Start, stop or show the background proxy (none: run it in the foreground).
    #[command(subcommand)]
    pub action: Option<ProxyAction>,
    /// The port, before or after `start` (default: PORTD_PROXY_PORT, else
    /// the config's `proxy_port`, else 7780).
    #[arg(long, global = true, value_parser = parse_port)]
    pub port: Option<u16>,
}

/// What `portd proxy` does.
#[derive(Debug, Subcommand)]
pub enum ProxyAction {
    /// Start the proxy in the background (or find it running) and print its port.
    Start,
    /// Stop the background proxy (the servers it started keep running).
    Stop,
    /// Say whether the proxy runs: pid, port, URL, since when.
    Status,
}

/// `portd add`'s arguments.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The server's project name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Working directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Health check: `tcp` (the port accepts), `http:/PATH` (2xx/3xx), `cmd:COMMAND` (exit 0).
    #[arg(long, value_name = "SPEC", default_value = "tcp")]
    pub health: String,
    /// Between health checks while running.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_grace)]
    pub health_interval: std::time::Duration,
    /// Failed checks in a row that make it unhealthy.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub health_failures: u32,
    /// When to restart it: `no`, `on-failure`, `always`.
    #[arg(long, value_name = "POLICY", default_value = "on-failure")]
    pub restart: portd_store::definition::RestartPolicy,
    /// Start it on the first connection; stop it when idle.
    #[arg(long)]
    pub on_demand: bool,
    /// Stop it after no connection for this long (default 1h for --on-demand).
    #[arg(long, value_name = "DUR", value_parser = parse_grace)]
    pub idle_timeout: Option<std::time::Duration>,
    /// How long a start may take to become healthy.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_grace)]
    pub start_timeout: std::time::Duration,
    /// Between SIGTERM and SIGKILL when stopping.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_grace)]
    pub kill_grace: std::time::Duration,
    /// Pass the listening socket(s) as fd 3… (LISTEN_FDS).
    #[arg(long)]
    pub fd: bool,
    /// Listen on this address instead of loopback.
    #[arg(long, value_name = "ADDR")]
    pub host: Option<String>,
    /// Add to the server's environment (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Do not add `--port N` to dev servers that ignore PORT.
    #[arg(long)]
    pub no_inject: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_owned(), v.to_owned()))
        }
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    portd_store::parse_port(s)
}

fn parse_grace(s: &str) -> Result<std::time::Duration, String> {
    portd_store::parse_duration(s)
}

fn parse_pid(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(p) if p > 0 && p <= i32::MAX as u32 => Ok(p),
        _ => Err(format!("`{s}` is not a process id")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
        assert!(MAIN_AFTER.contains("9  permission refused"));
    }
}
