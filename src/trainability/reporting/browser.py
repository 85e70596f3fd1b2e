"""Open a page in headless Chromium: check that it renders, and take a screenshot.

Debian's ``chromium`` package (``apt-get install chromium``) or any Chrome/Chromium on the
PATH; ``$CHROMIUM`` names another binary. Flags keep the browser off the network and out of
the user's profile: ``--disable-background-networking --disable-component-update
--disable-sync --no-first-run`` and a fresh ``--user-data-dir``; ``--no-sandbox`` lets it run as
root in containers and CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars")  # fmt: skip
NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")

#: Injected at the top of a copy of the page: records load errors (resources, scripts) from the
#: first moment, and on load writes what it saw into the DOM for ``--dump-dom`` to print.
_PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target || {};
  window.__errors.push(t.tagName ? ("cannot load " + t.tagName + " " + String(t.src || t.href).slice(0, 60)) : String(e.message));
}, true);
var __consoleError = console.error;
console.error = function () { window.__errors.push(Array.prototype.join.call(arguments, " ")); __consoleError.apply(console, arguments); };
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (i) {
    return {alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight};
  });
  var out = document.createElement("pre");
  out.id = "__trainability_check";
  out.textContent = JSON.stringify({images: images, errors: window.__errors, title: document.title,
                                    sections: document.querySelectorAll("section").length});
  document.body.appendChild(out);
});
</script>"""


def find_chromium() -> str | None:
    """The browser's path, or None."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    return next((path for name in NAMES if (path := shutil.which(name))), None)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    browser = find_chromium()
    if browser is None:
        raise ValueError("no Chromium found: apt-get install chromium (or set $CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="trainability-chromium-") as profile:
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip


@dataclass(frozen=True)
class PageCheck:
    """What the browser saw: every image (decoded size), errors, console lines from the page."""

    images: list[dict]
    errors: list[str]
    console: list[str]
    title: str
    sections: int

    @property
    def ok(self) -> bool:
        return not self.errors and not self.console and all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in self.images)


def check_page(path: str | os.PathLike[str], *, timeout: float = 120.0) -> PageCheck:
    """Load a copy of the page with a probe injected, and report what rendered."""
    html = Path(path).read_text(encoding="utf-8")
    head = html.find("<head>")
    if head < 0:
        raise ValueError(f"{path} has no <head>: not an HTML page")
    with tempfile.TemporaryDirectory(prefix="trainability-check-") as folder:
        probe = Path(folder) / "page.html"
        probe.write_text(html[: head + 6] + _PROBE + html[head + 6 :], encoding="utf-8")
        done = _run(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--dump-dom", probe.as_uri()], timeout)
    match = re.search(r'<pre id="__trainability_check">(.*?)</pre>', done.stdout, re.S)
    if match is None:
        raise ValueError(f"the page did not finish loading in Chromium (exit {done.returncode}): {done.stderr[-500:]}")
    seen = json.loads(match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line and "page.html" in line]
    return PageCheck(seen["images"], seen["errors"], console, seen["title"], seen["sections"])


def screenshot(path: str | os.PathLike[str], png: str | os.PathLike[str], *, width: int = 1280, height: int = 2400,
               timeout: float = 120.0) -> Path:  # fmt: skip
    """A PNG of the page's top ``height`` pixels at ``width``."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    done = _run([f"--window-size={width},{height}", f"--screenshot={png}", Path(path).resolve().as_uri()], timeout)
    if not png.is_file():
        raise ValueError(f"Chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-500:]}")
    return png
