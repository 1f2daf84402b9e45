#!/usr/bin/env python3
"""How often a model's sampled answers to training-side arithmetic are right under different
few-shot demonstration forms (README, "worked answers"). Needs a running server:

    autodidact serve --port 8091 --parallel 32 --base &
    python3 scripts/arith_formats.py --url http://127.0.0.1:8091 gemma3-270m gemma3-270m+self-v2

Tasks are drawn with Python's own RNG from the operand ranges (never the held-out sets, which
live in the improve registry); each task gets 4 demonstrations and 4 samples at temperature 0.8.
"""
import argparse
import concurrent.futures as cf
import json
import random
import re
import urllib.request

PHRASINGS = {
    "+": ["What is {a} plus {b}?", "Can you add {a} and {b} for me?",
          "Tell me the sum of {a} and {b}.", "Please compute {a} + {b}."],
    "-": ["What is {a} minus {b}?", "Can you subtract {b} from {a}?",
          "Please compute {a} - {b}.", "How much is {a} minus {b}?"],
}


def value(a, b, op):
    return a + b if op == "+" else a - b


def bare(a, b, op):
    return str(value(a, b, op))


def by_place(a, b, op):
    """The form `improve` now demonstrates: the second operand one place value at a time."""
    t, o = b // 10 * 10, b % 10
    mid = a + t if op == "+" else a - t
    return f"{a} {op} {t} = {mid}. {mid} {op} {o} = {value(a, b, op)}. So {a} {op} {b} = {value(a, b, op)}."


def split(a, b, op):
    if op != "+":
        return None
    tens, ones = a // 10 * 10 + b // 10 * 10, a % 10 + b % 10
    return (f"{a // 10 * 10} + {b // 10 * 10} = {tens}. {a % 10} + {b % 10} = {ones}. "
            f"{tens} + {ones} = {a + b}. So {a} + {b} = {a + b}.")


def draw(rng, op):
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return (b, a) if op == "-" and a < b else (a, b)


def ask(url, model, prompt, seed):
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": 72, "temperature": 0.8,
                       "seed": seed, "stop": ["\n"]}).encode()
    req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["choices"][0]["text"]


def measure(url, model, form, op, n=48, k=4):
    rng = random.Random(1)
    jobs = []
    for _ in range(n):
        a, b = draw(rng, op)
        page = ""
        for _ in range(4):
            x, y = draw(rng, op)
            page += f"Q: {rng.choice(PHRASINGS[op]).format(a=x, b=y)}\nA: {form(x, y, op)}\n\n"
        page += f"Q: {rng.choice(PHRASINGS[op]).format(a=a, b=b)}\nA:"
        jobs += [(page, s * 7919 + 1, value(a, b, op)) for s in range(k)]
    with cf.ThreadPoolExecutor(16) as ex:
        outs = list(ex.map(lambda j: ask(url, model, j[0], j[1]), jobs))
    right = 0
    for (_, _, want), out in zip(jobs, outs):
        nums = re.findall(r"-?\d+", out)
        if nums and int(nums[-1]) == want and re.search(r"\d[.\s]*$", out.strip()):
            right += 1
    print(f"{model}\t{form.__name__}\t{op}\t{right}/{len(jobs)}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8091")
    p.add_argument("models", nargs="+")
    args = p.parse_args()
    for model in args.models:
        for op in "+-":
            for form in (bare, by_place, split):
                if form(12, 3, op) is not None:
                    measure(args.url, model, form, op)


if __name__ == "__main__":
    main()
