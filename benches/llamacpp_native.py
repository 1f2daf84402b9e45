#!/usr/bin/env python3
"""autodidact against llama.cpp's own benchmark tools, built natively, side by side in one run.

    # llama.cpp from the sources vendored in the llama-cpp-python sdist (~10-40 minutes on 2 cores):
    python3 -m pip download --no-deps --no-binary :all: -d /tmp/lcpp llama-cpp-python
    cd /tmp/lcpp && tar xzf llama_cpp_python-*.tar.gz && cd llama_cpp_python-*/vendor/llama.cpp
    cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release \
        "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
        "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    cmake --build build -j2 --target llama-bench llama-batched-bench
    # The -mno-amx flags matter on this project's VMs: their CPUs advertise AMX, so -march=native
    # compiles ggml's AMX kernels, but the first `tilezero` dies with SIGILL (the VM does not
    # enable the tile state). A plain GGML_NATIVE=ON build of llama.cpp 0c1e570 crashes here.
    # then, from this repository:
    python3 benches/llamacpp_native.py --native /tmp/lcpp/llama_cpp_python-*/vendor/llama.cpp/build \\
        [--bin target/release/autodidact] [--model MODEL.gguf] [--rounds 3] [--reps 3] [--threads 2] \\
        [--batch 1,16,32]

Each round runs both sides once, the order swapping every round, so the shared machine's slow
spells fall on both; each ratio is the median of the per-round ratios, shown with its spread.
  ours:   autodidact bench -m MODEL --pp 512 --tg 64 --batch B --reps R --threads T --json
  theirs: llama-bench -m MODEL -p 512 -n 64 -t T -r R -o jsonl
          llama-batched-bench -m MODEL -c 4096 -b 2048 -ub 512 -npp 64 -ntg 64 -npl B -t T
                              --output-format jsonl
The tests correspond: pp512 (one 512-token prompt), tg64 (64 single-token steps from an empty
cache) and batched B (B sequences of 64 prompt tokens, then 64 steps of all B together; tokens/s
of the decode part, llama-batched-bench's S_TG). Our tg and batched figures include an argmax per
token, which llama.cpp's tools skip. The load average before each side is printed, as a measure
of how busy the machine was.
"""
import argparse, json, os, subprocess, sys, time

HOME = os.environ.get("AUTODIDACT_HOME", os.path.expanduser("~/.autodidact"))


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def jsonl(text):
    return [json.loads(l) for l in text.splitlines() if l.strip().startswith("{")]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout


def ours(a):
    out = run([a.bin, "bench", "-m", a.model, "--pp", "512", "--tg", "64", "--batch", a.batch,
               "--reps", str(a.reps), "--threads", str(a.threads), "--json"])
    return {r["test"]: r["tokens_per_s"] for r in jsonl(out) if "tokens_per_s" in r}


def theirs(a):
    res = {}
    bench = os.path.join(a.native, "bin", "llama-bench")
    for r in jsonl(run([bench, "-m", a.model, "-p", "512", "-n", "64", "-t", str(a.threads),
                        "-r", str(a.reps), "-o", "jsonl"])):
        name = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
        res[name] = r["avg_ts"]
        res["commit"] = r.get("build_commit", "?")
    batched = os.path.join(a.native, "bin", "llama-batched-bench")
    for r in jsonl(run([batched, "-m", a.model, "-c", "4096", "-b", "2048", "-ub", "512",
                        "-npp", "64", "-ntg", "64", "-npl", a.batch, "-t", str(a.threads),
                        "--output-format", "jsonl"])):
        res[f"batched B={r['pl']}"] = r["speed_tg"]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--native", required=True, help="llama.cpp build directory (with bin/llama-bench)")
    ap.add_argument("--bin", default="target/release/autodidact")
    ap.add_argument("--model", default=os.path.join(HOME, "models", "gemma3-270m.gguf"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", default="1,16,32", help="batched sizes, comma-separated")
    a = ap.parse_args()
    rounds = []
    for i in range(a.rounds):
        sides = [("autodidact", ours), ("llama.cpp", theirs)]
        if i % 2:
            sides.reverse()
        got = {}
        for name, f in sides:
            la = loadavg()
            got[name] = f(a)
            print(f"round {i + 1}: {name} (load average before: {la:.2f}): "
                  + json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in got[name].items()}),
                  file=sys.stderr)
        rounds.append((got["autodidact"], got["llama.cpp"]))
    med = lambda v: sorted(v)[len(v) // 2]
    commit = rounds[0][1].get("commit", "?")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {a.threads} threads, {a.rounds} alternating round(s), "
          f"each side the median of {a.reps} reps per round; llama.cpp {commit} (native llama-bench / "
          f"llama-batched-bench); ratio = median of the per-round ratios [min-max]")
    print("| test | autodidact (t/s) | llama.cpp (t/s) | ratio |")
    print("|---|---|---|---|")
    tests = ["pp512", "tg64"] + [f"batched B={b}" for b in a.batch.split(",")]
    for k in tests:
        o, t = med([r[0][k] for r in rounds]), med([r[1][k] for r in rounds])
        ratios = [r[0][k] / r[1][k] for r in rounds]
        print(f"| {k} | {o:.1f} | {t:.1f} | {med(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] |")


if __name__ == "__main__":
    sys.exit(main())
