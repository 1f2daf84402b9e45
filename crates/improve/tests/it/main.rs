//! The whole loop on a tiny random model, in seconds: rollouts → verify → train → eval → gate
//! → promote, a rejected candidate, a resume after an interruption, and rollback; a run's report.
mod loop_e2e;
mod report;
