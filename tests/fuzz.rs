//! Fuzzing the policy path (a bounded number of inputs, in every test run):
//! the shipped examples, mutated — characters and YAML tokens inserted,
//! deleted, lines swapped or repeated, huge and odd values — then parsed,
//! checked, degraded and compiled. Nothing may panic, output stays bounded,
//! and every error has a place in the file.

use proptest::prelude::*;

use reflex::policy::check::{Env, MAX_FILE_BYTES, load_str};
use reflex::policy::degrade::without_lsm;
use reflex::rules::{Options, compile};

const EXAMPLES: [&str; 12] = [
    include_str!("../policies/seed.yaml"),
    include_str!("../policies/examples/no-debuggers.yaml"),
    include_str!("../policies/examples/deny-debuggers.yaml"),
    include_str!("../policies/examples/guard-services.yaml"),
    include_str!("../policies/examples/no-new-modules.yaml"),
    include_str!("../policies/examples/no-bpf-loading.yaml"),
    include_str!("../policies/examples/slow-syscall-dump.yaml"),
    include_str!("../policies/examples/sample-profile.yaml"),
    include_str!("../policies/examples/stop-fork-bombs.yaml"),
    include_str!("../policies/examples/cool-down.yaml"),
    include_str!("../policies/examples/tell-the-parent.yaml"),
    include_str!("../policies/examples/audit-cgroup-execs.yaml"),
];

/// Pieces a mutation inserts: YAML syntax, placeholders, values at and past
/// every limit, names that are almost right, control characters.
const TOKENS: [&str; 32] = [
    "{",
    "}",
    "[",
    "]",
    ":",
    ": ",
    "- ",
    ",",
    "\n",
    "  ",
    "'",
    "\"",
    "#",
    "&a",
    "*a",
    "!!str ",
    "${X}",
    "${REFLEX_FUZZ_UNSET}",
    "${HOME:-x}",
    "99999999999999999999999",
    "-1",
    "0",
    "4294967296",
    "1e400",
    "999999999999h",
    "not",
    "SIGKILL",
    "protected",
    "\x1b[2J",
    "\u{0}",
    "é",
    "deny",
];

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, usize),
    Delete(usize, usize),
    SwapLines(usize, usize),
    RepeatLine(usize, usize),
    Long(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, t)| Mutation::Insert(at, t)),
        (any::<usize>(), 1..8usize).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), 1..100usize).prop_map(|(a, n)| Mutation::RepeatLine(a, n)),
        (any::<usize>(), 1..20_000usize).prop_map(|(at, n)| Mutation::Long(at, n)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let boundary = |at: usize| {
        let mut i = at % (text.len() + 1);
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match *m {
        Mutation::Insert(at, t) => {
            let i = boundary(at);
            format!("{}{}{}", &text[..i], TOKENS[t], &text[i..])
        }
        Mutation::Delete(at, n) => {
            let i = boundary(at);
            let j = boundary(i + n);
            format!("{}{}", &text[..i], &text[j.max(i)..])
        }
        Mutation::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let n = lines.len();
                lines.swap(a % n, b % n);
            }
            lines.join("\n") + "\n"
        }
        Mutation::RepeatLine(a, n) => {
            let lines: Vec<&str> = text.lines().collect();
            let Some(line) = lines.get(a % lines.len().max(1)) else {
                return text.to_string();
            };
            let mut out = String::from(text);
            for _ in 0..n {
                out.push_str(line);
                out.push('\n');
            }
            out
        }
        Mutation::Long(at, n) => {
            let i = boundary(at);
            format!("{}{}{}", &text[..i], "x".repeat(n), &text[i..])
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_examples_never_panic_and_every_error_has_a_place(
        which in 0..EXAMPLES.len(),
        mutations in proptest::collection::vec(mutation(), 0..6),
    ) {
        let mut text = EXAMPLES[which].to_string();
        for m in &mutations {
            text = apply(&text, m);
        }
        let env = Env::host();
        let lines = text.lines().count() as u32 + 1;
        match load_str(&text, "fuzz.yaml".as_ref(), &env) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    prop_assert_eq!(w.at.file.to_str(), Some("fuzz.yaml"));
                }
                // Where BPF-LSM is refused, and where it is not.
                let degraded = without_lsm(&loaded.policy, "refused (fuzz)", env.arch);
                if let Ok((p, _)) = degraded {
                    let _ = compile(&p, Options::default());
                }
                let _ = compile(&loaded.policy, Options::default());
            }
            Err(diags) => {
                prop_assert!(!diags.0.is_empty());
                for d in &diags.0 {
                    prop_assert_eq!(d.at.file.to_str(), Some("fuzz.yaml"));
                    prop_assert!(d.at.line <= lines, "{} is past the end ({} lines)", d, lines);
                    // Short: a message says what is wrong, not the input.
                    prop_assert!(d.to_string().len() < 1000, "{} bytes: {}", d.to_string().len(), d);
                }
            }
        }
        if text.len() as u64 > MAX_FILE_BYTES {
            prop_assert!(load_str(&text, "fuzz.yaml".as_ref(), &env).is_err());
        }
    }
}
