//! The engine through its public API on tiny random models (the fast tier: no real model, each test
//! a few seconds at most): continuous batching, prefix reuse, stop strings, limits, constrained JSON,
//! and the [`EngineHandle`](autodidact_engine::EngineHandle) actor's queue, cancellation and errors.
mod actor;
mod batching;
mod common;
mod invariance;
mod json;
mod output;
