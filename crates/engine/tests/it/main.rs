//! Engine integration tests on tiny random models (and the real model where it is present).
mod invariance;
mod json;
