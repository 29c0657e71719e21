"""Headless Chromium (Debian's ``chromium``) for report pages: load a file, collect console errors,
failed requests and uncaught exceptions, evaluate an expression, take a screenshot.

Talks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (JSON messages ending in NUL
on file descriptors 3 and 4), so nothing listens on a port and no extra package is needed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def chromium():
    path = shutil.which("chromium")
    if not path:
        raise AssertionError("Debian's chromium is needed (Makefile APT_PACKAGES; apt-get install chromium)")
    return path


def _high(fd):
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


class Page:
    """One page load: ``errors`` (console errors, exceptions, failed loads), ``value`` of ``expression``."""

    def __init__(self, url, expression="null", screenshot=None, width=1100, height=900, timeout=60):
        self.errors, self.value = [], None
        # Chromium's helper processes may still write into the profile while it is removed.
        with tempfile.TemporaryDirectory(prefix="locus-chromium-", ignore_cleanup_errors=True) as profile:
            to_child_r, to_child_w = os.pipe()
            from_child_r, from_child_w = os.pipe()
            # Above 9 first, so that putting them on 3 and 4 never overwrites one with the other.
            to_child_r, from_child_w = (_high(fd) for fd in (to_child_r, from_child_w))

            def fds():  # chromium reads commands on fd 3 and writes answers on fd 4
                os.dup2(to_child_r, 3)
                os.dup2(from_child_w, 4)

            # close_fds=False: subprocess would close 3 and 4 after preexec_fn.
            proc = subprocess.Popen(
                [chromium(), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", f"--window-size={width},{height}", "about:blank"],
                preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            os.close(to_child_r)
            os.close(from_child_w)
            self._w, self._r, self._buf, self._id, self._deadline = to_child_w, from_child_r, b"", 0, time.monotonic() + timeout
            try:
                self._run(url, expression, screenshot, width)
            finally:
                os.close(self._w)
                os.close(self._r)
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def _send(self, method, params=None, session=None):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        return self._id

    def _next(self):
        while b"\0" not in self._buf:
            if time.monotonic() > self._deadline:
                raise AssertionError("chromium did not answer in time")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise AssertionError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _call(self, method, params=None, session=None):
        want = self._send(method, params, session)
        while True:
            msg = self._next()
            self._event(msg)
            if msg.get("id") == want:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def _event(self, msg):
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            self.errors.append(f"exception: {details.get('text')} {(details.get('exception') or {}).get('description', '')}".strip())
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            self.errors.append(f"log ({p['entry'].get('source')}): {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            self.errors.append(f"request failed: {p.get('errorText')}")
        elif method == "Page.loadEventFired":
            self._loaded = True

    def _run(self, url, expression, screenshot, width):
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self._call(f"{domain}.enable", session=session)
        self._loaded = False
        self._call("Page.navigate", {"url": url}, session=session)
        while not self._loaded:
            self._event(self._next())
        # Events that arrive right after the load event (late console output) are still collected.
        self.value = self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)["result"].get("value")
        if screenshot:
            height = self._call("Runtime.evaluate", {"expression": "document.documentElement.scrollHeight", "returnByValue": True},
                                session=session)["result"]["value"]
            self._call("Emulation.setDeviceMetricsOverride", {"width": width, "height": int(height), "deviceScaleFactor": 1, "mobile": False},
                       session=session)
            shot = self._call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))


# What a report page must show: its chart figures, each with an SVG drawn by pygal.
CHARTS_JS = ("JSON.stringify(Array.from(document.querySelectorAll('figure.chart')).map(f => "
             "[f.dataset.chart, f.querySelectorAll('svg.pygal-chart').length, f.querySelectorAll('svg rect, svg path').length]))")
