#!/usr/bin/env python3
"""autodidact and llama.cpp side by side, in one run on this machine.

    pip install llama-cpp-python       # builds llama.cpp from source, native CPU flags
    python3 benches/vs_llamacpp.py [--bin target/release/autodidact] [--reps 3] [--rounds 3] [--threads 2]
                                   [--batch 1,16]

llama.cpp runs through llama-cpp-python's low-level API (no Python work inside the timed decode
except reading the argmax, as `autodidact bench` does), in its own process so that each side's
peak RSS is its own. The tests mirror `autodidact bench`: pp (one prompt of N tokens, logits for the
last), tg64 (64 single-token steps with greedy choice), batched B (B sequences prefilled with 64
tokens, then 64 steps of all B together; generated tokens/s over the decode part).
"""
import argparse, ctypes, json, os, subprocess, sys, time

HOME = os.environ.get("AUTODIDACT_HOME", os.path.expanduser("~/.autodidact"))
MODEL = os.path.join(HOME, "models", "gemma3-270m.gguf")
PP, BATCH = [128, 512], [1, 16]


def tokens(n, seed=0):
    s, out = seed, [2]
    for _ in range(n - 1):
        s = (s * 6364136223846793005 + 1442695040888963407) % 2**64
        out.append(1000 + (s >> 33) % 20000)
    return out


def llama_worker(reps, threads):
    import numpy as np
    import llama_cpp as L

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    t0 = time.time()
    model = L.llama_model_load_from_file(MODEL.encode(), mp)
    load = time.time() - t0
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    cp = L.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 4096, 2048, 512, max(BATCH)
    cp.n_threads = cp.n_threads_batch = threads
    cp.kv_unified = True
    ctx = L.llama_init_from_model(model, cp)
    mem = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(2048, 0, max(BATCH))

    def decode(items):
        """items: (token, pos, seq, want_logits)."""
        batch.n_tokens = len(items)
        for i, (t, p, s, lg) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = t, p, 1
            batch.seq_id[i][0], batch.logits[i] = s, lg
        assert L.llama_decode(ctx, batch) == 0

    def argmax(i):
        ptr = L.llama_get_logits_ith(ctx, i)
        return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())

    results = {}
    for n in PP:
        best = []
        for _ in range(reps):
            L.llama_memory_clear(mem, True)
            t = time.time()
            decode([(tok, p, 0, p == n - 1) for p, tok in enumerate(tokens(n))])
            best.append(time.time() - t)
        results[f"pp{n}"] = n / sorted(best)[len(best) // 2]
    runs = []
    for _ in range(reps):
        L.llama_memory_clear(mem, True)
        tok, t = 2, time.time()
        for p in range(64):
            decode([(tok, p, 0, True)])
            tok = argmax(0)
        runs.append(time.time() - t)
    results["tg64"] = 64 / sorted(runs)[len(runs) // 2]
    for b in BATCH:
        runs = []
        for _ in range(reps):
            L.llama_memory_clear(mem, True)
            items = []
            for s in range(b):
                prompt = tokens(64 + s)[s:]
                items += [(tok, p, s, p == 63) for p, tok in enumerate(prompt)]
            decode(items)
            nxt = [argmax(s * 64 + 63) for s in range(b)]
            t = time.time()
            for step in range(64):
                decode([(nxt[s], 64 + step, s, True) for s in range(b)])
                nxt = [argmax(s) for s in range(b)]
            runs.append(time.time() - t)
        results[f"batched B={b}"] = 64 * b / sorted(runs)[len(runs) // 2]
    rss = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
    results["load_s"], results["peak_rss_mb"] = load, int(rss) / 1024
    print(json.dumps(results))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/autodidact")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--batch", default="1,16", help="batched sizes, comma-separated (e.g. 1,16,32)")
    ap.add_argument("--llama-worker", action="store_true")
    a = ap.parse_args()
    BATCH[:] = [int(b) for b in a.batch.split(",")]
    if a.llama_worker:
        return llama_worker(a.reps, a.threads)
    rounds = []
    for _ in range(a.rounds):
        # Alternate the two sides round by round: this machine is shared, and its slow spells
        # then fall on both rather than on whichever happened to run during them.
        rounds.append((ours_once(a), theirs_once(a)))
    med = lambda v: sorted(v)[len(v) // 2]
    print(f"{time.strftime('%Y-%m-%d')}, {a.threads} threads, median of {a.reps} per round, "
          f"{a.rounds} alternating round(s); ratio = median of the per-round ratios")
    print("| test | autodidact | llama.cpp | ratio |")
    print("|---|---|---|---|")
    for k in [f"pp{n}" for n in PP] + ["tg64"] + [f"batched B={b}" for b in BATCH]:
        o, t = med([r[0][k] for r in rounds]), med([r[1][k] for r in rounds])
        ratio = med([r[0][k] / r[1][k] for r in rounds])
        print(f"| {k} (tokens/s) | {o:.1f} | {t:.1f} | {ratio:.2f}x |")
    for k, name, fmt in [("load_s", "load (s)", ".2f"), ("peak_rss_mb", "peak RSS (MB)", ".0f")]:
        o, t = med([r[0][k] for r in rounds]), med([r[1][k] for r in rounds])
        print(f"| {name} | {o:{fmt}} | {t:{fmt}} | |")


def ours_once(a):
    out = subprocess.run([a.bin, "bench", "-m", MODEL, "--pp", ",".join(map(str, PP)), "--tg", "64",
                          "--batch", ",".join(map(str, BATCH)), "--reps", str(a.reps), "--threads",
                          str(a.threads), "--json"], capture_output=True, text=True, check=True).stdout
    ours = {}
    for line in out.splitlines():
        r = json.loads(line)
        if r["test"] == "load":
            ours["load_s"], ours["peak_rss_mb"] = r["seconds"], r["peak_rss_mb"]
        else:
            ours[r["test"]] = r["tokens_per_s"]
    return ours


def theirs_once(a):
    return json.loads(subprocess.run([sys.executable, __file__, "--llama-worker", "--reps", str(a.reps),
                                      "--threads", str(a.threads), "--batch", a.batch], capture_output=True, text=True,
                                     check=True).stdout.splitlines()[-1])

if __name__ == "__main__":
    sys.exit(main())
