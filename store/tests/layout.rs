//! Where system calls may live: `unsafe` and `libc` only in
//! `core/src/sys/`, behind its safe API; the store and the CLI forbid both.

use std::path::Path;

/// The Rust sources under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn store_and_cli_use_neither_unsafe_nor_libc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for krate in ["store", "cli"] {
        let manifest = std::fs::read_to_string(root.join(krate).join("Cargo.toml")).unwrap();
        assert!(!manifest.contains("libc"), "{krate}/Cargo.toml depends on libc");
        let mut files = Vec::new();
        sources(&root.join(krate).join("src"), &mut files);
        assert!(files.len() > 3, "{krate}: no sources found");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                assert!(
                    !code.contains("libc::")
                        && !code.contains("unsafe {")
                        && !code.contains("unsafe fn"),
                    "{}:{}: {line}",
                    f.display(),
                    i + 1
                );
            }
        }
    }
    for (krate, top) in [("store", "src/lib.rs"), ("cli", "src/main.rs")] {
        let text = std::fs::read_to_string(root.join(krate).join(top)).unwrap();
        assert!(
            text.contains("#![forbid(unsafe_code)]"),
            "{krate}/{top} does not forbid unsafe code"
        );
    }
}
