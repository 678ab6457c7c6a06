//! The kernel's matcher, as the kernel runs it: the C `find_rule` of
//! src/kernel/bpf/match.h, run with BPF_PROG_TEST_RUN on 20,000 random calls
//! over a policy that uses every kind of trigger, selector and matcher, and
//! compared with the policy read rule by rule. Nothing is attached: the rule
//! set sits in the maps, and each call is described to a test-only entry
//! point (`reflex_test_match`). The compiler's unit test runs the same calls
//! through a Rust copy of the lookups; this one cannot drift from the C.

#[path = "../src/rules/calls.rs"]
mod calls;
mod common;

use std::mem::MaybeUninit;
use std::sync::Arc;

use common::root_or_skip;
use reflex::features::Features;
use reflex::kernel::Matcher;
use reflex::rules::{Options, compile};

#[test]
fn the_kernel_matcher_agrees_with_the_policy_on_random_calls() {
    if !root_or_skip("the_kernel_matcher_agrees_with_the_policy_on_random_calls") {
        return;
    }
    let policy = calls::policy();
    // Monitor mode throughout: were anything ever attached, it would send
    // nothing. (Nothing is.)
    let set = compile(&policy, Options { monitor_all: true }).unwrap();
    // The kernel side also never signals reflex itself: this process.
    let me = std::process::id();
    let mut storage = MaybeUninit::uninit();
    let matcher = Matcher::load(
        &mut storage,
        Arc::new(Features::new()),
        &set,
        &[calls::PROTECTED],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut random = calls::Calls::new(7);
    let mut hits = vec![0usize; policy.rules.len() + 1];
    for _ in 0..20_000 {
        let call = random.next(&[me]);
        let kernel = matcher.answer(&call).unwrap_or_else(|e| panic!("{e}"));
        let meant = policy.first_match(&call);
        assert_eq!(
            kernel.map(|i| i as usize),
            meant,
            "the kernel's matcher and the policy disagree on {call:#?}"
        );
        hits[meant.unwrap_or(policy.rules.len())] += 1;
    }
    eprintln!("answers per rule (the last: no rule): {hits:?}");
    assert!(hits.iter().all(|&h| h > 0), "every rule answered: {hits:?}");
}
