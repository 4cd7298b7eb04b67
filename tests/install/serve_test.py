#!/usr/bin/env python3
"""qforge serve over a real socket.

  serve_test.py http    QFORGE   bad input over HTTP (malformed JSON, a 10 MB body, an unknown
                                 model, a path outside --models-dir, a negative context) gets a
                                 4xx with a one-line JSON reason, and the server keeps serving.
  serve_test.py browser QFORGE   Chromium (Debian chromium + chromium-driver + python3-selenium)
                                 opens the page, picks Llama-3.1-8B-Instruct, 8k context and an
                                 RTX 4090, and the page's verdict and sizes must equal
                                 `qforge plan ... --json`; any JavaScript console error fails.
                                 Exits 77 (skipped) with a message when those are not installed.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

MODE, QFORGE = sys.argv[1], os.path.abspath(sys.argv[2])
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def start_server(extra=()):
    proc = subprocess.Popen([QFORGE, "serve", "--port", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = proc.stdout.readline().strip()
    second = proc.stdout.readline().strip()
    if not first.startswith("qforge serve: http://127.0.0.1:"):
        proc.kill()
        fail("unexpected first line: " + first)
    if "this machine only" not in second:
        proc.kill()
        fail("the server does not say it binds 127.0.0.1 only: " + second)
    return proc, first.split(": ", 1)[1]


def request(url, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def cli_plan(*args):
    out = subprocess.run([QFORGE, "plan", *args, "--json"], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        fail("qforge plan failed: " + out.stdout + out.stderr)
    return json.loads(out.stdout)


def http_checks():
    models = tempfile.mkdtemp()
    proc, url = start_server(["--models-dir", models])
    try:
        cases = [
            ("malformed JSON", dict(raw=b'{"model": '), 400, "not valid JSON"),
            ("10 MB body", dict(raw=b" " * (10 << 20)), 413, "more than"),
            ("unknown model", dict(body={"model": "No-Such-Model-9B"}), 404, "not in the catalogue"),
            ("path outside", dict(body={"path": "/etc"}), 403, "outside"),
            ("negative context", dict(body={"model": MODEL, "ctx": -8192}), 400, "ctx"),
        ]
        for name, kw, status, words in cases:
            code, text = request(url + "api/plan", **kw)
            try:
                err = json.loads(text)["error"]
            except (ValueError, KeyError):
                fail(f"{name}: not a JSON error: {text[:200]!r}")
            if code != status or words not in err or "\n" in err:
                fail(f"{name}: got {code} {err!r}, expected {status} with '{words}'")
            print(f"ok: {name} -> {code} {err}")
            code, _ = request(url + "api/models")
            if code != 200:
                fail(f"the server stopped serving after: {name}")
        code, text = request(url + "api/plan", {"model": MODEL, "ctx": 8192, "gpu": "4090"})
        if code != 200 or json.loads(text) != cli_plan(MODEL, "--gpu", "4090", "-c", "8192"):
            fail("POST /api/plan differs from qforge plan --json")
        print("ok: /api/plan equals qforge plan --json")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def browser_checks():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import Select, WebDriverWait
    except ImportError:
        print("SKIP: python3-selenium is not installed (scripts/setup.sh installs it)")
        sys.exit(77)
    driver_path = "/usr/bin/chromedriver"
    if not os.path.exists(driver_path) or not os.path.exists("/usr/bin/chromium"):
        print("SKIP: chromium / chromium-driver are not installed (scripts/setup.sh installs them)")
        sys.exit(77)
    proc, url = start_server()
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--user-data-dir=" + tempfile.mkdtemp()):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element("tag name", "body").get_attribute("data-state") in ("ready", "error"))
        Select(driver.find_element("id", "model")).select_by_value(MODEL)
        # 8k context on the log-scale slider: 4 steps per doubling, 8192 = 2^13 -> 52
        driver.execute_script("const s = document.getElementById('ctx'); s.value = 52; s.dispatchEvent(new Event('input'));")
        gpu = driver.find_element("id", "gpu")
        gpu.clear()
        gpu.send_keys("RTX-4090")
        driver.execute_script("document.getElementById('gpu').dispatchEvent(new Event('change'));")
        wait.until(lambda d: "gpu=RTX-4090" in d.current_url and "ctx=8192" in d.current_url
                   and d.find_element("tag name", "body").get_attribute("data-state") == "ready")
        if driver.find_element("id", "ctx-out").text != "8,192":
            fail("the slider shows " + driver.find_element("id", "ctx-out").text)

        def page_rows():  # one snapshot in the page (a redraw in between cannot mix two tables)
            return driver.execute_script(
                "return [...document.querySelectorAll('#plan-table tbody tr')].map((r) => ({'type': r.dataset.type, "
                "'file-bytes': r.dataset.fileBytes, 'verdict': r.dataset.verdict, 'gpu-total': r.dataset.gpuTotal, "
                "'max-context': r.dataset.maxContext}));")

        cli = cli_plan(MODEL, "--gpu", "4090", "-c", "8192")
        want = [{"type": p["type"], "file-bytes": str(p["file_bytes"]), "verdict": p["verdict"], "gpu-total": str(p["gpu"]["total"]),
                 "max-context": str(p["max_context"])} for p in cli["plans"]]
        got = page_rows()
        if got != want:
            fail(f"page rows differ from qforge plan --json:\n page {got}\n cli  {want}")
        verdict = driver.find_element("id", "verdict")
        if verdict.get_attribute("data-recommended") != cli["recommended"] or not verdict.text.startswith("Yes: " + cli["recommended"]):
            fail(f"verdict '{verdict.text}' but qforge plan recommends {cli['recommended']}")
        if "NVIDIA GeForce RTX 4090" not in verdict.text:
            fail("the verdict does not name the RTX 4090: " + verdict.text)
        print(f"ok: {len(got)} rows equal qforge plan --json; verdict: {verdict.text}")

        # The URL holds the state: opening it again gives the same table.
        link = driver.current_url
        driver.get("about:blank")
        driver.get(link)
        wait.until(lambda d: d.find_element("tag name", "body").get_attribute("data-state") == "ready")
        if page_rows() != want:
            fail("reopening " + link + " does not restore the same plan")
        print("ok: " + link + " restores the page")

        # The other two views draw from the same API.
        driver.find_element("css selector", "button[data-view=choose]").click()
        wait.until(lambda d: len(d.find_elements("css selector", "#rank-table tbody tr")) > 50
                   and d.find_element("tag name", "body").get_attribute("data-state") == "ready")
        if driver.execute_script("return document.querySelector('#rank-table tbody tr').dataset.verdict;") != "fits":
            fail("Choose my GPU: the first device does not fit")
        cmp = driver.find_elements("css selector", ".cmp")
        driver.find_element("css selector", "button[data-view=compare]").click()
        for el, name in zip(cmp, ("RTX-4060", "RTX-4090")):
            el.send_keys(name)
        driver.execute_script("document.querySelector('.cmp').dispatchEvent(new Event('change'));")
        wait.until(lambda d: len(d.find_elements("css selector", "#compare-table tbody tr")) > 0
                   and d.find_element("tag name", "body").get_attribute("data-state") == "ready")
        text = driver.execute_script("return document.getElementById('compare-table').innerText;")
        if "NVIDIA GeForce RTX 4060" not in text or "NVIDIA GeForce RTX 4090" not in text:
            fail("Compare hardware does not show both devices: " + text[:300])
        print("ok: Choose my GPU and Compare hardware drawn")

        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            fail("JavaScript console errors: " + "; ".join(e["message"] for e in errors))
        print("ok: no console errors")
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=10)


if MODE == "http":
    http_checks()
elif MODE == "browser":
    browser_checks()
else:
    fail("mode must be http or browser")
print("serve " + MODE + ": ok")
