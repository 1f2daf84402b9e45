//! Self-improvement: skills as task families with programmatic verifiers, fixed held-out
//! sets, verified rollouts, gated LoRA rounds (ReST-EM) and a registry that makes every change
//! reversible.
//!
//! ```no_run
//! use autodidact_improve::{Improver, ImproveConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let home = std::path::Path::new("/home/me/.autodidact");
//! let model = autodidact_model::Model::load(home.join("models/gemma3-270m.gguf"))?;
//! let mut imp = Improver::new(&model, "gemma3-270m", None, home)?;
//! let summary = imp.start(ImproveConfig::default(), &mut |_event| true)?;
//! println!("current self: {:?}", summary.current);
//! # Ok(()) }
//! ```
pub mod arithmetic;
mod changes;
mod error;
pub mod eval;
pub mod evalset;
pub mod extract;
mod improve;
pub mod instructions;
pub mod pairs;
pub mod plot;
pub mod propose;
pub mod recall;
pub mod registry;
pub mod replay;
pub mod report;
pub mod rng;
pub mod rollout;
pub mod score;
pub mod skill;
pub mod task;
pub mod trainer;
pub mod user;

pub use changes::Changes;
pub use error::ImproveError;
pub use improve::{
    current_self, CurrentSelf, CurriculumLevel, Event, ImproveConfig, Improver, Observer, Paths,
    Phase, RoundSummary, Subject, Summary,
};
pub use registry::Registry;
pub use score::{GateConfig, LevelScore, SkillScore};
pub use skill::Skill;
pub use task::{Degenerate, Split, Task, Verdict};
