//! Command-line behaviour that needs no privileges.

mod common;

use common::reflex_once;

#[test]
fn an_invalid_signal_is_refused_before_anything_loads() {
    let out = reflex_once(&["run", "--ppid", "1", "--signal", "SIGKIL"], false);
    assert_eq!(out.code, Some(2), "usage errors exit 2");
    let err = out.stderr.join("\n");
    assert!(err.contains("unknown signal 'SIGKIL'"), "{err}");
    assert!(err.contains("did you mean SIGKILL?"), "{err}");
    assert!(!err.contains("attached"), "{err}");
}

#[test]
fn ppid_zero_is_refused_with_the_fix() {
    let out = reflex_once(&["run", "--ppid", "0"], false);
    assert_eq!(out.code, Some(1));
    let err = out.stderr.join("\n");
    assert!(err.contains("omit --ppid to match every parent"), "{err}");
}

#[test]
fn help_names_the_subcommands() {
    let out = reflex_once(&["--help"], false);
    assert_eq!(out.code, Some(0));
    let help = out.stdout.join("\n");
    for word in ["run", "check"] {
        assert!(help.contains(word), "{help}");
    }
}
