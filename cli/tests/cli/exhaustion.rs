//! A range full of active leases: `no free port`, then reclaiming a dead
//! owner's port.

use crate::util::*;

#[test]
fn a_full_range_says_no_free_port_until_an_owner_dies() {
    let env = Env::new();
    let start = free_ports(21500, 3);
    let end = start + 2;
    env.write_config(format!("[[range]]\nname = \"tiny\"\nstart = {start}\nend = {end}\n"));
    let mut owner = Sleeper::spawn();
    let pid = owner.pid().to_string();

    let mut held = Vec::new();
    for name in ["full-a", "full-b", "full-c"] {
        let port = env.run(&["get", name, "--pid", &pid]).port();
        assert!((start..=end).contains(&port), "{port} outside {start}-{end}");
        held.push(port);
    }
    let port_of_a = held[0];
    held.sort_unstable();
    assert_eq!(held, [start, start + 1, end]);
    let listed = env.ls();
    assert!(listed.iter().all(|e| e.state == "active" && e.pid == Some(owner.pid())), "{listed:?}");

    let before = env.ls_raw();
    let out = env.run(&["get", "extra"]);
    assert_eq!(
        out.error(3),
        format!(
            "error: no free port: every port of `tiny {start}-{end}` is held by an active \
             project, bound, or excluded\n\
             hint: free ports with `portd release --idle`, or add a `[[range]]` to the config file\n"
        )
    );
    assert_eq!(env.ls_raw(), before, "a failed `get` changed the registry");
    // Asking again (and through `env`) fails the same way.
    env.run(&["get", "extra"]).error(3);
    env.run(&["env", "extra"]).env_error(3);
    assert_eq!(env.ls_raw(), before);

    // The owner dies: its leases go idle, and the least recently used one
    // is reclaimed.
    owner.kill();
    let out = env.run(&["get", "extra"]);
    assert_eq!(
        out.stdout,
        format!("{port_of_a}\n"),
        "the least recently used idle entry is evicted"
    );
    let note = format!("evicted `full-a` (port {port_of_a}, idle since ");
    assert!(out.code == 0 && out.stderr.starts_with(&note), "{out:#?}");
    let listed = env.ls();
    let mut rows: Vec<(&str, &str)> =
        listed.iter().map(|e| (e.project.as_str(), e.state.as_str())).collect();
    rows.sort_unstable();
    assert_eq!(rows, [("extra", "idle"), ("full-b", "idle"), ("full-c", "idle")]);
}
