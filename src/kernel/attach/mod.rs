//! Where reflex's programs are attached: one type per kind of attachment,
//! each behind [`Attachment`], held in one collection ([`all`]). Installing a
//! rule set attaches every kind, the switch to it is one map write, and then
//! every kind lets go of what the set in force does not use; stopping
//! detaches every kind. A new kind is one more type here, and stopping
//! cannot forget it.

mod fentry;
mod followers;
mod lsm;
mod raw;
mod sampler;
mod tracepoints;

pub use fentry::TEMPLATE_SYSCALL as FENTRY_TEMPLATE_SYSCALL;
pub(super) use followers::PROGRAMS as FOLLOWER_PROGRAMS;
pub(crate) use tracepoints::stub_arity;

use super::object::{LoadError, Objects};
use super::plan::Plan;
use crate::rules::RuleSet;

/// One kind of attachment: its programs (loaded on first use, kept loaded)
/// and the links that attach them.
pub(super) trait Attachment {
    /// Attaches what `set`, hooked as `plan` says, needs and is not attached
    /// yet. Programs find no rules of `set`'s slot until the switch to it,
    /// so attaching before the switch is harmless.
    fn attach(
        &mut self,
        objects: &Objects<'_>,
        set: &RuleSet,
        plan: &Plan,
    ) -> Result<(), LoadError>;

    /// Lets go of what the set in force (None: no set) does not use: after a
    /// switch, and after an install that failed.
    fn keep_only(&mut self, in_force: Option<(&RuleSet, &Plan)>);

    /// Detaches everything; its programs stay loaded.
    fn detach(&mut self);

    /// Where it is attached, for people (nothing when it is not).
    fn describe(&self) -> Vec<String>;

    /// Runs of its own programs the kernel skipped (see
    /// [`super::Kernel::missed`]), by program.
    fn missed(&self) -> Vec<(String, u64)>;
}

/// Every kind, in the order the banner names them.
pub(super) fn all() -> Vec<Box<dyn Attachment>> {
    vec![
        Box::new(tracepoints::Tracepoints::default()),
        Box::new(raw::Raw::default()),
        Box::new(fentry::Fentry::default()),
        Box::new(sampler::Sampler::default()),
        Box::new(followers::Followers::default()),
        Box::new(lsm::Lsm::default()),
    ]
}
