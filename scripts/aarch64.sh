#!/usr/bin/env bash
# A static aarch64 `autodidact` (phones, boards, glasses-class devices), built on an x86_64 Debian
# machine with Debian's Rust, whose aarch64 standard library is a package (rustup's may be out of
# reach). With --test: the kernels, model (tiny models) and engine suites under qemu, the kernels
# once per NEON level (plain, dotprod, i8mm), and one real-model smoke test: greedy decoding gives
# x86's text.
#
#   scripts/aarch64.sh          # -> target/aarch64/aarch64-unknown-linux-gnu/release/autodidact
#   scripts/aarch64.sh --test
#
# Installs what is missing with apt (sudo unless root). The aarch64 build has its own target
# directory (AARCH64_TARGET_DIR, default target/aarch64), so it never disturbs the x86 build.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=0
case "${1:-}" in
  --test) TEST=1 ;;
  "") ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac
TRIPLE=aarch64-unknown-linux-gnu
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
stamp() { echo "[aarch64 $(date -u +%H:%M:%S)] $*"; }

pkgs=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
[ "$TEST" -eq 1 ] && pkgs+=(qemu-user)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  stamp "installing ${missing[*]}"
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

# Debian's toolchain lands in the system bin directory, possibly behind rustup's on PATH.
D=$(dirname "$(dpkg -L cargo-web | grep -m1 'bin/cargo$')")
export RUSTC="$D/rustc"
# Static: a dynamically linked aarch64 binary hangs in pthread_create under qemu 7.2, and a static
# one runs on any aarch64 Linux without a matching glibc.
export RUSTFLAGS="-C target-feature=+crt-static"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_DIR="${AARCH64_TARGET_DIR:-target/aarch64}"
cargo_a64() { "$D/cargo" "$@" --release --target "$TRIPLE"; }

stamp "building autodidact with $("$RUSTC" --version)"
cargo_a64 build -p autodidact
BIN="$CARGO_TARGET_DIR/$TRIPLE/release/autodidact"
stamp "built $BIN"
[ "$TEST" -eq 1 ] || exit 0

# One test binary per suite, run directly under qemu with each CPU model; a scratch HOME leaves
# the real-model tests of the model crate to the x86 run (they say SKIPPED here).
stamp "building the kernels, model and engine test suites"
mapfile -t TESTS < <(cargo_a64 test -p autodidact-kernels -p autodidact-model -p autodidact-engine \
  --no-run --message-format=json |
  python3 -c 'import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["profile"]["test"] and m.get("executable"):
        print(os.path.dirname(m["manifest_path"]), m["executable"])')
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
run_suites() { # CPU EXPECTED-LEVEL CRATE-DIRECTORY-PATTERN
  local cpu=$1 level=$2 pattern=$3 t dir exe
  for t in "${TESTS[@]}"; do
    read -r dir exe <<<"$t"
    [[ "$(basename "$dir")" =~ ^($pattern)$ ]] || continue
    stamp "qemu-aarch64 -cpu $cpu: $(basename "$dir") $(basename "$exe") (expecting $level)"
    (cd "$dir" && env -u CI -u AUTODIDACT_TEST_MODEL -u AUTODIDACT_HOME -u AUTODIDACT_SIMD \
      HOME="$scratch" AUTODIDACT_EXPECT_SIMD="$level" qemu-aarch64 -cpu "$cpu" "$exe" -q)
  done
}
# Cortex-A53: NEON only. Cortex-A76: dotprod. max: dotprod and i8mm.
run_suites cortex-a53 neon 'kernels'
run_suites cortex-a76 neon-dotprod 'kernels'
run_suites max neon-i8mm 'kernels|model|engine'

# The real model: the aarch64 binary (best level under `max`, and plain NEON) gives x86's greedy
# text. qemu runs it at a small fraction of native speed, so the prompt and answer are short.
X86=target/release/autodidact
[ -x "$X86" ] || cargo build --release -p autodidact
"$X86" pull gemma3-270m >/dev/null
args=(generate -p "The capital of France is" -n 16 --temperature 0 --threads 2)
want=$("$X86" "${args[@]}")
for cpu in max cortex-a53; do
  start=$(date +%s)
  got=$(qemu-aarch64 -cpu "$cpu" "$BIN" "${args[@]}")
  stamp "qemu -cpu $cpu: $(($(date +%s) - start)) s for ${args[*]:1:2} (16 tokens)"
  if [ "$got" != "$want" ]; then
    echo "aarch64 ($cpu) generated a different text:" >&2
    printf 'x86:     %q\naarch64: %q\n' "$want" "$got" >&2
    exit 1
  fi
done
stamp "aarch64 greedy text equals x86's: $(printf %q "$want")"
