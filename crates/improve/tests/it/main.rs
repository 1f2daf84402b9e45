//! The whole loop on a tiny random model, in seconds: rollouts → verify → train → eval → gate
//! → promote, a rejected candidate, a resume after an interruption, and rollback.
mod loop_e2e;
