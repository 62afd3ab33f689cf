//! `portd completions SHELL` and `--help`: what a user's shell is offered,
//! tried in the real shells, with a registry holding real projects.

use crate::util::*;
use std::path::Path;
use std::process::Command;

/// An environment whose registry holds `alpha` and `beta:api`, and the
/// completion script for `shell` written to a file.
fn setup(shell: &str) -> (Env, std::path::PathBuf) {
    let env = Env::new();
    env.run(&["get", "alpha"]).port();
    env.run(&["get", "beta:api"]).port();
    let script = env.root().join(format!("portd.{shell}"));
    std::fs::write(&script, env.run(&["completions", shell]).ok()).unwrap();
    (env, script)
}

/// Runs a shell snippet with `portd` first on `PATH` and the test's
/// registry; returns its stdout lines.
fn shell(env: &Env, program: &str, snippet: &str) -> Vec<String> {
    let dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(program)
        .args(["-c", snippet])
        .env_clear()
        .env("PATH", path)
        .env("HOME", env.root())
        .env("XDG_CONFIG_HOME", env.root())
        .env("PORTD_HOME", env.home())
        .current_dir(env.root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{program} {snippet}: {out:?}");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// What bash's completion function offers for a command line (the last
/// word is the one being completed).
fn bash_complete(env: &Env, script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let snippet = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; \
         _portd portd \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" ")
    );
    let mut got = shell(env, "bash", &snippet);
    got.retain(|l| !l.is_empty());
    got
}

#[test]
fn bash_completes_project_names_where_a_project_goes() {
    let (env, script) = setup("bash");
    let both = ["alpha", "beta:api"];
    for words in [
        &["portd", "show", ""][..],
        &["portd", "get", ""],
        &["portd", "env", ""],
        &["portd", "run", ""],
        &["portd", "release", "alpha", ""],
        &["portd", "-q", "show", ""],
    ] {
        assert_eq!(bash_complete(&env, &script, words), both, "{words:?}");
    }
    assert_eq!(bash_complete(&env, &script, &["portd", "show", "al"]), ["alpha"]);
    // Not where something else goes: a flag's value, a second name, the
    // command after `--`, a command without projects.
    for words in [
        &["portd", "get", "--range", ""][..],
        &["portd", "get", "alpha", ""],
        &["portd", "run", "alpha", "--", ""],
        &["portd", "check", ""],
    ] {
        let got = bash_complete(&env, &script, words);
        assert!(!got.iter().any(|w| w == "alpha" || w == "beta:api"), "{words:?}: {got:?}");
    }
}

#[test]
fn completions_do_not_offer_hidden_commands() {
    let (env, script) = setup("bash");
    let got = bash_complete(&env, &script, &["portd", ""]);
    assert!(got.contains(&"show".to_owned()) && got.contains(&"get".to_owned()), "{got:?}");
    assert!(!got.iter().any(|w| w.starts_with("__")), "{got:?}");
    assert_eq!(bash_complete(&env, &script, &["portd", "__"]), Vec::<String>::new());
    for sh in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let text = env.run(&["completions", sh]).ok().to_owned();
        for hidden in ["__supervise", "__exec"] {
            assert!(!text.contains(hidden), "{sh} offers {hidden}");
        }
    }
}

#[test]
fn fish_completes_project_names() {
    if !have("fish") {
        return skip("fish is not installed");
    }
    let (env, script) = setup("fish");
    let complete = |line: &str| {
        let snippet = format!("source '{}'; complete -C '{line}'", script.display());
        let mut got = shell(&env, "fish", &snippet);
        got.retain(|l| l.ends_with("\tproject"));
        got
    };
    assert_eq!(complete("portd show "), ["alpha\tproject", "beta:api\tproject"]);
    assert_eq!(complete("portd release alpha b"), ["beta:api\tproject"]);
    assert_eq!(complete("portd check "), Vec::<String>::new());
}

#[test]
fn zsh_completion_is_valid_and_completes_names_from_the_registry() {
    if !have("zsh") {
        return skip("zsh is not installed");
    }
    let (env, script) = setup("zsh");
    // The script parses, and every project position asks the registry.
    shell(&env, "zsh", &format!("zsh -n '{}'", script.display()));
    let text = std::fs::read_to_string(&script).unwrap();
    // get, run, env, show, release, and the managed servers' rm, start,
    // stop and restart (their NAME lists).
    assert_eq!(text.matches(":_portd_projects' \\").count(), 9, "{text}");
    // The helper itself, run in zsh with `compadd` recording what it is given.
    let snippet = format!(
        "source '{}' 2>/dev/null; compdef() {{ }}; _alternative() {{ print -l -- $projects }}; \
         typeset -A opt_args; words=(portd show ''); _portd_projects",
        script.display()
    );
    assert_eq!(shell(&env, "zsh", &snippet), ["alpha", "beta:api"]);
}

#[test]
fn listing_projects_for_completion_never_fails_loudly() {
    let env = Env::new();
    // No registry: nothing, and none is made.
    let out = env.run(&["__complete-projects"]);
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (0, "", ""));
    assert!(!env.home().exists());
    env.run(&["get", "alpha"]).port();
    assert_eq!(env.run(&["__complete-projects"]).ok(), "alpha\n");
    // A damaged registry, a broken configuration: still nothing, exit 0.
    std::fs::write(env.registry(), b"not a registry").unwrap();
    let out = env.run(&["__complete-projects"]);
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (0, "", ""));
    env.write_config("idle_ttl = \n");
    let out = env.run(&["__complete-projects"]);
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (0, "", ""));
}

#[test]
fn completions_refuse_json() {
    let env = Env::new();
    let out = env.run(&["completions", "bash", "--json"]);
    out.error(2);
    assert_eq!(
        out.stderr,
        "error: `completions` prints a shell script, not JSON\nhint: drop `--json`\n"
    );
}

/// Every `PORTD_*` variable the code reads is listed in `--help`.
#[test]
fn help_lists_every_environment_variable() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut vars = std::collections::BTreeSet::new();
    for dir in ["core/src", "store/src", "serve/src", "cli/src"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices("(\"PORTD_") {
                    let name: String = text[i + 2..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                        .collect();
                    vars.insert(name);
                }
            }
        }
    }
    assert!(vars.len() >= 8, "{vars:?}");
    let help = Env::new().run(&["--help"]).ok().to_owned();
    let section = help.split("Environment:").nth(1).expect("an Environment section");
    for v in &vars {
        assert!(section.contains(&format!("  {v} ")), "--help does not list {v}: {help}");
    }
}

/// `--home DIR` and `--home=DIR` (which bash splits into `--home`, `=`,
/// `DIR`) both choose the registry whose names are offered.
#[test]
fn bash_completion_follows_home_written_either_way() {
    let (env, script) = setup("bash");
    let other = env.root().join("other-home");
    let out = env.run(&["--home", other.to_str().unwrap(), "get", "gamma"]);
    out.port();
    let dir = other.to_str().unwrap();
    for words in
        [&["portd", "--home", dir, "show", ""][..], &["portd", "--home", "=", dir, "show", ""]]
    {
        assert_eq!(bash_complete(&env, &script, words), ["gamma"], "{words:?}");
    }
}
