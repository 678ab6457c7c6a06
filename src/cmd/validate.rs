//! `reflex validate`: check policy files without loading anything.

use std::process::ExitCode;

use crate::cli::ValidateArgs;
use crate::features::{Answer, Features};
use crate::policy::{self, Diagnostic, Diagnostics, Env, Point, Trigger};
use crate::rules;

pub fn validate(args: &ValidateArgs, features: &Features) -> ExitCode {
    let mut env = match Env::host_at(args.host_root.as_deref()) {
        Ok(env) => env,
        Err(e) => {
            eprintln!(
                "reflex: error: --host-root {}: {e}",
                args.host_root.clone().unwrap_or_default().display()
            );
            return ExitCode::from(2);
        }
    };
    if let Some(view) = env.host.view() {
        println!("names resolved in {view}");
    }
    if let Some(arch) = args.arch {
        env.arch = arch;
    }
    let result = policy::load(&args.policies, &env).and_then(|loaded| {
        let set = rules::compile(&loaded.policy, rules::Options::default())?;
        if set.needs_kfuncs() {
            if let Answer::No(why) = features.signal_task() {
                return Err(Diagnostics(
                    loaded
                        .policy
                        .rules
                        .iter()
                        .filter(|r| r.to != policy::To::Caller)
                        .map(|r| {
                            Diagnostic::error(
                                r.at.clone(),
                                format!(
                                    "rule '{}' signals another task (`to:`), which this kernel \
                                     cannot do: {why}; signal the caller instead, or run on \
                                     Linux 6.13 or newer (`reflex check`)",
                                    r.name
                                ),
                            )
                        })
                        .collect(),
                ));
            }
        }
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
            for rule in &loaded.policy.rules {
                let Trigger::Hook { hook, fallback, .. } = &rule.trigger else {
                    continue;
                };
                let elsewhere = match fallback {
                    Some(f) => format!("falls back to {} at syscall entry", f.describe()),
                    None => "is refused".into(),
                };
                println!(
                    "  rule '{}' needs BPF-LSM ({}); where the kernel refuses it, the rule {elsewhere}",
                    rule.name,
                    hook.lsm()
                );
            }
            for (&point, table) in &set.tables {
                let (rules, lookups) = (table.slots.len(), table.dims.count_ones());
                let point = match point {
                    Point::Exit(_) => format!("{} exit", table.name),
                    Point::Hook(_) | Point::Entry(_) | Point::Sample => table.name.to_string(),
                };
                if rules == 0 {
                    println!("  {point:<24} entry timed for exit rules");
                    continue;
                }
                println!(
                    "  {point:<24} {rules} rule{}, {lookups} selector lookup{} per call",
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
