//! Dev servers that ignore `PORT` (vite, astro, `ng serve`, …): the flags that put them on their port.
//!
//! portd gives every command `PORT`, but several popular dev servers read
//! their port only from a flag or their config, and land on their own
//! default (Vite on 5173) while the project's port stays empty. [`plan`]
//! recognises them and says which flags to append: `--port N`, the tool's
//! "fail rather than move" flag where it has one, and a loopback `--host`.
//! It only plans: the caller prints [`Plan::message`] and [`Plan::note`] and
//! runs [`Plan::argv`].
//!
//! # What is recognised
//! Each tool's flags were checked against its own CLI (source or `--help`):
//!
//! | tool | serving commands | flags added |
//! |---|---|---|
//! | `vite` | bare `vite [root]`, `dev`, `serve`, `preview` (not `build`, `optimize`) | `--port N --strictPort --host H` |
//! | `astro` | `dev`, `preview` | `--port N --host H` |
//! | `ng` | `serve` (aliases `s`, `dev`) | `--port N --host H` |
//! | `react-router` | `dev` (and bare `react-router`, which is `dev`) | `--port N --strictPort --host H` |
//! | `rsbuild` | `dev`, `preview` | `--port N --host H` |
//! | `expo` | `start` | `--port N` |
//!
//! astro, ng and rsbuild have no command-line "strict port" flag (only
//! config settings, or none), so none is added; a server that moves to
//! another port is then caught by the caller's check of where the command
//! listens. expo's `--host` is not an address but the kind of URL it shows
//! to devices (`lan`, `tunnel`, `localhost`), and Metro's listening address
//! has no flag, so for expo only the port is added.
//!
//! The tool may be run directly (`vite`, `./node_modules/.bin/vite`),
//! through `npx [-y|--yes]`, `pnpm exec|dlx`, `yarn exec|dlx`,
//! `bunx [--bun]`, or as a `package.json` script: `npm run|run-script
//! NAME`, `npm start`, `pnpm [run] NAME`, `yarn [run] NAME`, `bun [run]
//! NAME`. A script is read from `package.json` in the command's directory;
//! when it has shell operators (`&& || ; | > < & $( \``, or several lines)
//! the flags would reach only its last command, so nothing is added and the
//! note says how to pass the port instead. npm passes arguments to a script
//! only after `--` (added unless the command has one already); pnpm (7 and
//! later), yarn and bun pass everything after the script's name.
//!
//! Nothing is added when the command already names a port (`--port`,
//! `--port=N`, and `-p` where the tool takes it); the host or strict-port
//! flag is left out when the command already has it. Anything not
//! recognised is left exactly as it is.

use crate::package_json;
use std::path::Path;

/// The host added by [`plan`]: loopback, as portd's ports are for this machine.
pub const LOOPBACK: &str = "127.0.0.1";

/// What to run, and what was added to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The command to run: the input with [`Plan::added`] appended (after a
    /// `--` for `npm run`), or the input unchanged.
    pub argv: Vec<String>,
    /// The flags appended (without any `--` separator); empty when none.
    pub added: Vec<String>,
    /// Why nothing was added, when the user should know (a script with
    /// shell operators, a port that differs from the project's): one line
    /// for stderr, without a prefix.
    pub note: Option<String>,
    /// The tool recognised (`vite`, `astro`, `ng`, `react-router`,
    /// `rsbuild`, `expo`), whether or not anything was added.
    pub tool: Option<&'static str>,
}

impl Plan {
    fn unchanged(argv: &[String]) -> Plan {
        Plan { argv: argv.to_vec(), added: Vec::new(), note: None, tool: None }
    }

    /// The line to print on stderr when flags were added, e.g. ``portd:
    /// added `--port 4123 --strictPort --host 127.0.0.1` (vite ignores
    /// PORT); pass `--no-inject` to stop this``.
    pub fn message(&self) -> Option<String> {
        let tool = self.tool?;
        if self.added.is_empty() {
            return None;
        }
        Some(format!(
            "portd: added `{}` ({tool} ignores PORT); pass `--no-inject` to stop this",
            self.added.join(" ")
        ))
    }

    /// The lines to print on stderr about the plan, each `portd: …`: the
    /// [`Plan::message`] and the [`Plan::note`], when there are.
    pub fn lines(&self) -> Vec<String> {
        self.message().into_iter().chain(self.note.iter().map(|n| format!("portd: {n}"))).collect()
    }
}

/// A dev server that ignores `PORT`, and its flags.
struct Tool {
    name: &'static str,
    /// Whether a first positional argument (none, or this word) runs a server.
    serves: fn(Option<&str>) -> bool,
    /// The flag that makes it fail instead of moving to another port.
    strict: Option<&'static str>,
    /// Whether `--host ADDR` sets its listening address.
    host: bool,
    /// Short spellings of `--port` it accepts.
    port_short: Option<&'static str>,
    /// Flags that take a value, to find the first positional argument.
    valued: &'static [&'static str],
}

const TOOLS: &[Tool] = &[
    Tool {
        name: "vite",
        serves: |sub| !matches!(sub, Some("build" | "optimize")),
        strict: Some("--strictPort"),
        host: true,
        port_short: None,
        valued: &[
            "-c",
            "--config",
            "--base",
            "-l",
            "--logLevel",
            "--configLoader",
            "-f",
            "--filter",
            "-m",
            "--mode",
            "--port",
            "--outDir",
        ],
    },
    Tool {
        name: "astro",
        serves: |sub| matches!(sub, Some("dev" | "preview")),
        strict: None,
        host: true,
        port_short: None,
        valued: &["--config", "--root", "--site", "--base", "--mode", "--port"],
    },
    Tool {
        name: "ng",
        serves: |sub| matches!(sub, Some("serve" | "s" | "dev")),
        strict: None,
        host: true,
        port_short: None,
        valued: &[],
    },
    Tool {
        name: "react-router",
        serves: |sub| matches!(sub, None | Some("dev")),
        strict: Some("--strictPort"),
        host: true,
        port_short: Some("-p"),
        valued: &["--config", "-c", "--logLevel", "-l", "--mode", "-m", "--port", "-p"],
    },
    Tool {
        name: "rsbuild",
        serves: |sub| matches!(sub, Some("dev" | "preview")),
        strict: None,
        host: true,
        port_short: None,
        valued: &[
            "--base",
            "-c",
            "--config",
            "--config-loader",
            "--env-dir",
            "--env-mode",
            "--environment",
            "--log-level",
            "-m",
            "--mode",
            "-r",
            "--root",
            "--port",
        ],
    },
    Tool {
        name: "expo",
        serves: |sub| matches!(sub, Some("start")),
        strict: None,
        host: false,
        port_short: Some("-p"),
        valued: &[
            "--max-workers",
            "--private-key-path",
            "--port",
            "-p",
            "--scheme",
            "--host",
            "-m",
        ],
    },
];

/// The tool a program name or package spec stands for: a path's base name
/// (`./node_modules/.bin/vite`), a version dropped (`vite@6`), a package
/// mapped to its command (`@angular/cli` → `ng`).
fn tool_of(spec: &str) -> Option<&'static Tool> {
    let base = if spec.starts_with('@') { spec } else { spec.rsplit('/').next().unwrap_or(spec) };
    // `@scope/name@1.2` and `name@1.2`: the version follows the last `@`
    // that is not the first character.
    let name = match base.get(1..).and_then(|r| r.rfind('@')) {
        Some(i) => &base[..i + 1],
        None => base,
    };
    let name = match name {
        "@angular/cli" => "ng",
        "@react-router/dev" => "react-router",
        "@rsbuild/core" => "rsbuild",
        "@expo/cli" => "expo",
        n => n,
    };
    TOOLS.iter().find(|t| t.name == name)
}

/// Plans the flags for `argv` (after `{port}` is replaced) run in `dir` on
/// `port`, with the loopback host.
pub fn plan(argv: &[String], dir: &Path, port: u16) -> Plan {
    plan_on(argv, dir, port, LOOPBACK)
}

/// [`plan`] with another host to listen on (`portd run --host 0.0.0.0`).
pub fn plan_on(argv: &[String], dir: &Path, port: u16, host: &str) -> Plan {
    let Some((program, rest)) = argv.split_first() else {
        return Plan::unchanged(argv);
    };
    let base = program.rsplit('/').next().unwrap_or(program);
    let words: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (base, words.as_slice()) {
        ("npm", ["run" | "run-script" | "rum" | "urn", script, tail @ ..]) => {
            via_script(argv, dir, port, host, script, tail, Pm::Npm)
        }
        ("npm", ["start", tail @ ..]) => via_script(argv, dir, port, host, "start", tail, Pm::Npm),
        ("pnpm" | "yarn" | "bun", ["run" | "run-script", script, tail @ ..])
            if !script.starts_with('-') =>
        {
            via_script(argv, dir, port, host, script, tail, Pm::Passes)
        }
        ("pnpm" | "yarn" | "bun", [script, tail @ ..])
            if !script.starts_with('-') && !builtin(base, script) =>
        {
            via_script(argv, dir, port, host, script, tail, Pm::Passes)
        }
        _ => match invocation(argv) {
            Some((tool, args)) => direct(argv, port, host, tool, &args),
            None => Plan::unchanged(argv),
        },
    }
}

/// How a package manager hands extra arguments to a script.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pm {
    /// `npm run`: only what follows `--`.
    Npm,
    /// pnpm, yarn, bun: everything after the script's name.
    Passes,
}

/// Commands of pnpm, yarn and bun that are not scripts (a script of the
/// same name is run only through `run`).
fn builtin(pm: &str, word: &str) -> bool {
    const COMMON: &[&str] = &[
        "add",
        "audit",
        "bin",
        "cache",
        "config",
        "create",
        "dlx",
        "exec",
        "help",
        "import",
        "info",
        "init",
        "install",
        "i",
        "link",
        "list",
        "ls",
        "outdated",
        "pack",
        "patch",
        "publish",
        "rebuild",
        "remove",
        "rm",
        "run",
        "run-script",
        "unlink",
        "update",
        "up",
        "upgrade",
        "why",
        "x",
        "pm",
        "build",
        "test",
        "env",
        "store",
        "prune",
        "fetch",
        "deploy",
        "setup",
        "workspace",
        "workspaces",
        "set",
        "plugin",
        "node",
        "global",
        "version",
        "login",
        "logout",
        "whoami",
        "dedupe",
        "licenses",
        "root",
        "server",
        "start",
    ];
    // `pnpm start` / `yarn start` run the `start` script, as `npm start` does.
    if word == "start" && pm != "bun" {
        return false;
    }
    COMMON.contains(&word)
}

/// The tool and its arguments of a direct or exec-wrapped command.
fn invocation(argv: &[String]) -> Option<(&'static Tool, Vec<String>)> {
    let (program, rest) = argv.split_first()?;
    let base = program.rsplit('/').next().unwrap_or(program);
    let words: Vec<&str> = rest.iter().map(String::as_str).collect();
    let (spec, args): (&str, &[&str]) = match (base, words.as_slice()) {
        ("npx", _) => {
            // The package is the first word that is not a flag, and the
            // only flags understood before it are `-y` / `--yes`.
            let i = words.iter().position(|w| !w.starts_with('-'))?;
            if !words[..i].iter().all(|f| matches!(*f, "-y" | "--yes")) {
                return None;
            }
            (words[i], &words[i + 1..])
        }
        ("bunx", ["--bun", spec, args @ ..]) | ("bunx", [spec, args @ ..]) => (spec, args),
        ("pnpm" | "yarn", ["exec" | "dlx", spec, args @ ..]) => (spec, args),
        _ => (base, words.as_slice()),
    };
    if spec.starts_with('-') {
        return None;
    }
    let tool = tool_of(spec)?;
    Some((tool, args.iter().map(|s| (*s).to_owned()).collect()))
}

/// A tool run directly (or through npx and the like): flags go at the end.
fn direct(argv: &[String], port: u16, host: &str, tool: &'static Tool, args: &[String]) -> Plan {
    let mut plan = Plan { tool: Some(tool.name), ..Plan::unchanged(argv) };
    match flags_for(tool, args, port, host) {
        Flags::Add(added) => {
            plan.argv.extend(added.iter().cloned());
            plan.added = added;
        }
        Flags::None(note) => plan.note = note,
    }
    plan
}

/// What to add for `tool` run with `args`.
enum Flags {
    Add(Vec<String>),
    /// Nothing: not a serving command, or a port already given (with a
    /// note if it is not the project's).
    None(Option<String>),
}

fn flags_for(tool: &Tool, args: &[String], port: u16, host: &str) -> Flags {
    if args.iter().any(|a| matches!(a.as_str(), "-h" | "--help" | "-v" | "--version")) {
        return Flags::None(None);
    }
    if !(tool.serves)(first_positional(tool, args)) {
        return Flags::None(None);
    }
    if let Some(given) = given_port(tool, args) {
        let own = port.to_string();
        // `{port}` unreplaced, or the shell's `$PORT` in a script: the
        // project's port all the same.
        let same = [own.as_str(), "{port}", "$PORT", "${PORT}", "$PORTD_PORT", "${PORTD_PORT}"];
        let note = (!same.contains(&given.as_str())).then(|| {
            format!(
                "`{}` is given `--port {given}`, not the project's port {port}; \
                 use `--port {{port}}` to serve on it",
                tool.name
            )
        });
        return Flags::None(note);
    }
    let mut added = vec!["--port".to_owned(), port.to_string()];
    if let Some(strict) = tool.strict {
        let kebab = "--strict-port";
        let has = args.iter().any(|a| {
            let flag = a.split('=').next().unwrap_or(a);
            flag == strict
                || flag == kebab
                || flag == "--no-strictPort"
                || flag == "--no-strict-port"
        });
        if !has {
            added.push(strict.to_owned());
        }
    }
    if tool.host && !args.iter().any(|a| a == "--host" || a.starts_with("--host=")) {
        added.push("--host".to_owned());
        added.push(host.to_owned());
    }
    Flags::Add(added)
}

/// The first argument that is neither a flag nor a flag's value.
fn first_positional<'a>(tool: &Tool, args: &'a [String]) -> Option<&'a str> {
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--" {
            return None;
        }
        if a.starts_with('-') {
            skip = tool.valued.contains(&a.as_str());
            continue;
        }
        return Some(a);
    }
    None
}

/// The port the arguments already give (`--port N`, `--port=N`, `-p N`),
/// as written; `Some("")` for a port flag with no value.
fn given_port(tool: &Tool, args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let is_flag = a == "--port" || tool.port_short.is_some_and(|s| a == s);
        if is_flag {
            return Some(it.next().cloned().unwrap_or_default());
        }
        if let Some(v) = a.strip_prefix("--port=") {
            return Some(v.to_owned());
        }
        if let Some(v) = tool.port_short.and_then(|s| a.strip_prefix(s)?.strip_prefix('=')) {
            return Some(v.to_owned());
        }
    }
    None
}

/// A `package.json` script run by a package manager.
fn via_script(
    argv: &[String],
    dir: &Path,
    port: u16,
    host: &str,
    script: &str,
    tail: &[&str],
    pm: Pm,
) -> Plan {
    let unchanged = Plan::unchanged(argv);
    let text = match package_json::script(dir, script) {
        Ok(t) => t,
        // The package manager says so itself, in its own words.
        Err(package_json::Error::NoFile(_) | package_json::Error::NoScript { .. }) => {
            return unchanged;
        }
        Err(e) => {
            return Plan { note: Some(format!("nothing added to the command: {e}")), ..unchanged };
        }
    };
    let words = match shell_words(&text) {
        Ok(w) => w,
        Err(Unsplit::Operators) => {
            // Only worth saying when a server that ignores PORT is in it.
            let Some(tool) = mentioned_tool(&text) else { return unchanged };
            return Plan {
                note: Some(format!(
                    "the `{script}` script (`{text}`) has shell operators, so nothing was added \
                     ({} ignores PORT); give it `--port $PORT` in the script, or run the server \
                     directly with `--port {{port}}`",
                    tool.name
                )),
                tool: Some(tool.name),
                ..unchanged
            };
        }
        Err(Unsplit::Quotes) => return unchanged,
    };
    // `NODE_ENV=development vite`: assignments before the command.
    let words: Vec<String> = words.into_iter().skip_while(|w| is_assignment(w)).collect();
    let Some((tool, mut args)) = invocation(&words) else { return unchanged };
    // What the package manager passes on to the script.
    let passed: Vec<String> = match pm {
        Pm::Npm => match tail.iter().position(|w| *w == "--") {
            Some(i) => tail[i + 1..].iter().map(|s| (*s).to_owned()).collect(),
            None => Vec::new(),
        },
        Pm::Passes => tail.iter().map(|s| (*s).to_owned()).collect(),
    };
    args.extend(passed);
    let mut plan = Plan { tool: Some(tool.name), ..unchanged };
    match flags_for(tool, &args, port, host) {
        Flags::Add(added) => {
            if pm == Pm::Npm && !tail.contains(&"--") {
                plan.argv.push("--".to_owned());
            }
            plan.argv.extend(added.iter().cloned());
            plan.added = added;
        }
        Flags::None(note) => {
            plan.note = note.map(|n| format!("{n} (in the `{script}` script or the command)"));
        }
    }
    plan
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// Why a script was not split into words.
#[derive(Debug, PartialEq, Eq)]
enum Unsplit {
    /// It has shell operators or several commands.
    Operators,
    /// An unbalanced quote.
    Quotes,
}

/// Splits a script as `sh` would split one simple command: quotes and
/// backslashes understood, any operator, substitution or second line
/// refused (variables like `$PORT` are kept as written).
fn shell_words(text: &str) -> Result<Vec<String>, Unsplit> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\n' | '\r' | ';' | '&' | '|' | '<' | '>' | '`' | '(' | ')' => {
                return Err(Unsplit::Operators);
            }
            '$' if chars.peek() == Some(&'(') => return Err(Unsplit::Operators),
            '\\' => {
                let next = chars.next().ok_or(Unsplit::Quotes)?;
                word.get_or_insert_default().push(next);
            }
            '\'' => {
                let w = word.get_or_insert_default();
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(Unsplit::Quotes),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_default();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('`') => return Err(Unsplit::Operators),
                        Some('$') if chars.peek() == Some(&'(') => {
                            return Err(Unsplit::Operators);
                        }
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(Unsplit::Quotes),
                        },
                        Some(c) => w.push(c),
                        None => return Err(Unsplit::Quotes),
                    }
                }
            }
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// A recognised tool named anywhere in a script's words.
fn mentioned_tool(text: &str) -> Option<&'static Tool> {
    text.split(|c: char| c.is_whitespace() || ";&|<>()`'\"".contains(c))
        .filter(|w| !w.is_empty())
        .find_map(tool_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT: u16 = 4123;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    /// A directory with a `package.json` holding these scripts.
    fn project(scripts: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let map: serde_json::Map<String, serde_json::Value> =
            scripts.iter().map(|(k, s)| ((*k).to_owned(), (*s).into())).collect();
        let json = serde_json::json!({ "private": true, "scripts": map });
        std::fs::write(d.path().join("package.json"), json.to_string()).unwrap();
        d
    }

    const VITE: &str = "--port 4123 --strictPort --host 127.0.0.1";
    const PLAIN: &str = "--port 4123 --host 127.0.0.1";

    /// (command, tool recognised, flags added) for tools run directly or
    /// through an exec wrapper: the flags go at the end.
    const DIRECT: &[(&str, Option<&str>, &str)] = &[
        ("vite", Some("vite"), VITE),
        ("vite dev", Some("vite"), VITE),
        ("vite serve", Some("vite"), VITE),
        ("vite preview", Some("vite"), VITE),
        ("vite ./site --open", Some("vite"), VITE),
        ("vite --mode staging", Some("vite"), VITE),
        ("./node_modules/.bin/vite", Some("vite"), VITE),
        ("/usr/local/bin/vite dev", Some("vite"), VITE),
        ("vite build", Some("vite"), ""),
        ("vite --mode production build", Some("vite"), ""),
        ("vite optimize", Some("vite"), ""),
        ("vite --help", Some("vite"), ""),
        ("vite --version", Some("vite"), ""),
        ("astro dev", Some("astro"), PLAIN),
        ("astro preview --open", Some("astro"), PLAIN),
        ("astro build", Some("astro"), ""),
        ("astro", Some("astro"), ""),
        ("ng serve", Some("ng"), PLAIN),
        ("ng s", Some("ng"), PLAIN),
        ("ng dev", Some("ng"), PLAIN),
        ("ng serve my-app -c development", Some("ng"), PLAIN),
        ("ng build", Some("ng"), ""),
        ("ng test", Some("ng"), ""),
        ("react-router dev", Some("react-router"), VITE),
        ("react-router", Some("react-router"), VITE),
        ("react-router build", Some("react-router"), ""),
        ("react-router typegen", Some("react-router"), ""),
        ("rsbuild dev", Some("rsbuild"), PLAIN),
        ("rsbuild preview", Some("rsbuild"), PLAIN),
        ("rsbuild build", Some("rsbuild"), ""),
        ("expo start", Some("expo"), "--port 4123"),
        ("expo start --web", Some("expo"), "--port 4123"),
        ("expo prebuild", Some("expo"), ""),
        // Wrappers.
        ("npx vite", Some("vite"), VITE),
        ("npx -y vite", Some("vite"), VITE),
        ("npx --yes vite@6 dev", Some("vite"), VITE),
        ("npx astro dev", Some("astro"), PLAIN),
        ("npx ng serve", Some("ng"), PLAIN),
        ("npx @angular/cli serve", Some("ng"), PLAIN),
        ("npx @angular/cli@19 serve", Some("ng"), PLAIN),
        ("npx react-router dev", Some("react-router"), VITE),
        ("npx @react-router/dev dev", Some("react-router"), VITE),
        ("npx rsbuild dev", Some("rsbuild"), PLAIN),
        ("npx @rsbuild/core preview", Some("rsbuild"), PLAIN),
        ("npx expo start", Some("expo"), "--port 4123"),
        ("npx --package foo vite", None, ""),
        ("pnpm exec vite", Some("vite"), VITE),
        ("pnpm dlx vite", Some("vite"), VITE),
        ("pnpm exec astro dev", Some("astro"), PLAIN),
        ("yarn exec vite", Some("vite"), VITE),
        ("yarn dlx vite preview", Some("vite"), VITE),
        ("yarn exec ng serve", Some("ng"), PLAIN),
        ("bunx vite", Some("vite"), VITE),
        ("bunx --bun vite", Some("vite"), VITE),
        ("bunx expo start", Some("expo"), "--port 4123"),
        // Not dev servers that ignore PORT.
        ("node server.js", None, ""),
        ("python3 -m http.server", None, ""),
        ("npx serve", None, ""),
        ("vitest", None, ""),
        ("npx vitest", None, ""),
    ];

    #[test]
    fn each_tool_and_wrapper_gets_its_flags_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        for (cmd, tool, added) in DIRECT {
            let argv = v(cmd);
            let p = plan(&argv, dir.path(), PORT);
            assert_eq!(p.tool, *tool, "{cmd}");
            assert_eq!(p.added, v(added), "{cmd}");
            let mut want = argv.clone();
            want.extend(v(added));
            assert_eq!(p.argv, want, "{cmd}");
            assert_eq!(p.note, None, "{cmd}");
            assert_eq!(p.message().is_some(), !added.is_empty(), "{cmd}");
        }
    }

    /// (command, flags added) where the user gave some of the flags.
    const GIVEN: &[(&str, &str)] = &[
        ("vite --port 4123", ""),
        ("vite --port=4123", ""),
        ("vite --port {port}", ""),
        ("vite --host 0.0.0.0", "--port 4123 --strictPort"),
        ("vite --host", "--port 4123 --strictPort"),
        ("vite --host=::1", "--port 4123 --strictPort"),
        ("vite --strictPort", "--port 4123 --host 127.0.0.1"),
        ("vite --strict-port", "--port 4123 --host 127.0.0.1"),
        ("vite --strictPort=false", "--port 4123 --host 127.0.0.1"),
        ("react-router dev -p 4123", ""),
        ("react-router dev -p=4123", ""),
        ("expo start -p 4123", ""),
        ("expo start --port=4123", ""),
        // Where the tool takes no `-p`, it is not read as a port.
        ("astro dev -p", PLAIN),
        ("ng serve --port 4123", ""),
        ("ng serve --host 0.0.0.0", "--port 4123"),
        ("rsbuild dev --port 4123", ""),
    ];

    #[test]
    fn flags_the_user_gave_are_not_added_again() {
        let dir = tempfile::tempdir().unwrap();
        for (cmd, added) in GIVEN {
            let argv = v(cmd);
            let p = plan(&argv, dir.path(), PORT);
            assert_eq!(p.added, v(added), "{cmd}");
            assert_eq!(p.argv.len(), argv.len() + p.added.len(), "{cmd}");
            assert_eq!(p.note, None, "{cmd}");
        }
    }

    #[test]
    fn a_port_other_than_the_projects_is_kept_and_noted() {
        let dir = tempfile::tempdir().unwrap();
        for cmd in ["vite --port 3000", "npx vite --port=3000", "expo start -p 3000"] {
            let argv = v(cmd);
            let p = plan(&argv, dir.path(), PORT);
            assert_eq!(p.argv, argv, "{cmd}");
            assert!(p.added.is_empty(), "{cmd}");
            let note = p.note.unwrap_or_default();
            assert!(note.contains("`--port 3000`") && note.contains("4123"), "{cmd}: {note}");
            assert!(note.contains("--port {port}"), "{note}");
        }
    }

    #[test]
    fn another_host_can_be_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan_on(&v("vite"), dir.path(), PORT, "0.0.0.0");
        assert_eq!(p.added, v("--port 4123 --strictPort --host 0.0.0.0"));
        let p = plan_on(&v("expo start"), dir.path(), PORT, "0.0.0.0");
        assert_eq!(p.added, v("--port 4123"));
    }

    /// (scripts, command, argv planned) through package managers.
    #[test]
    fn scripts_run_by_package_managers_get_the_flags_the_right_way() {
        let d = project(&[
            ("dev", "vite"),
            ("start", "vite preview"),
            ("serve", "NODE_ENV=development npx vite --open"),
            ("ng", "ng serve"),
            ("ap", "astro dev"),
            ("rr", "react-router dev"),
            ("rs", "rsbuild dev"),
            ("ex", "expo start"),
            ("quoted", "vite --base '/my app/'"),
            ("api", "node server.js"),
            ("build", "vite build"),
        ]);
        let cases: &[(&str, &str)] = &[
            ("npm run dev", "npm run dev -- --port 4123 --strictPort --host 127.0.0.1"),
            (
                "npm run-script dev",
                "npm run-script dev -- --port 4123 --strictPort --host 127.0.0.1",
            ),
            ("npm start", "npm start -- --port 4123 --strictPort --host 127.0.0.1"),
            (
                "npm run dev -- --open",
                "npm run dev -- --open --port 4123 --strictPort --host 127.0.0.1",
            ),
            (
                "npm run dev --silent",
                "npm run dev --silent -- --port 4123 --strictPort --host 127.0.0.1",
            ),
            ("npm run serve", "npm run serve -- --port 4123 --strictPort --host 127.0.0.1"),
            ("npm run ng", "npm run ng -- --port 4123 --host 127.0.0.1"),
            ("npm run ap", "npm run ap -- --port 4123 --host 127.0.0.1"),
            ("npm run rr", "npm run rr -- --port 4123 --strictPort --host 127.0.0.1"),
            ("npm run rs", "npm run rs -- --port 4123 --host 127.0.0.1"),
            ("npm run ex", "npm run ex -- --port 4123"),
            ("npm run quoted", "npm run quoted -- --port 4123 --strictPort --host 127.0.0.1"),
            ("pnpm dev", "pnpm dev --port 4123 --strictPort --host 127.0.0.1"),
            ("pnpm run dev", "pnpm run dev --port 4123 --strictPort --host 127.0.0.1"),
            ("pnpm start", "pnpm start --port 4123 --strictPort --host 127.0.0.1"),
            ("pnpm dev --open", "pnpm dev --open --port 4123 --strictPort --host 127.0.0.1"),
            ("yarn dev", "yarn dev --port 4123 --strictPort --host 127.0.0.1"),
            ("yarn run dev", "yarn run dev --port 4123 --strictPort --host 127.0.0.1"),
            ("yarn start", "yarn start --port 4123 --strictPort --host 127.0.0.1"),
            ("bun run dev", "bun run dev --port 4123 --strictPort --host 127.0.0.1"),
            ("bun dev", "bun dev --port 4123 --strictPort --host 127.0.0.1"),
            ("bun run ng", "bun run ng --port 4123 --host 127.0.0.1"),
            // Not servers that ignore PORT, or not scripts at all.
            ("npm run api", "npm run api"),
            ("npm run build", "npm run build"),
            ("npm run nope", "npm run nope"),
            ("pnpm install", "pnpm install"),
            ("yarn add vite", "yarn add vite"),
            ("bun start", "bun start"),
            ("npm test", "npm test"),
            // The user gave the port: in the command, after `--` for npm.
            ("npm run dev -- --port 4123", "npm run dev -- --port 4123"),
            ("pnpm dev --port 4123", "pnpm dev --port 4123"),
            // Before `--`, npm keeps `--port` for itself: vite never sees it.
            (
                "npm run dev --port 4123",
                "npm run dev --port 4123 -- --port 4123 --strictPort --host 127.0.0.1",
            ),
        ];
        for (cmd, want) in cases {
            let p = plan(&v(cmd), d.path(), PORT);
            assert_eq!(p.argv, v(want), "{cmd}");
            assert_eq!(p.note, None, "{cmd}");
            let added: Vec<String> =
                p.argv[v(cmd).len()..].iter().filter(|a| *a != "--").cloned().collect();
            assert_eq!(p.added, added, "{cmd}");
        }
    }

    #[test]
    fn a_script_with_its_own_port_is_left_and_noted() {
        let d = project(&[("dev", "vite --port 3000"), ("same", "vite --port $PORT")]);
        let p = plan(&v("npm run dev"), d.path(), PORT);
        assert_eq!(p.argv, v("npm run dev"));
        let note = p.note.unwrap_or_default();
        assert!(note.contains("`--port 3000`") && note.contains("`dev` script"), "{note}");
        // `$PORT` is the project's port: nothing to add, nothing to say.
        let p = plan(&v("npm run same"), d.path(), PORT);
        assert_eq!(p.argv, v("npm run same"));
        assert!(p.added.is_empty());
        assert_eq!(p.note, None);
    }

    #[test]
    fn scripts_with_shell_operators_get_nothing_and_a_note() {
        let scripts = [
            "vite && echo done",
            "vite || true",
            "echo hi; vite",
            "vite | tee log",
            "vite > log",
            "vite < /dev/null",
            "vite &",
            "vite --base $(cat base)",
            "vite --base `cat base`",
            "vite --base \"$(cat base)\"",
            "echo hi\nvite",
            "(vite)",
        ];
        for s in scripts {
            let d = project(&[("dev", s)]);
            let p = plan(&v("npm run dev"), d.path(), PORT);
            assert_eq!(p.argv, v("npm run dev"), "{s}");
            assert!(p.added.is_empty(), "{s}");
            assert_eq!(p.tool, Some("vite"), "{s}");
            let note = p.note.unwrap_or_default();
            assert!(
                note.contains("shell operators") && note.contains("`dev` script"),
                "{s}: {note}"
            );
            assert!(note.contains("--port {port}") && note.contains("--port $PORT"), "{note}");
        }
        // Quoted, an operator character is just text.
        let d = project(&[("dev", "vite --base '/a&b;c/'")]);
        assert_eq!(plan(&v("npm run dev"), d.path(), PORT).added, v(VITE));
        // No server that ignores PORT in it: nothing to say.
        let d = project(&[("dev", "tsc && node dist/server.js")]);
        assert_eq!(plan(&v("npm run dev"), d.path(), PORT), Plan::unchanged(&v("npm run dev")));
    }

    #[test]
    fn an_unreadable_package_json_is_noted_and_a_missing_one_is_not() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(plan(&v("npm run dev"), d.path(), PORT), Plan::unchanged(&v("npm run dev")));
        std::fs::write(d.path().join("package.json"), "{ not json").unwrap();
        let p = plan(&v("npm run dev"), d.path(), PORT);
        assert_eq!(p.argv, v("npm run dev"));
        assert!(p.note.unwrap_or_default().contains("package.json"));
        let d = project(&[("dev", "vite 'unbalanced")]);
        assert_eq!(plan(&v("npm run dev"), d.path(), PORT), Plan::unchanged(&v("npm run dev")));
    }

    #[test]
    fn empty_and_odd_commands_are_left_alone() {
        let d = tempfile::tempdir().unwrap();
        for argv in [vec![], v("npm"), v("npm run"), v("pnpm"), v("npx"), v("npx -y"), v("bunx")] {
            assert_eq!(plan(&argv, d.path(), PORT), Plan::unchanged(&argv), "{argv:?}");
        }
        let odd = vec!["vite".to_owned(), String::new(), "@".to_owned()];
        assert_eq!(plan(&odd, d.path(), PORT).added, v(VITE));
        assert_eq!(plan(&["@".to_owned()], d.path(), PORT), Plan::unchanged(&["@".to_owned()]));
    }

    #[test]
    fn the_message_names_the_flags_the_tool_and_the_way_out() {
        let d = tempfile::tempdir().unwrap();
        let p = plan(&v("vite"), d.path(), PORT);
        assert_eq!(
            p.message().as_deref(),
            Some(
                "portd: added `--port 4123 --strictPort --host 127.0.0.1` (vite ignores PORT); \
                 pass `--no-inject` to stop this"
            )
        );
        assert_eq!(plan(&v("vite build"), d.path(), PORT).message(), None);
    }

    #[test]
    fn shell_words_split_like_sh_for_one_simple_command() {
        let ok: &[(&str, &[&str])] = &[
            ("vite", &["vite"]),
            ("  vite   dev  ", &["vite", "dev"]),
            ("vite --base '/a b/'", &["vite", "--base", "/a b/"]),
            ("vite --base \"/a b/\"", &["vite", "--base", "/a b/"]),
            ("vite --base \"a\\\"b\"", &["vite", "--base", "a\"b"]),
            ("vite a\\ b", &["vite", "a b"]),
            ("X=1 vite --port $PORT", &["X=1", "vite", "--port", "$PORT"]),
            ("vite ''", &["vite", ""]),
        ];
        for (s, want) in ok {
            let want: Vec<String> = want.iter().map(|w| (*w).to_owned()).collect();
            assert_eq!(shell_words(s), Ok(want), "{s}");
        }
        assert_eq!(shell_words("vite 'x"), Err(Unsplit::Quotes));
        assert_eq!(shell_words("vite \"x"), Err(Unsplit::Quotes));
        assert_eq!(shell_words("vite \\"), Err(Unsplit::Quotes));
        assert_eq!(shell_words("a && b"), Err(Unsplit::Operators));
    }

    #[test]
    fn tool_names_come_from_paths_versions_and_packages() {
        let name = |s| tool_of(s).map(|t| t.name);
        assert_eq!(name("vite"), Some("vite"));
        assert_eq!(name("vite@6.4.6"), Some("vite"));
        assert_eq!(name("node_modules/.bin/vite"), Some("vite"));
        assert_eq!(name("@angular/cli@latest"), Some("ng"));
        assert_eq!(name("@expo/cli"), Some("expo"));
        assert_eq!(name("@scope/vite"), None);
        assert_eq!(name("vitest"), None);
        assert_eq!(name(""), None);
        assert_eq!(name("@"), None);
    }
}
