#!/usr/bin/env python3
"""A small real SFT run on the default model: teach a fixed answer format, measure held-out accuracy.

Task: "Record: name=Alice city=Oslo age=31" -> '{"name": "Alice", "city": "Oslo", "age": 31}'.
Names, cities and ages of the held-out set never appear in training. Accuracy is exact match of
the greedy completion (first line) before and after training.

    python3 benches/sft_demo.py [--bin target/release/autodidact] [--train 300] [--test 40]
"""
import argparse, json, os, random, subprocess, sys, tempfile, time

NAMES = """Alice Bruno Chiara Dmitri Elena Farid Greta Hiro Ines Jonas Kavya Liam Mei Nadia Omar Priya
Quentin Rosa Sven Tomas Uma Viktor Wanda Xavier Yusuf Zoe Amara Boris Celia Diego Emil Freya Goran
Hana Ivan Jana Kofi Lena Mateo Nora Oskar Paula Rami Sara Teo Ulla Vera Wim Yara Zeno""".split()
CITIES = """Oslo Lima Cairo Quito Riga Turin Perth Dakar Hanoi Porto Basel Lyon Graz Malmo Accra Bergen
Cork Delft Fez Gent Hue Izmir Jena Kobe Leeds Minsk Nice Omsk Pisa Split Tartu Ulm Vigo Worms York
Zug Aarhus Bonn Cadiz Dijon Essen Faro Gdansk Haifa""".split()


def record(name, city, age):
    prompt = f"Record: name={name} city={city} age={age}\nJSON:"
    answer = " " + json.dumps({"name": name, "city": city, "age": age})
    return prompt, answer


def split_vocab(words, frac, rng):
    w = words[:]
    rng.shuffle(w)
    k = int(len(w) * frac)
    return w[k:], w[:k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/autodidact")
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--test", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", default="1e-3")
    ap.add_argument("--name", default="json-demo")
    a = ap.parse_args()
    rng = random.Random(7)
    names_tr, names_te = split_vocab(NAMES, 0.25, rng)
    cities_tr, cities_te = split_vocab(CITIES, 0.25, rng)
    train = [record(rng.choice(names_tr), rng.choice(cities_tr), rng.randint(18, 60)) for _ in range(a.train)]
    test = [record(rng.choice(names_te), rng.choice(cities_te), rng.randint(61, 95)) for _ in range(a.test)]
    tmp = tempfile.mkdtemp()
    data = os.path.join(tmp, "train.jsonl")
    with open(data, "w") as f:
        for p, c in train:
            f.write(json.dumps({"prompt": p, "completion": c}) + "\n")

    def accuracy(adapter):
        ok = 0
        for p, want in test:
            cmd = [a.bin, "generate", "-p", p, "-n", "32", "--stop", "\n"]
            if adapter:
                cmd += ["--adapter", adapter]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            ok += out.split("\n")[0].rstrip() == want
        return ok / len(test)

    before = accuracy(None)
    print(f"held-out exact match before training: {before:.2%}", flush=True)
    t0 = time.time()
    subprocess.run([a.bin, "train", "--data", data, "--out", a.name, "--force", "--rank", "16",
                    "--epochs", str(a.epochs), "--batch", "8", "--lr", a.lr, "--warmup", "5",
                    "--seq-len", "64"], check=True)
    print(f"training took {time.time() - t0:.0f} s", flush=True)
    after = accuracy(a.name)
    print(f"held-out exact match after training:  {after:.2%}")


if __name__ == "__main__":
    sys.exit(main())
