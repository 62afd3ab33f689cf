//! `portd`: a thin command-line layer over `portd-store`.
//!
//! Arguments are parsed by clap (`args.rs`), resolved here into a context
//! (registry location, configuration, output), and handed to one module per
//! command. Every failure ends as one `error:` line (plus an optional
//! `hint:` line) and the exit code of its kind.

#![forbid(unsafe_code)]

mod args;
mod cmd;
mod printer;

use args::{Cli, Command};
use clap::Parser;
use portd_store::{Config, Error, Registry, Source};
use printer::Printer;
use std::path::PathBuf;
use std::process::ExitCode;

/// Everything a command needs.
#[derive(Debug)]
pub struct Ctx {
    pub out: Printer,
    pub home: PathBuf,
    pub home_source: Source,
    pub config: Config,
    pub config_file: Option<PathBuf>,
}

impl Ctx {
    pub fn registry(&self) -> Result<Registry, Error> {
        self.out.detail(&format!("registry: {}", self.home.display()));
        Registry::open(&self.home, self.config.clone())
    }
}

fn context(cli: &Cli, out: Printer) -> Result<Ctx, Error> {
    let env = |k: &str| std::env::var(k).ok();
    let config = Config::load(&env)?;
    let config_file = Config::file_path(&env).map(|(p, _)| p);
    let (home, home_source) = home(cli)?;
    Ok(Ctx { out, home, home_source, config, config_file })
}

/// The registry directory and where it came from.
pub fn home(cli: &Cli) -> Result<(PathBuf, Source), Error> {
    let env = |k: &str| std::env::var(k).ok();
    Ok(match &cli.home {
        Some(h) => (std::path::absolute(h).unwrap_or_else(|_| h.clone()), Source::Flag("--home")),
        None => {
            let src = if env("PORTD_HOME").is_some_and(|h| !h.is_empty()) {
                Source::Env("PORTD_HOME")
            } else {
                Source::Default
            };
            (portd_store::default_home(&env)?, src)
        }
    })
}

/// Runs the command; `Ok(code)` is the exit code of a command that
/// succeeded or, for `run`, the child's status.
fn run(cli: Cli) -> Result<u8, Error> {
    let out = Printer { json: cli.json, quiet: cli.quiet, verbose: cli.verbose };
    match &cli.command {
        Command::Completions { shell } => {
            return cmd::completions::completions(&out, *shell).map(|()| 0);
        }
        Command::CompleteProjects => {
            cmd::completions::projects(&cli, &out);
            return Ok(0);
        }
        Command::Supervise { fds } => {
            return Ok(cmd::run::supervise(*fds));
        }
        Command::Exec { name, fds, command } => return Ok(cmd::run::exec(name, *fds, command)),
        // Doctor reports a broken configuration instead of stopping at it.
        Command::Doctor { repair } => return cmd::doctor::doctor(&cli, out, *repair),
        _ => {}
    }
    let ctx = context(&cli, out)?;
    if let Command::Run(a) = &cli.command {
        return cmd::run::run(&ctx, a);
    }
    match cli.command {
        Command::Get(a) => cmd::get::get(&ctx, &a),
        Command::Env(a) => cmd::get::env(&ctx, &a),
        Command::Ls { all } => cmd::ls::ls(&ctx, all),
        Command::Show { project } => cmd::ls::show(&ctx, &project),
        Command::Release { names, idle, force } => cmd::release::release(&ctx, &names, idle, force),
        Command::Check { ports, udp } => cmd::check::check(&ctx, &ports, udp),
        Command::Cleanup => cmd::maintain::cleanup(&ctx),
        Command::Status { detailed: false } => cmd::maintain::status(&ctx),
        Command::Status { detailed: true } => cmd::status::detailed(&ctx),
        Command::Add(a) => cmd::add::add(&ctx, &a),
        Command::Rm { names } => cmd::add::rm(&ctx, &names),
        Command::Start { names, all, move_port } => {
            return cmd::start::start(&ctx, &names, all, move_port);
        }
        Command::Stop { names, all } => cmd::stop::stop(&ctx, &names, all),
        Command::Restart { names } => return cmd::start::restart(&ctx, &names),
        Command::Logs { name, follow, lines } => cmd::logs::logs(&ctx, &name, follow, lines),
        Command::Url { name } => cmd::url::url(&ctx, &name),
        Command::Open { name } => return cmd::url::open(&ctx, &name),
        Command::Proxy(a) => return cmd::proxy::proxy(&ctx, &a),
        Command::Serve { key, move_port } => return Ok(cmd::serve::serve(&ctx, &key, move_port)),
        Command::Reset { yes, force } => cmd::maintain::reset(&ctx, yes, force),
        Command::Config => cmd::config::config(&ctx),
        Command::Run(_)
        | Command::Completions { .. }
        | Command::CompleteProjects
        | Command::Supervise { .. }
        | Command::Exec { .. }
        | Command::Doctor { .. } => {
            unreachable!("handled above")
        }
    }
    .map(|()| 0)
}

/// Whether arguments that clap refused were meant for `portd env` without
/// `--json`: its first word that is not an option (or `--home`'s value).
fn env_for_eval(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    let mut words = args.iter().take_while(|a| *a != "--");
    let mut command = None;
    while let Some(a) = words.next() {
        if a == "--home" {
            words.next();
        } else if !a.starts_with('-') {
            command = Some(a.as_str());
            break;
        }
    }
    command == Some("env") && !args.iter().any(|a| a == "--json")
}

fn main() -> ExitCode {
    // Panics are reported once, as an error line, by the code below (or as
    // a damaged registry by the store); the default hook would print a
    // second, multi-line report.
    if std::env::var_os("PORTD_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(|_| {}));
    }
    portd_core::sys::ignore_file_size_signal();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            let args = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned());
            if code != 0 && env_for_eval(args) {
                Printer { json: false, quiet: false, verbose: false }.data(cmd::get::ENV_FAILED);
            }
            return ExitCode::from(code);
        }
    };
    let out = Printer { json: cli.json, quiet: cli.quiet, verbose: cli.verbose };
    // `eval "$(portd env)"` must fail when portd does.
    let for_eval = matches!(cli.command, Command::Env(_)) && !cli.json;
    let failed = || {
        if for_eval {
            out.data(cmd::get::ENV_FAILED);
        }
    };
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(e)) => {
            failed();
            out.error(e.message(), e.hint());
            ExitCode::from(e.exit_code())
        }
        Err(p) => {
            failed();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            out.error(&format!("internal error: {msg}"), Some("please report this as a bug"));
            ExitCode::from(1)
        }
    }
}
