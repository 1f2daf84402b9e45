#!/usr/bin/env bash
# The test command: lint, pull the default model if needed, run every test (optimized build).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo build --release -p autodidact
./target/release/autodidact pull gemma3-270m >/dev/null
cargo test --workspace --release
