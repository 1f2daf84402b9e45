#!/usr/bin/env python3
"""Drives `autodidact serve` with the official `openai` Python client over loopback: chat, streaming,
logprobs, legacy completions, API key, and error cases. Usage: openai_client_test.py PATH/TO/autodidact"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import openai


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A scratch memory user (and a second one), deleted at the end: tests leave the real one alone.
USER = f"openai-test-{os.getpid()}"
OTHER = USER + "-b"


def start(binary: str, *extra: str):
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--port", str(port), "--user", USER, *extra],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"server exited: {proc.stderr.read().decode()}")
            time.sleep(0.1)
    proc.kill()
    sys.exit("server did not come up")


def main() -> None:
    binary = sys.argv[1]
    proc, base = start(binary)
    try:
        c = openai.OpenAI(base_url=base, api_key="unused")
        models = [m.id for m in c.models.list()]
        # The base, then any adapters the store holds (BASE+NAME).
        assert models[0] == "gemma3-270m", models
        assert all(m.startswith("gemma3-270m+") for m in models[1:]), models

        r = c.chat.completions.create(model="gemma3-270m", temperature=0, max_tokens=16,
                                      messages=[{"role": "user", "content": "Name a colour."}],
                                      logprobs=True, top_logprobs=2)
        text = r.choices[0].message.content
        assert text, r
        assert r.usage.completion_tokens == len(r.choices[0].logprobs.content) > 0, r.usage
        assert all(len(t.top_logprobs) == 2 for t in r.choices[0].logprobs.content)

        stream = c.chat.completions.create(model="gemma3-270m", temperature=0, max_tokens=16,
                                           messages=[{"role": "user", "content": "Name a colour."}],
                                           stream=True, stream_options={"include_usage": True})
        parts, usage = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage:
                usage = chunk.usage
        assert "".join(parts) == text, ("".join(parts), text)
        assert usage and usage.completion_tokens == r.usage.completion_tokens

        schema = {"type": "object", "required": ["city", "population"],
                  "properties": {"city": {"type": "string"}, "population": {"type": "integer"}}}
        for seed in range(3):
            js = c.chat.completions.create(
                model="gemma3-270m", max_tokens=120, temperature=0.7, seed=seed,
                messages=[{"role": "user", "content": "A city as JSON."}],
                response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
            if js.choices[0].finish_reason == "stop":
                v = json.loads(js.choices[0].message.content)
                assert isinstance(v["city"], str) and isinstance(v["population"], int), v

        comp = c.completions.create(model="gemma3-270m", prompt="The sky is", max_tokens=8,
                                    temperature=0.8, seed=3, n=2)
        assert len(comp.choices) == 2

        try:
            c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
            raise AssertionError("unknown model accepted")
        except openai.NotFoundError as e:
            assert "does not exist" in str(e)
        try:
            c.chat.completions.create(model="gemma3-270m", max_tokens=10**6,
                                      messages=[{"role": "user", "content": "hi"}])
            raise AssertionError("oversized max_tokens accepted")
        except openai.BadRequestError as e:
            assert "max_tokens" in str(e)
        # Wrong types are named by field, in the API's words, not the parser's.
        try:
            c.chat.completions.create(model="gemma3-270m", messages=[{"role": "user", "content": 7}])
            raise AssertionError("a number as content accepted")
        except openai.BadRequestError as e:
            assert "messages[0].content" in str(e) and "untagged" not in str(e), str(e)
        for bad in ({"max_tokens": 0}, {"frequency_penalty": 1000}, {"n": 1000}):
            try:
                c.chat.completions.create(model="gemma3-270m", **bad,
                                          messages=[{"role": "user", "content": "hi"}])
                raise AssertionError(f"{bad} accepted")
            except openai.BadRequestError as e:
                assert next(iter(bad)) in str(e) or "n must" in str(e), str(e)
        # Too long for the context: the server can drop the oldest turns when asked to.
        long_chat = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 400}
                     for i in range(12)] + [{"role": "user", "content": "Done?"}]
        try:
            c.chat.completions.create(model="gemma3-270m", max_tokens=8, messages=long_chat)
            raise AssertionError("an over-long chat accepted")
        except openai.BadRequestError as e:
            assert "context" in str(e), str(e)
        raw = c.chat.completions.with_raw_response.create(
            model="gemma3-270m", max_tokens=8, messages=long_chat, extra_body={"truncation": "auto"})
        assert int(raw.headers["x-autodidact-dropped-messages"]) > 0
        assert raw.parse().choices[0].message.content is not None

        # Memory through the official client: `user` picks whose memory; a stated fact is learned
        # after the reply; the next reply lists the memories its prompt held.
        c.chat.completions.create(model="gemma3-270m", max_tokens=4, user=OTHER,
                                  messages=[{"role": "user", "content": "I live in Porto."}])
        t = time.time()
        while True:
            got = json.loads(urllib.request.urlopen(f"{base}/memories?user={OTHER}", timeout=5).read())
            if [m["text"] for m in got["data"]] == ["The user lives in Porto."]:
                break
            assert time.time() - t < 20, got
            time.sleep(0.05)
        r = c.chat.completions.create(model="gemma3-270m", max_tokens=4, user=OTHER,
                                      messages=[{"role": "user", "content": "Where do I live?"}])
        assert [m["text"] for m in r.model_extra["memories"]] == ["The user lives in Porto."], r
        mine = c.chat.completions.create(model="gemma3-270m", max_tokens=4,
                                         messages=[{"role": "user", "content": "Where do I live?"}])
        assert mine.model_extra["memories"] == [], mine
        off = c.chat.completions.create(model="gemma3-270m", max_tokens=4, user=OTHER,
                                        messages=[{"role": "user", "content": "Where do I live?"}],
                                        extra_body={"memory": False})
        assert "memories" not in (off.model_extra or {}), off
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    proc, base = start(binary, "--api-key", "k3y")
    try:
        try:
            openai.OpenAI(base_url=base, api_key="wrong").models.list()
            raise AssertionError("wrong key accepted")
        except openai.AuthenticationError:
            pass
        ok = openai.OpenAI(base_url=base, api_key="k3y")
        assert [m.id for m in ok.models.list()][0] == "gemma3-270m"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    home = os.environ.get("AUTODIDACT_HOME", os.path.expanduser("~/.autodidact"))
    for user in (USER, OTHER):
        for suffix in ("", "-wal", "-shm"):
            path = os.path.join(home, "memory", f"{user}.sqlite3{suffix}")
            if os.path.exists(path):
                os.remove(path)
    print("openai client: all checks passed")


if __name__ == "__main__":
    main()
