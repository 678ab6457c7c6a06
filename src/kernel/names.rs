//! Which rule an event names: the kernel writes each install's generation
//! into its rules, and every event carries it.

/// Rule names of recent installs, by generation. The kernel writes the
/// install's generation into each rule and each event carries it, so an event
/// is named by the rules that decided it, however late it is read — not by
/// whatever its rule-set slot holds by then.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleNames {
    recent: std::collections::VecDeque<(u32, std::sync::Arc<Vec<String>>)>,
}

impl RuleNames {
    /// Installs remembered: events older than this many reloads are named
    /// by number.
    const KEEP: usize = 64;

    pub fn add(&mut self, generation: u32, names: Vec<String>) {
        if self.recent.len() == Self::KEEP {
            self.recent.pop_front();
        }
        self.recent
            .push_back((generation, std::sync::Arc::new(names)));
    }

    pub fn get(&self, generation: u32, rule: u32) -> Option<&str> {
        let (_, names) = self.recent.iter().rev().find(|(g, _)| *g == generation)?;
        names.get(rule as usize).map(String::as_str)
    }
}
