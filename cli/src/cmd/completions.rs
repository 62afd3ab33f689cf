//! `portd completions SHELL`: clap's generated script for the visible
//! commands, plus completion of project names for bash, zsh and fish.
//!
//! Project names come from the registry when the user presses Tab: the
//! script runs the hidden `portd __complete-projects`, which prints one
//! project per line and, whatever goes wrong, nothing else.

use crate::args::Cli;
use crate::{Printer, cmd};
use clap::CommandFactory;
use clap_complete::Shell;
use portd_store::{Config, Registry};
use std::time::Duration;

/// The commands whose NAME arguments are projects.
const PROJECT_COMMANDS: &[&str] = &["get", "run", "env", "show", "release"];

/// The options that take a value, so that the word after them is not a
/// project name.
const VALUE_OPTIONS: &[&str] = &["--home", "--dir", "--range", "--port", "--pid", "--host"];

/// Prints the completion script for `shell`.
pub fn completions(out: &Printer, shell: Shell) -> Result<(), portd_store::Error> {
    if out.json {
        return Err(
            cmd::usage("`completions` prints a shell script, not JSON").with_hint("drop `--json`")
        );
    }
    let mut app = visible_command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut app, "portd", &mut buf);
    let script = String::from_utf8_lossy(&buf).into_owned();
    out.data(&with_projects(shell, script));
    Ok(())
}

/// The command line without its hidden commands: clap's generators list
/// hidden subcommands too, and `portd __supervise` is no one's to type.
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let mut app =
        clap::Command::new("portd").version(env!("CARGO_PKG_VERSION")).subcommand_required(true);
    if let Some(about) = full.get_about() {
        app = app.about(about.clone());
    }
    for arg in full.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
        app = app.arg(arg.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        app = app.subcommand(sub.clone());
    }
    app
}

/// Adds project-name completion to a generated script.
fn with_projects(shell: Shell, script: String) -> String {
    match shell {
        Shell::Bash => bash(script),
        Shell::Zsh => zsh(script),
        Shell::Fish => fish(script),
        _ => script,
    }
}

fn bash(script: String) -> String {
    // The generated function keeps its work under another name; `_portd`
    // (which `complete -F` names) calls it, then offers project names
    // where a NAME goes.
    let script = script.replacen("_portd() {", "_portd_clap() {", 1);
    let words = |v: &[&str]| v.join("|");
    format!(
        r#"{script}
_portd() {{
    _portd_clap "$@"
    local cur="${{COMP_WORDS[COMP_CWORD]}}" sub="" home=() given=0 i w
    [[ "$cur" == -* || "$cur" == */* ]] && return 0
    case "${{COMP_WORDS[COMP_CWORD-1]}}" in
        {all_values}) return 0 ;;
    esac
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        case "$w" in
            --) return 0 ;;
            # bash splits `--home=DIR` into `--home`, `=`, `DIR`.
            --home) if [[ "${{COMP_WORDS[i+1]}}" == "=" ]]; then
                        home=(--home "${{COMP_WORDS[i+2]}}"); ((i += 2))
                    else
                        home=(--home "${{COMP_WORDS[i+1]}}"); ((i++))
                    fi ;;
            --home=*) home=(--home "${{w#--home=}}") ;;
            {values}) ((i++)) ;;
            -*) ;;
            *) if [[ -z "$sub" ]]; then sub="$w"; else ((given++)); fi ;;
        esac
    done
    case "$sub" in
        release) ;;
        {single}) ((given == 0)) || return 0 ;;
        *) return 0 ;;
    esac
    local IFS=$'\n'
    COMPREPLY=( $(compgen -W "$("${{COMP_WORDS[0]}}" "${{home[@]}}" __complete-projects 2>/dev/null)" -- "$cur") )
    return 0
}}
"#,
        values = words(&VALUE_OPTIONS[1..]),
        all_values = words(VALUE_OPTIONS),
        single = words(&PROJECT_COMMANDS[..4]),
    )
}

fn zsh(script: String) -> String {
    let mut out = String::with_capacity(script.len() + 512);
    for line in script.lines() {
        let names = line.starts_with("'::name -- ") || line.starts_with("'*::names -- ");
        match line.strip_suffix(":_default' \\") {
            Some(head) if names => {
                out.push_str(head);
                out.push_str(":_portd_projects' \\");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    let helper = r#"(( $+functions[_portd_projects] )) ||
_portd_projects() {
    local -a projects home
    [[ -n ${opt_args[--home]} ]] && home=(--home ${opt_args[--home]})
    projects=(${(f)"$(${words[1]} $home __complete-projects 2>/dev/null)"})
    _alternative 'projects:project:compadd -a projects' 'files:directory project:_files -/'
}

"#;
    match out.rfind("if [ \"$funcstack[1]\" = \"_portd\" ]") {
        Some(at) => {
            out.insert_str(at, helper);
            out
        }
        None => out + helper,
    }
}

fn fish(script: String) -> String {
    let cond: Vec<String> =
        PROJECT_COMMANDS.iter().map(|c| format!("__fish_portd_using_subcommand {c}")).collect();
    format!(
        "{script}complete -c portd -n \"{}\" -a \"(portd __complete-projects 2>/dev/null)\" -d project\n",
        cond.join("; or ")
    )
}

/// `portd __complete-projects`: one project per line (names as typed,
/// directory projects by their path), from the registry given by
/// `--home`/`PORTD_HOME`. Prints nothing at all when anything fails, and
/// never waits long for a busy registry: it runs on a key press.
pub fn projects(cli: &Cli, out: &Printer) {
    let env = |k: &str| std::env::var(k).ok();
    let Ok(mut config) = Config::load(&env) else { return };
    config.lock_timeout = Duration::from_millis(200);
    let Ok((home, _)) = crate::home(cli) else { return };
    if !home.join(portd_store::REGISTRY_FILE).is_file() {
        return;
    }
    let Ok(reg) = Registry::open(&home, config) else { return };
    let Ok(list) = reg.list() else { return };
    // Relay entries (`NAME@relay`) are no project a command takes.
    let mut names: Vec<&str> = list
        .iter()
        .map(|l| l.entry.project.as_str())
        .filter(|k| !k.ends_with(portd_store::RELAY_SUFFIX))
        .collect();
    names.sort_unstable();
    if !names.is_empty() {
        out.data(&names.join("\n"));
    }
}
