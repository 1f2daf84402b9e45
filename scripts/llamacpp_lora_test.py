#!/usr/bin/env python3
"""An adapter trained and exported by autodidact loads in llama.cpp (llama-cpp-python, built from
source) and gives the same greedy output as autodidact with it.

    python3 scripts/llamacpp_lora_test.py ./target/release/autodidact

llama.cpp and autodidact already differ on some base-model continuations (see the README's golden
numbers), so the check runs on the prompts where the two agree without the adapter: with it, at
least 80 % of them must agree too, and the adapter must change at least half of them.
"""
import json, os, subprocess, sys, tempfile

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/autodidact"
N = 12
PROMPTS = [
    "The capital of France is", "Once upon a time", "The three primary colors are",
    "def add(a, b):", "Water boils at", "My favourite food is", "The sun rises in the",
    "Question: What is 2 + 2?\nAnswer:", "A list of fruits: apple,", "In 1969, humans",
    "The best way to learn is", "Dear John,", "Monday, Tuesday,", "import numpy as",
    "The opposite of hot is", "1, 2, 3,", "Hello, my name is", "The chemical symbol for gold is",
    "Roses are red,", "Item 3:",
]


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, check=True).stdout


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

    base = Llama(model_path=model, n_ctx=256, n_threads=2, verbose=False)
    adapted = Llama(model_path=model, lora_path=lora, n_ctx=256, n_threads=2, verbose=False)

    def ours(p, adapter=None):
        args = ["generate", "-p", p, "-n", str(N)] + (["--adapter", "llamacpp-check"] if adapter else [])
        return run(*args).rstrip("\n")

    def theirs(llm, p):
        return llm.create_completion(p, max_tokens=N, temperature=0.0, top_k=1)["choices"][0]["text"]

    agree, same_with, changed = 0, 0, 0
    for p in PROMPTS:
        ob, tb = ours(p), theirs(base, p)
        if ob != tb:
            print(f"skip (base differs): {p!r}: {ob!r} vs {tb!r}")
            continue
        agree += 1
        oa, ta = ours(p, True), theirs(adapted, p)
        same_with += oa == ta
        changed += oa != ob
        print(f"{'ok ' if oa == ta else 'BAD'} {p!r}: autodidact {oa!r} / llama.cpp {ta!r}")
    print(f"{agree} prompts agree without the adapter; {same_with} of them agree with it; "
          f"the adapter changed {changed}")
    run("adapters", "rm", "llamacpp-check")
    # The same rounding noise that splits some base continuations can split an adapted one at a
    # near-tie (seen once: EOS against " the" after "import numpy as np."), so the bar is 80 %.
    if agree < 5 or same_with < 0.8 * agree or changed < agree / 2:
        sys.exit("llama.cpp and autodidact disagree with the adapter")


if __name__ == "__main__":
    main()
