#!/usr/bin/env python3
"""An adapter trained and exported by autodidact loads in llama.cpp (llama-cpp-python, built from
source) and gives the same greedy output as autodidact with it.

    cargo build --release -p autodidact -p autodidact-model --example logprobs
    python3 scripts/llamacpp_lora_test.py ./target/release/autodidact

On the quantized default model the two engines already split some *base* continuations at
near-ties, because their int8 kernels round differently (see the README's golden numbers), and an
adapter moves where those near-ties fall. So the check has two parts:

1. Exact base. `autodidact convert --outtype f32` writes the default model dequantized to f32,
   where neither engine rounds its weights or activations to int8. There, with the adapter on
   (`--lora` in llama.cpp, `--adapter` here), every greedy continuation must be identical, and the
   adapter must change most of them.
2. The real quantized model with the adapter. Teacher-forced log-probabilities of both engines are
   compared with the exact answer (llama.cpp on the f32 base with the adapter): autodidact must be
   no further from it than llama.cpp itself is (within 10 %). Greedy agreement is printed.
"""
import json, os, shutil, subprocess, sys, tempfile

import numpy as np

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/autodidact"
LOGPROBS = os.path.join(os.path.dirname(os.path.abspath(BIN)), "examples", "logprobs")
N = 12
PROMPTS = [
    "The capital of France is", "Once upon a time", "The three primary colors are",
    "def add(a, b):", "Water boils at", "My favourite food is", "The sun rises in the",
    "Question: What is 2 + 2?\nAnswer:", "A list of fruits: apple,", "In 1969, humans",
    "The best way to learn is", "Dear John,", "Monday, Tuesday,", "import numpy as",
    "The opposite of hot is", "1, 2, 3,", "Hello, my name is", "The chemical symbol for gold is",
    "Roses are red,", "Item 3:",
]
# Teacher-forced text: each prompt, then text in the adapter's trained format and out of it.
TAIL = " the answer is 3 bananas. And then we went to the market"


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, check=True).stdout


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def greedy_check(Llama, model, lora):
    """Part 1: greedy continuations of both engines on `model` with and without the adapter."""
    def ours(p, adapter):
        extra = ["--adapter", "llamacpp-check"] if adapter else []
        return run("generate", "-m", model, "-p", p, "-n", str(N), *extra).rstrip("\n")

    res = {}
    for adapter in (False, True):
        llm = Llama(model_path=model, lora_path=lora if adapter else None, n_ctx=256, n_threads=2,
                    verbose=False)
        res[adapter] = [(ours(p, adapter),
                         llm.create_completion(p, max_tokens=N, temperature=0.0, top_k=1)
                         ["choices"][0]["text"]) for p in PROMPTS]
        del llm
    return res


def teacher_forced(Llama, model, lora, exact):
    """Part 2: log-probabilities of the exact answer's top 5 at every position of every text."""
    llm = Llama(model_path=exact, lora_path=lora, n_ctx=256, n_threads=2, logits_all=True,
                verbose=False)
    seqs = [llm.tokenize((p + TAIL).encode(), add_bos=True) for p in PROMPTS]

    def rows(llm, ids):
        llm.reset()
        llm.eval(ids)
        return [log_softmax(llm.scores[i]) for i in range(len(ids))]

    ex = [rows(llm, ids) for ids in seqs]
    del llm
    at = [[(i, int(t)) for i in range(len(ids)) for t in np.argsort(-r[i])[:5]]
          for ids, r in zip(seqs, ex)]
    pick = lambda rs: np.concatenate([[r[i][t] for i, t in a] for r, a in zip(rs, at)])
    llm = Llama(model_path=model, lora_path=lora, n_ctx=256, n_threads=2, logits_all=True,
                verbose=False)
    theirs = pick([rows(llm, ids) for ids in seqs])
    del llm
    reqs = "".join(json.dumps({"ids": ids, "at": a}) + "\n" for ids, a in zip(seqs, at))
    out = subprocess.run([LOGPROBS, model, lora], input=reqs, capture_output=True, text=True,
                         check=True).stdout
    ours = np.concatenate([json.loads(l)["lp"] for l in out.splitlines()])
    return pick(ex), ours, theirs


def stats(d):
    d = np.sort(np.abs(d))
    return np.median(d), d[int(0.9 * len(d))]


def main():
    from llama_cpp import Llama

    home = os.environ.get("AUTODIDACT_HOME", os.path.expanduser("~/.autodidact"))
    model = os.path.join(home, "models", "gemma3-270m.gguf")
    tmp = tempfile.mkdtemp()
    data = os.path.join(tmp, "d.jsonl")
    with open(data, "w") as f:
        for i in range(16):
            f.write(json.dumps({"prompt": f"Item {i}:", "completion": f" the answer is {i * 7 % 10} bananas."}) + "\n")
    run("train", "--data", data, "--out", "llamacpp-check", "--force", "--rank", "8", "--lr", "2e-3",
        "--max-steps", "6", "--batch", "4", "--epochs", "2", "--seq-len", "32")
    lora = os.path.join(tmp, "lora.gguf")
    run("adapters", "export", "llamacpp-check", "--format", "gguf", "--out", lora)
    exact = os.path.join(tmp, "f32.gguf")
    run("convert", "--outtype", "f32", "--out", exact)
    failures = []

    res = greedy_check(Llama, exact, lora)
    base_same = sum(o == t for o, t in res[False])
    same = sum(o == t for o, t in res[True])
    changed = sum(a[0] != b[0] for a, b in zip(res[False], res[True]))
    for p, (o, t) in zip(PROMPTS, res[True]):
        print(f"{'ok ' if o == t else 'BAD'} {p!r}: autodidact {o!r} / llama.cpp {t!r}")
    print(f"f32 base: greedy identical on {base_same}/{len(PROMPTS)} without the adapter, "
          f"{same}/{len(PROMPTS)} with it; the adapter changed {changed}")
    if same < len(PROMPTS):
        failures.append("greedy output differs from llama.cpp's with the adapter on the f32 base")
    if changed < len(PROMPTS) / 2:
        failures.append(f"the adapter changed only {changed} continuations")

    ex, ours, theirs = teacher_forced(Llama, model, lora, exact)
    (om, o90), (tm, t90) = stats(ours - ex), stats(theirs - ex)
    print(f"quantized model + adapter, |logprob - exact| over {len(ex)} positions x top-5: "
          f"autodidact median {om:.4f} p90 {o90:.4f}; llama.cpp median {tm:.4f} p90 {t90:.4f}; "
          f"between the two median {stats(ours - theirs)[0]:.4f}")
    if om > 1.1 * tm or o90 > 1.1 * t90:
        failures.append("autodidact with the adapter is further from the exact answer than llama.cpp")

    res = greedy_check(Llama, model, lora)
    print(f"quantized model: greedy identical on {sum(o == t for o, t in res[False])}/{len(PROMPTS)} "
          f"without the adapter, {sum(o == t for o, t in res[True])}/{len(PROMPTS)} with it "
          f"(splits are int8 rounding at near-ties)")
    run("adapters", "rm", "llamacpp-check")
    shutil.rmtree(tmp)
    if failures:
        sys.exit("; ".join(failures))


if __name__ == "__main__":
    main()
