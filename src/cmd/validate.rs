//! `reflex validate`: check policy files without loading anything.

use std::process::ExitCode;

use crate::cli::ValidateArgs;
use crate::policy::{self, Env};
use crate::rules;

pub fn validate(args: &ValidateArgs) -> ExitCode {
    let mut env = Env::host();
    if let Some(arch) = args.arch {
        env.arch = arch;
    }
    let result = policy::load(&args.policies, &env).and_then(|loaded| {
        let set = rules::compile(&loaded.policy, rules::Options::default())?;
        Ok((loaded, set))
    });
    match result {
        Ok((loaded, set)) => {
            for w in &loaded.warnings {
                println!("{w}");
            }
            let files: Vec<String> = loaded
                .policy
                .sources
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            println!(
                "ok: {} rules from {} ({} warnings)",
                set.rules.len(),
                files.join(", "),
                loaded.warnings.len()
            );
            for rule in loaded.policy.rules.iter().filter(|r| r.hook.is_some()) {
                let hook = rule.hook.expect("filtered");
                let elsewhere = match rule.fallback {
                    Some(f) => format!("falls back to {} at syscall entry", f.describe()),
                    None => "is refused".into(),
                };
                println!(
                    "  rule '{}' needs BPF-LSM ({}); where the kernel refuses it, the rule {elsewhere}",
                    rule.name,
                    hook.lsm()
                );
            }
            for table in set.syscalls.values() {
                let (rules, lookups) = (table.slots.len(), table.dims.count_ones());
                println!(
                    "  {:<20} {rules} rule{}, {lookups} selector lookup{} per call",
                    table.name,
                    if rules == 1 { "" } else { "s" },
                    if lookups == 1 { "" } else { "s" },
                );
            }
            ExitCode::SUCCESS
        }
        Err(diags) => {
            println!("{diags}");
            let errors = diags.errors();
            println!(
                "{errors} error{}, {} warning{}",
                if errors == 1 { "" } else { "s" },
                diags.0.len() - errors,
                if diags.0.len() - errors == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}
