#!/usr/bin/env python3
"""Drives the web UI of `autodidact serve` in a real headless Chromium through WebDriver (Debian's
`chromium` + `chromium-driver`, spoken to over HTTP; no extra client library): load the page, send a
message and watch the reply stream in, max tokens capped by the server's context, a failed turn kept
out of the conversation, a conversation longer than the context trimmed (and said so), stop a reply
mid-stream (the server must cancel it), the memory panel (add, a reply that says which memories it
used, a fact learned from chat, search, edit, forget), switch to glance mode; then the improvement
page over a scratch store whose registry holds two promoted versions (lineage, a run's rounds and
plots, roll back, make a version current). Screenshots go to target/ui-artifacts/. The chat server
runs as a scratch memory user whose database is deleted at the end. Usage: ui_test.py PATH/TO/autodidact"""
import base64
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "target", "ui-artifacts")
CTX = 512
LAST = "const a = document.querySelectorAll('.msg.assistant'); const x = a[a.length-1];"
# Every request body the page sends, for checking what the model is shown.
RECORD = """if (!window.sent) { window.sent = []; const f = window.fetch;
  window.fetch = (u, o) => { if (o && o.body) window.sent.push(JSON.parse(o.body)); return f(u, o); }; }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, what: str) -> None:
    for _ in range(600):
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"{what} exited early")
            time.sleep(0.1)
    sys.exit(f"{what} did not come up")


class Driver:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1000,800"]}}}}
        self.sid = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["value"]

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.sid}{path}", body)

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        el = self.s("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(el.values()))

    def click(self, css):
        # A list the page redraws between find and click leaves a stale element (404): find again.
        for attempt in range(5):
            try:
                self.s("POST", f"/element/{self.find(css)}/click", {})
                return
            except urllib.error.HTTPError as e:
                if e.code != 404 or attempt == 4 or b"stale element" not in e.read():
                    raise
                time.sleep(0.1)

    def type(self, css, text):
        self.s("POST", f"/element/{self.find(css)}/value", {"text": text})

    def wait(self, script, what, timeout=90):
        t = time.time()
        while time.time() - t < timeout:
            v = self.js(script)
            if v:
                return v
            time.sleep(0.05)
        page = self.js("return document.body.innerText")
        raise AssertionError(f"timed out waiting for {what}; the page says:\n{page}")

    def screenshot(self, name):
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.s("GET", "/screenshot")))
        assert os.path.getsize(path) > 1000, "empty screenshot"
        return path

    def quit(self):
        try:
            self.s("DELETE", "")
        except OSError:
            pass


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def improvement_fixture(binary: str, home: str) -> None:
    """A registry as `improve` leaves it after two promoted rounds: the binary creates the schema
    (`runs list`), the rows are written here so that the page has lineage to show and roll back."""
    env = dict(os.environ, AUTODIDACT_HOME=home)
    subprocess.run([binary, "runs", "list"], env=env, check=True, stdout=subprocess.DEVNULL)
    db = sqlite3.connect(os.path.join(home, "improve", "registry.sqlite"))
    now = int(time.time())
    with db:
        db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?)",
                   ("run-ui", now, "gemma3-270m", json.dumps(["arithmetic"]),
                    json.dumps({"eval_n": 20, "guard_n": 10}), "done", "two rounds, both promoted"))
        for idx, (verified, share, acc) in enumerate([(120, 0.1, 3), (300, 0.25, 9)]):
            stats = {"samples": 1200, "verified": verified, "verified_share": share,
                     "degenerate_share": 0.2, "train_examples": verified // 2, "promoted": True,
                     "reasons": [f"arithmetic improved (round {idx + 1})"], "ppl_base": 14.9,
                     "ppl_candidate": 15.1, "train_losses": [1.2, 0.8, 0.5],
                     "levels": [{"sub": "add-1", "level": 0, "plain_n": 100, "plain_pass": 10 * idx,
                                 "scaffold_n": 300, "scaffold_pass": 40 + 20 * idx}]}
            db.execute("INSERT INTO rounds VALUES (?,?,?,?,?,?,?,?,?)",
                       ("run-ui", idx, "done", "[]", idx + 1, json.dumps({"train_s": 60.0}),
                        json.dumps(stats), now, now))
            db.execute("INSERT INTO adapters VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (idx + 1, f"self-v{idx + 1}", "run-ui", idx, idx or None, "gemma3-270m",
                        "h", verified // 2, 1, "{}", "promoted", f"round {idx + 1} gained", now))
            db.execute("INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?)",
                       (f"adapter:{idx + 1}", "arithmetic", "add-1", "arithmetic:v1:n20", 20, acc,
                        20, 0))
        db.execute("INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?)",
                   ("base:gemma3-270m", "arithmetic", "add-1", "arithmetic:v1:n20", 20, 0, 0, 20))
        db.execute("INSERT OR REPLACE INTO current VALUES (1, 2, ?)", (now,))
    db.close()


def improvement_page(binary: str, dport: int, model: str) -> None:
    """The improvement page: current self and lineage, a run's rounds and plots, roll back."""
    home = tempfile.mkdtemp(prefix="ad-ui-improve-")
    port = free_port()
    server = None
    d = None
    try:
        improvement_fixture(binary, home)
        server = subprocess.Popen([binary, "serve", "-m", model, "--port", str(port), "--no-memory"],
                                  env=dict(os.environ, AUTODIDACT_HOME=home),
                                  stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{port}/health", server, "server (improvement)")
        d = Driver(dport)
        d.s("POST", "/url", {"url": f"http://127.0.0.1:{port}/"})
        d.click("#improveLink")
        d.wait("return document.querySelectorAll('#versions tr').length === 2", "the versions")
        cur = d.js("return document.querySelector('#current').textContent")
        assert cur.startswith("v2 (adapter self-v2") and "chat answers as this version" in cur, cur
        rows = d.js("return [...document.querySelectorAll('#versions tr')].map(r => r.textContent)")
        assert "(current)" in rows[1] and "v1" in rows[1] and "promoted" in rows[0], rows
        d.click("#runs button")
        d.wait("return document.querySelectorAll('#rounds tr').length === 2", "the run's rounds")
        rounds = d.js("return [...document.querySelectorAll('#rounds tr')].map(r => r.textContent)")
        assert "300 of 1200" in rounds[1] and "promoted" in rounds[1], rounds
        assert "15.0 % → 45.0 %" in rounds[1], rounds
        d.wait("return document.querySelectorAll('#plots img').length === 4 && "
               "[...document.querySelectorAll('#plots img')].every(i => i.complete && i.naturalWidth > 0)",
               "the four plots")
        d.screenshot("improve.png")
        d.click("#rollbackPrev")
        d.wait("return document.querySelector('#current').textContent.startsWith('v1 ')",
               "the rollback to v1")
        api = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/improve", timeout=5).read())
        assert api["current"] == 1, api
        statuses = {v["version"]: v["status"] for v in api["versions"]}
        assert statuses == {1: "promoted", 2: "rolled_back"}, statuses
        # The rolled-back version can be made current again from its row.
        d.click("#versions tr:nth-child(2) button")
        d.wait("return document.querySelector('#current').textContent.startsWith('v2 ')",
               "v2 current again")
        d.screenshot("improve-rolled.png")
    finally:
        if d:
            d.quit()
        if server:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    binary = sys.argv[1]
    sport, dport = free_port(), free_port()
    # A small context, so that a few messages outgrow it.
    user = f"ui-test-{os.getpid()}"
    server = subprocess.Popen([binary, "serve", "--port", str(sport), "--ctx", str(CTX),
                               "--user", user],
                              stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver_proc = subprocess.Popen(["chromedriver", f"--port={dport}"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    d = None
    try:
        wait_http(f"http://127.0.0.1:{sport}/health", server, "server")
        wait_http(f"http://127.0.0.1:{dport}/status", driver_proc, "chromedriver")
        d = Driver(dport)
        d.s("POST", "/url", {"url": f"http://127.0.0.1:{sport}/"})
        d.wait("return document.querySelector('#model option') && document.querySelector('#model').value",
               "the model list")
        assert d.js("return document.querySelector('#model').value") == "gemma3-270m"

        # Send a message; the reply streams into the last assistant bubble.
        d.js("document.querySelector('#maxTokens').value = '24'")
        d.type("#input", "Hello! What is your name?")
        d.click("#send")
        d.wait("return document.querySelector('.msg.user') && document.querySelector('.msg.assistant')",
               "the message bubbles")
        d.wait("const a = document.querySelectorAll('.msg.assistant'); return a[a.length-1].dataset.state === 'done'",
               "the reply to finish")
        reply = d.js("const a = document.querySelectorAll('.msg.assistant'); return a[a.length-1].textContent")
        assert reply.strip(), "empty reply"
        d.screenshot("chat.png")
        d.js(RECORD)

        # Max tokens is capped by the server's context: a value past it is lowered, not sent.
        assert int(d.js("return document.querySelector('#maxTokens').max")) == CTX // 2
        d.js("const m = document.querySelector('#maxTokens'); m.value = '4096';"
             "m.dispatchEvent(new Event('change'))")
        assert d.js("return document.querySelector('#maxTokens').value") == str(CTX // 2)
        d.js("document.querySelector('#maxTokens').value = '4096'")
        d.type("#input", "Say hi.")
        d.click("#send")
        d.wait(LAST + "return x.dataset.state === 'done'", "a reply with max tokens capped")
        assert d.js("return window.sent[window.sent.length-1].max_tokens") == CTX // 2
        assert not d.js("return document.querySelector('.error')"), "a capped request failed"

        # A failed turn (an unknown model) adds no empty assistant message to the conversation.
        d.js("const o = document.createElement('option'); o.value = 'no-such-model';"
             "document.querySelector('#model').appendChild(o); document.querySelector('#model').value = 'no-such-model'")
        d.type("#input", "This one fails.")
        d.click("#send")
        d.wait("return document.querySelector('.error')", "the error")
        d.wait("return !document.querySelector('#send').disabled", "Send to come back")
        assert d.js("return document.querySelector('#input').value") == "This one fails.", "text not kept"
        d.js("document.querySelector('#model').value = 'gemma3-270m'; document.querySelector('#input').value = ''")
        d.type("#input", "And this one works.")
        d.click("#send")
        d.wait("return window.sent.length >= 3 && !document.querySelector('#send').disabled", "the next turn")
        msgs = d.js("return window.sent[window.sent.length-1].messages")
        assert all(m["content"] for m in msgs), f"an empty message was sent: {msgs}"
        assert "This one fails." not in [m["content"] for m in msgs], msgs
        roles = [m["role"] for m in msgs]
        assert all(a != b for a, b in zip(roles, roles[1:])), f"roles do not alternate: {roles}"
        assert d.js(LAST + "return x.dataset.state") == "done"

        # A conversation longer than the context: the oldest turns are left out, and the page says so.
        d.js("document.querySelector('#maxTokens').value = '32'")
        failed_before = d.js("return document.querySelectorAll('.msg.failed').length")
        for i in range(4):
            before = d.js("return window.sent.length")
            d.js("document.querySelector('#input').value = arguments[0]",
                 f"Note {i}: " + " ".join(f"item{i}-{k}" for k in range(60)))
            d.click("#send")
            d.wait(f"return window.sent.length > {before} && !document.querySelector('#send').disabled",
                   "a long turn")
            assert d.js(LAST + "return x.dataset.state") == "done", d.js("return document.body.innerText")
            assert d.js("return document.querySelectorAll('.msg.failed').length") == failed_before, \
                d.js("return document.body.innerText")
        assert d.js("return document.querySelectorAll('.msg.dropped').length") > 0, "nothing trimmed"
        note = d.js("return [...document.querySelectorAll('.notice')].map(n => n.textContent).join(' | ')")
        assert "left out" in note and str(CTX) in note, note
        d.screenshot("trimmed.png")

        # Memory: the panel adds, shows, searches, corrects and forgets; a reply says which
        # memories its prompt held; a fact said in chat is learned after the reply.
        d.click("#clear")
        d.click("#memToggle")
        d.wait("return document.querySelector('#memList').dataset.loaded", "the memory list")
        d.type("#memAdd", "The user is allergic to peanuts.")
        d.click("#memAddBtn")
        mem_texts = "return [...document.querySelectorAll('#memList .mem .text')].map(e => e.textContent)"
        d.wait(mem_texts.replace("return ", "return ") + ".includes('The user is allergic to peanuts.')",
               "the added memory in the list")
        d.js("document.querySelector('#maxTokens').value = '8'")
        before = d.js("return window.sent.length")
        d.type("#input", "Can I eat peanuts?")
        d.click("#send")
        d.wait(f"return window.sent.length > {before} && !document.querySelector('#send').disabled",
               "the memory-using reply")
        used = d.wait("const u = document.querySelectorAll('.used'); return u.length && u[u.length-1].textContent",
                      "the used-memories line")
        assert "allergic to peanuts" in used, used
        assert d.js("return window.sent[window.sent.length-1].memory") is True
        d.type("#input", "My name is Ada.")
        d.click("#send")
        d.wait(mem_texts + ".includes(\"The user's name is Ada.\")", "the learned memory in the panel")
        d.screenshot("memory.png")
        d.type("#memSearch", "Ada")
        d.wait(mem_texts + ".join('|') === \"The user's name is Ada.\"", "the search result")
        d.click("#memList .mem .edit")
        d.js("document.querySelector('#memList .editText').value = \"The user's name is Ada Lovelace.\"")
        d.click("#memList .save")
        d.wait(mem_texts + ".includes(\"The user's name is Ada Lovelace.\")", "the corrected memory")
        d.js("const s = document.querySelector('#memSearch'); s.value = ''; s.dispatchEvent(new Event('input'))")
        d.wait(mem_texts + ".length === 2", "the whole list again")
        peanut = "[...document.querySelectorAll('#memList .mem')].find(li => li.textContent.includes('peanuts'))"
        d.js(f"{peanut}.querySelector('.forget').click()")
        d.js(f"{peanut}.querySelector('.forget').click()")
        d.wait(mem_texts + ".length === 1", "the forgotten memory to go")
        api = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sport}/v1/memories", timeout=5).read())
        assert [m["text"] for m in api["data"]] == ["The user's name is Ada Lovelace."], api
        d.click("#memToggle")

        # Stop a long reply mid-stream. The page's requests get `ignore_eos` so the reply is surely
        # still running when Stop is pressed.
        d.js("""const f = window.fetch; window.fetch = (u, o) => {
                  if (o && o.body) { const b = JSON.parse(o.body); b.ignore_eos = true; o.body = JSON.stringify(b); }
                  return f(u, o); };""")
        d.js("document.querySelector('#maxTokens').value = '250'")
        d.type("#input", "Tell me a very long story.")
        d.click("#send")
        d.wait("const a = document.querySelectorAll('.msg.assistant'); const x = a[a.length-1];"
               "return x.dataset.state === 'streaming' && x.textContent.length > 10", "streamed text")
        d.click("#stop")
        d.wait("const a = document.querySelectorAll('.msg.assistant'); return a[a.length-1].dataset.state === 'stopped'",
               "the reply to stop")
        t = time.time()
        while metric(sport, "autodidact_active_sequences") != 0:
            assert time.time() - t < 30, "the server kept generating after Stop"
            time.sleep(0.05)
        assert not d.js("return document.querySelector('#send').disabled"), "Send stays disabled"

        # Glance mode: header hidden, only the latest answer shown, high contrast.
        d.click("#glance")
        assert d.js("return getComputedStyle(document.querySelector('header')).display") == "none"
        assert d.js("return getComputedStyle(document.body).backgroundColor") == "rgb(0, 0, 0)"
        visible = d.js("return [...document.querySelectorAll('.msg')].filter(e => getComputedStyle(e).display !== 'none').length")
        assert visible == 1, f"{visible} messages visible in glance mode"
        path = d.screenshot("glance.png")
        d.quit()
        d = None
        home = os.environ.get("AUTODIDACT_HOME", os.path.expanduser("~/.autodidact"))
        improvement_page(binary, dport, os.path.join(home, "models", "gemma3-270m.gguf"))
        print(f"ui: all checks passed (screenshots in {os.path.dirname(os.path.abspath(path))})")
    finally:
        if d:
            d.quit()
        driver_proc.terminate()
        server.terminate()
        server.wait(timeout=30)
        home = os.environ.get("AUTODIDACT_HOME", os.path.expanduser("~/.autodidact"))
        for suffix in ("", "-wal", "-shm"):
            path = os.path.join(home, "memory", f"{user}.sqlite3{suffix}")
            if os.path.exists(path):
                os.remove(path)


if __name__ == "__main__":
    main()
