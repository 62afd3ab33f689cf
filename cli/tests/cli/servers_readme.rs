//! The README's managed-server examples, run as written (the code blocks
//! are read from README.md, so an example that drifts fails here).
//! Ports 39200–39259.

use crate::util::*;
use std::path::Path;

/// The fenced `sh` block of README.md that contains `line`, unindented.
fn readme_block(line: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let mut block: Option<Vec<&str>> = None;
    let mut indent = 0;
    for l in readme.lines() {
        let t = l.trim_start();
        match &mut block {
            None if t == "```sh" => {
                indent = l.len() - t.len();
                block = Some(Vec::new());
            }
            Some(b) if t == "```" => {
                if b.iter().any(|x| x.contains(line)) {
                    return b.join("\n") + "\n";
                }
                block = None;
            }
            Some(b) => b.push(l.get(indent..).unwrap_or(t)),
            None => {}
        }
    }
    panic!("no ```sh block of README.md contains `{line}`");
}

#[test]
fn the_readmes_managed_server_walkthrough_runs_as_written() {
    let env = servers_env(39200);
    let script = readme_block("PORT=$(portd start api)");
    std::fs::create_dir_all(env.root().join("api")).unwrap();
    std::fs::write(env.root().join("api/hello.txt"), "hello from api\n").unwrap();
    if !have("curl") {
        return skip("curl is not installed");
    }
    let out = env.shell(&format!("set -e\n{script}"));
    assert_eq!(out.code, 0, "{script}\n{out:#?}");
    // curl printed the directory listing, naming the file; `logs` showed
    // the server's request line; `status --detailed` its row.
    assert!(out.stdout.contains("hello.txt"), "{out:#?}");
    assert!(out.stdout.contains("\"GET / HTTP/1.1\" 200"), "the log has the request: {out:#?}");
    assert!(
        out.stdout.contains("servers: 1 running, 0 sleeping, 0 stopped of 1 defined"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("stopped `api`"), "{out:#?}");
    env.assert_nothing_runs("`portd stop api` ended it");
}

#[test]
fn the_readmes_projects_that_talk_to_each_other_run_as_written() {
    if !have("node") || !have("npm") || !have("curl") {
        return skip("node, npm and curl are needed");
    }
    let env = servers_env(39230);
    let script = readme_block("portd add web --env API_URL={url:api}");
    let root = env.root();
    // What the README's `api.js` and `npm run dev` stand for: two tiny
    // node servers; web answers with the API_URL it was given.
    std::fs::write(
        root.join("api.js"),
        "require('http').createServer((q, s) => s.end('api')).listen(process.env.PORT, '127.0.0.1');\n",
    )
    .unwrap();
    std::fs::write(
        root.join("web.js"),
        "require('http').createServer((q, s) => s.end('web uses ' + process.env.API_URL)).listen(process.env.PORT, '127.0.0.1');\n",
    )
    .unwrap();
    std::fs::write(
        root.join("package.json"),
        r#"{"private":true,"scripts":{"dev":"node web.js"}}"#,
    )
    .unwrap();
    let out = env.shell(&format!("set -e\n{script}"));
    assert_eq!(out.code, 0, "{script}\n{out:#?}");
    assert!(out.stderr.contains("portd: starting `api` first (web refers to it)"), "{out:#?}");
    let web: u16 = out.stdout.lines().last().unwrap().trim().parse().unwrap();
    let api = env.entry("api").port;
    let (status, body) = http_get(web, "/").expect("web answers");
    assert_eq!((status, body.as_str()), (200, format!("web uses http://localhost:{api}").as_str()));
    assert_eq!(http_get(api, "/").expect("api answers").1, "api");
}
