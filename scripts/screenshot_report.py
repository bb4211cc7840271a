#!/usr/bin/env python3
"""Open a conformance report in headless Chromium and save a screenshot of it.

    python scripts/screenshot_report.py results/report.html -o report.png \\
        [--select fw=torch] [--sections overview,accuracy,discrepancies] [--open-first] \
        [--viewport]

The page is loaded from disk in a fresh profile with networking features off; the script
drives it over the DevTools protocol on a pipe (``--remote-debugging-pipe``; Python stdlib
only), so it can use the page's own controls before the shot: ``--select fw=torch`` picks
that framework in every framework filter, ``--sections`` hides the other sections,
``--open-first`` opens the first listed discrepancy (its cause's row, then its first
record).  The whole page is captured (``.png``,
or ``.jpg`` for a smaller file).  It prints every URL the page requested: a report that
works offline requests only itself.

Chromium: ``apt-get install chromium`` (Debian) or set ``$CHROMIUM``.  ``ReportPage`` is also
what ``tests/test_report.py`` uses to check the page in a real browser.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    """``$CHROMIUM``, or the first Chromium/Chrome on PATH."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class ReportPage:
    """One headless Chromium showing one page, driven over the DevTools pipe."""

    def __init__(self, url: str, width: int = 1400, height: int = 1000,
                 chromium: str | None = None, timeout: float = 60.0) -> None:
        binary = chromium or find_chromium()
        if binary is None:
            raise FileNotFoundError("no Chromium found (apt-get install chromium, or $CHROMIUM)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="report-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the browser reads commands on fd 3 and writes replies on fd 4
        high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)

        def wire() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, pass_fds=(3, 4), close_fds=True)
        os.close(high_r)
        os.close(high_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=True)
        self.call("Page.navigate", {"url": url}, session=True)
        self._wait_event("Page.loadEventFired")

    # --- the protocol ------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: bool = False) -> dict[str, Any]:
        """Send one command and wait for its reply (events meanwhile are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def _wait_event(self, name: str) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == name:
                return event
        while True:
            message = self._read()
            if message.get("method") == name:
                return message

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_browser], [], [], remaining)[0]:
                raise TimeoutError(f"no answer from Chromium within {self.timeout:g} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
        return dict(message)

    # --- what scripts and tests use --------------------------------------------------------

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path, viewport: bool = False) -> int:
        """Capture the whole page, or only what the window shows with ``viewport`` (PNG, or
        JPEG for .jpg/.jpeg); returns the bytes written."""
        # two animation frames: what content-visibility defers is laid out once it shows
        self.evaluate("new Promise(function (done) { requestAnimationFrame(function () {"
                      " requestAnimationFrame(done); }); })")
        metrics = self.call("Page.getLayoutMetrics", session=True)
        size = metrics["cssVisualViewport" if viewport else "cssContentSize"]
        size = {"width": size.get("width", size.get("clientWidth")),
                "height": size.get("height", size.get("clientHeight"))}
        jpeg = path.suffix.lower() in (".jpg", ".jpeg")
        params: dict[str, Any] = {
            "format": "jpeg" if jpeg else "png", "captureBeyondViewport": not viewport,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                     "scale": 1},
        }
        if jpeg:
            params["quality"] = 80
        data = base64.b64decode(self.call("Page.captureScreenshot", params, session=True)["data"])
        path.write_bytes(data)
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> ReportPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The page's own controls, driven as a user would.
SELECT = """(function (name, prefix) {
  var changed = 0;
  document.querySelectorAll('select[data-filter="' + name + '"], select[data-dim="' + name
                            + '"]').forEach(function (s) {
    var option = Array.prototype.find.call(s.options, function (o) {
      return o.value !== '' && o.value.indexOf(prefix) === 0; });
    if (option) { s.value = option.value; s.dispatchEvent(new Event('change')); changed += 1; }
  });
  return changed;
})(%s, %s)"""
SHOW_SECTIONS = """(function (names) {
  document.querySelectorAll('body > section').forEach(function (s) {
    s.style.display = names.indexOf(s.id) >= 0 ? '' : 'none'; });
  return names.length;
})(%s)"""
OPEN_FIRST = """(window.conformanceReady || Promise.resolve()).then(function () {
  var group = Array.prototype.find.call(document.querySelectorAll('#disc-table tr.grow'),
    function (r) { return !r.classList.contains('hidden'); });
  if (!group) { return null; }
  if (!group.classList.contains('open')) { group.click(); }
  var row = group.nextElementSibling.querySelector('tr.row');
  if (!row) { return null; }
  row.click();
  return row.id;
})"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("report.png"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--select", action="append", default=[], metavar="NAME=PREFIX",
                        help="choose the first option starting with PREFIX in every filter "
                             "NAME (fw, dtype, device, kind, status, env, ...); repeatable")
    parser.add_argument("--sections", help="comma-separated sections to keep, e.g. "
                                           "overview,accuracy,discrepancies")
    parser.add_argument("--open-first", action="store_true",
                        help="open the first listed discrepancy")
    parser.add_argument("--viewport", action="store_true",
                        help="capture only what the window shows (the first screen), not the "
                             "whole page")
    args = parser.parse_args(argv)
    url = args.report.resolve().as_uri()
    with ReportPage(url, width=args.width) as page:
        for choice in args.select:
            name, _, prefix = choice.partition("=")
            page.evaluate(SELECT % (json.dumps(name), json.dumps(prefix)))
        if args.sections:
            page.evaluate(SHOW_SECTIONS % json.dumps(args.sections.split(",")))
        if args.open_first:
            opened = page.evaluate(OPEN_FIRST)
            print(f"opened: {opened}")
        written = page.screenshot(args.output, viewport=args.viewport)
        print(f"screenshot: {args.output} ({written // 1024} KiB)")
        print("requests: " + ", ".join(page.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
