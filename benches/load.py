#!/usr/bin/env python3
"""Load benchmark for `autodidact serve`: N concurrent streaming chat clients for D seconds against
loopback. Reports requests/s, aggregate generated tokens/s, p50/p95 time to first token, errors and the
server's peak RSS. Starts the server itself (so it can read its memory) unless --url is given.

    python3 benches/load.py [--binary target/release/autodidact] [--clients 32] [--seconds 60]
    python3 benches/load.py --vs-llamacpp 3      # side by side, see below

With --vs-llamacpp N it runs N rounds, each the load run followed by llama.cpp's batched generation
at the same concurrency (llama-batched-bench's measure: B sequences, 64 prompt + 64 generated
tokens, generated tokens/s over the decode part; `benches/vs_llamacpp.py --llama-worker`), and
reports the median per-round ratio. Alternating keeps this shared machine's slow spells on both
sides. Our figure is the harder one: it includes HTTP, prompt processing and sampling.
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(port, deadline, max_tokens, results, lock, idx):
    n = 0
    while time.time() < deadline:
        n += 1
        body = json.dumps({
            "model": "gemma3-270m", "stream": True, "max_tokens": max_tokens, "temperature": 0.8,
            "seed": idx * 100000 + n, "ignore_eos": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"Tell me a story about robot number {idx}."}],
        })
        t0 = time.time()
        ttft, tokens, ok, err = None, 0, False, "incomplete stream"
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                r.read()
                raise RuntimeError(f"status {r.status}")
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    ok = True
                    break
                j = json.loads(data)
                if j.get("usage"):
                    tokens = j["usage"]["completion_tokens"]
                elif j["choices"] and j["choices"][0]["delta"].get("content") and ttft is None:
                    ttft = time.time() - t0
            c.close()
        except Exception as e:  # noqa: BLE001 - every failure counts as an error
            ok = False
            err = str(e)
        with lock:
            if ok:
                results["done"].append((time.time(), tokens, ttft))
            else:
                results["errors"].append(err)


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/autodidact")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=32)
    ap.add_argument("--url", help="a running server (http://127.0.0.1:PORT); its RSS is not read")
    ap.add_argument("--vs-llamacpp", type=int, default=0, metavar="ROUNDS")
    args = ap.parse_args()
    if args.vs_llamacpp:
        return side_by_side(args)
    print(json.dumps(load_run(args)))


def side_by_side(args):
    here = os.path.dirname(os.path.abspath(__file__))
    rounds = []
    for _ in range(args.vs_llamacpp):
        ours = load_run(args)
        out = subprocess.run([sys.executable, os.path.join(here, "vs_llamacpp.py"), "--llama-worker",
                              "--reps", "3", "--batch", str(args.clients)],
                             capture_output=True, text=True, check=True).stdout
        theirs = json.loads(out.splitlines()[-1])[f"batched B={args.clients}"]
        rounds.append((ours["tokens_per_s"], theirs))
        print(json.dumps({**ours, "llamacpp_batched_tokens_per_s": round(theirs, 1),
                          "ratio": round(ours["tokens_per_s"] / theirs, 2)}), flush=True)
    med = lambda v: sorted(v)[len(v) // 2]
    print(f"{time.strftime('%Y-%m-%d')}: {args.clients} clients, {len(rounds)} alternating rounds: "
          f"autodidact {med([o for o, _ in rounds]):.1f} tokens/s, llama.cpp batched "
          f"{med([t for _, t in rounds]):.1f}, median ratio {med([o / t for o, t in rounds]):.2f}x")


def load_run(args):
    if args.url:
        port, server = int(args.url.rstrip("/").rsplit(":", 1)[1]), None
    else:
        port = free_port()
        server = subprocess.Popen([args.binary, "serve", "--port", str(port), "--parallel",
                                   str(args.parallel), "--queue", str(args.clients * 2), "--ctx", "512"],
                                  stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        results = {"done": [], "errors": []}
        lock = threading.Lock()
        start = time.time()
        deadline = start + args.seconds
        threads = [threading.Thread(target=client, args=(port, deadline, args.max_tokens, results, lock, i))
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - start
        done = results["done"]
        ttfts = sorted(x[2] for x in done if x[2] is not None)
        tokens = sum(x[1] for x in done)
        q = lambda p: ttfts[min(len(ttfts) - 1, int(p * len(ttfts)))] if ttfts else float("nan")
        report = {
            "clients": args.clients, "seconds": round(elapsed, 1), "requests": len(done),
            "requests_per_s": round(len(done) / elapsed, 2),
            "tokens_per_s": round(tokens / elapsed, 1),
            "ttft_p50_s": round(q(0.5), 3), "ttft_p95_s": round(q(0.95), 3),
            "errors": len(results["errors"]),
            "peak_rss_mb": round(peak_rss_mb(server.pid), 1) if server else None,
        }
        return report
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
