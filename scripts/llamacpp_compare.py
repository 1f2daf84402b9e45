#!/usr/bin/env python3
"""How far autodidact and today's llama.cpp each sit from the reference logprobs (`reference/`).

    cargo build --release -p autodidact-model --example logprobs
    python3 scripts/llamacpp_compare.py [MODEL.gguf]

Every reference continuation is fed teacher-forced (prompt + the reference's 32 ids), so all 320
positions are comparable. At each one we take the log-probabilities of the reference's top-5 ids
and whether the argmax equals the reference's next id. Implementations compared: autodidact,
llama.cpp through llama-cpp-python with its default repacked CPU kernels, and the same llama.cpp
without repacking (plain ggml vec_dot kernels). The reference came from another llama.cpp commit.
"""
import json, os, subprocess, sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "..", "reference", "gemma3-270m", "greedy.jsonl")
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("AUTODIDACT_HOME", os.path.expanduser("~/.autodidact")), "models", "gemma3-270m.gguf")
EXAMPLE = os.path.join(HERE, "..", "target", "release", "examples", "logprobs")


def cases():
    out = []
    for line in open(REF):
        r = json.loads(line)
        ids = r["prompt_ids"] + r["ids"]
        p = len(r["prompt_ids"])
        at = [(p - 1 + i, e["id"]) for i in range(32) for e in r["top_logprobs"][i]]
        ref = [e["logprob"] for i in range(32) for e in r["top_logprobs"][i]]
        out.append({"ids": ids, "at": at, "ref": ref, "next": r["ids"], "p": p})
    return out


def ours(cs):
    reqs = "".join(json.dumps({"ids": c["ids"], "at": c["at"]}) + "\n" for c in cs)
    res = subprocess.run([EXAMPLE, MODEL], input=reqs, capture_output=True, text=True, check=True)
    lines = [json.loads(l) for l in res.stdout.splitlines()]
    return [(np.array(l["lp"]), [l["argmax"][c["p"] - 1 + i] for i in range(32)]) for l, c in zip(lines, cs)]


def llama_cpp(cs, repack):
    import llama_cpp
    import llama_cpp.llama as L

    orig = llama_cpp.llama_model_default_params

    def params():
        p = orig()
        p.use_extra_bufts = repack
        return p

    L.llama_cpp.llama_model_default_params = params
    llm = llama_cpp.Llama(model_path=MODEL, n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    L.llama_cpp.llama_model_default_params = orig
    out = []
    for c in cs:
        llm.reset()
        llm.eval(c["ids"])
        rows = {}
        for pos, _ in c["at"]:
            if pos not in rows:
                lg = np.array(llm.scores[pos], dtype=np.float64)
                rows[pos] = lg - (np.log(np.exp(lg - lg.max()).sum()) + lg.max())
        out.append((np.array([rows[p][i] for p, i in c["at"]]),
                    [int(rows[c["p"] - 1 + i].argmax()) for i in range(32)]))
    return out


def summary(name, d, top1):
    d = np.sort(np.abs(np.concatenate(d)))
    print(f"| {name} | {np.median(d):.4f} | {d[int(len(d) * 0.9)]:.4f} | {d[-1]:.4f} | {top1} |")


def main():
    cs = cases()
    runs = {"autodidact": ours(cs), "llama.cpp (repacked)": llama_cpp(cs, True),
            "llama.cpp (no repack)": llama_cpp(cs, False)}
    print("| compared with the reference | median |logprob diff| | p90 | max | same next id (of 320) |")
    print("|---|---|---|---|---|")
    for name, res in runs.items():
        summary(name, [lp - np.array(c["ref"]) for (lp, _), c in zip(res, cs)],
                sum(a == b for (_, am), c in zip(res, cs) for a, b in zip(am, c["next"])))
    names = list(runs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            summary(f"{a} vs {b}", [x[0] - y[0] for x, y in zip(runs[a], runs[b])],
                    sum(p == q for x, y in zip(runs[a], runs[b]) for p, q in zip(x[1], y[1])))


if __name__ == "__main__":
    main()
