#!/usr/bin/env bash
# The test command: lint, pull the default model if needed, run every test (optimized build).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo build --release -p autodidact
./target/release/autodidact pull gemma3-270m >/dev/null
cargo test --workspace --release
# The official OpenAI Python client against `autodidact serve` on loopback.
python3 -m pip install --quiet --disable-pip-version-check openai 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages openai
python3 scripts/openai_client_test.py ./target/release/autodidact
# The web UI in a real headless Chromium (screenshots in target/ui-artifacts/).
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium chromium-driver
fi
python3 scripts/ui_test.py ./target/release/autodidact
