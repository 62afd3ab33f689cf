//! The `portd-proxy` binary's own arguments (the proxy's behaviour is
//! tested through `portd proxy` in the CLI tests, which use this binary).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portd-proxy");

#[test]
fn help_prints_the_usage_and_a_bad_argument_is_a_usage_error() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("Usage: portd-proxy [--port P] [--home DIR]")
    );
    assert!(out.stderr.is_empty());
    for args in [&["--bogus"][..], &["--port", "0"], &["--port"]] {
        let out = Command::new(BIN).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!((out.status.code(), out.stdout.is_empty()), (Some(2), true), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
}
