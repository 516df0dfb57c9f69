"""A very small Chrome DevTools Protocol client: headless Chromium driven over a websocket.

No browser downloads and no driver binary: ``/usr/bin/chromium`` (Debian) plus the
``websockets`` package. Enough for page loads, script evaluation and JS on/off.
"""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-allow-origins=*"]


class Page:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        ident = self._id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})  # type: ignore[no-any-return]

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        prefix = json.dumps(url.split("#")[0])
        self.wait_for(f"document.readyState === 'complete' && location.href.startsWith({prefix})")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.eval(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {expression}")
            time.sleep(0.1)

    def html(self) -> str:
        doc = self.call("DOM.getDocument", depth=0)
        return str(self.call("DOM.getOuterHTML", nodeId=doc["root"]["nodeId"])["outerHTML"])

    def set_javascript(self, enabled: bool) -> None:
        self.call("Emulation.setScriptExecutionDisabled", value=not enabled)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class _Browser:
    """One headless Chromium per test process; each test gets a fresh browser context (its own
    cookies, storage and cache, like an incognito window) and a new tab in it."""

    def __init__(self, binary: str, flags: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.flags = flags
        self.stack = ExitStack()
        self.dir = Path(tempfile.mkdtemp(prefix="rose-ash-chromium-"))
        self.log_path = self.dir / "chromium.log"
        profile = self.dir / "profile"
        profile.mkdir()
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen([binary, *FLAGS, *flags, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(self.log_path.read_text()[-3000:])
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])
        version = httpx.get(f"http://127.0.0.1:{self.port}/json/version", timeout=5).json()
        self.ws = self.stack.enter_context(connect(version["webSocketDebuggerUrl"], max_size=None, open_timeout=10))
        self.control = Page(self.ws)  # the browser target: creates and disposes contexts

    def alive(self) -> bool:
        return self.proc.poll() is None

    @contextmanager
    def new_page(self) -> Iterator[Page]:
        context = self.control.call("Target.createBrowserContext", disposeOnDetach=True)["browserContextId"]
        try:
            target = self.control.call("Target.createTarget", url="about:blank", browserContextId=context)["targetId"]
            with connect(f"ws://127.0.0.1:{self.port}/devtools/page/{target}", max_size=None, open_timeout=10) as ws:
                page = Page(ws)
                page.call("Page.enable")
                page.call("Runtime.enable")
                yield page
        finally:
            if self.alive():
                self.control.call("Target.disposeBrowserContext", browserContextId=context)

    def close(self) -> None:
        self.stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_browser: _Browser | None = None


def _shared_browser(binary: str, flags: tuple[str, ...] = ()) -> _Browser:
    global _browser
    if _browser is not None and (not _browser.alive() or _browser.binary != binary or _browser.flags != flags):
        _browser.close()
        _browser = None
    if _browser is None:
        _browser = _Browser(binary, flags)
        atexit.register(_browser.close)
    return _browser


@contextmanager
def chromium(tmp_path: Path, binary: str, flags: tuple[str, ...] = ()) -> Iterator[Page]:
    """A new tab in a fresh browser context of this process's Chromium (started on first use:
    a Chromium start costs seconds, a context milliseconds). ``tmp_path`` receives the browser
    log if the test fails in the browser. Extra command-line ``flags`` (a fake camera, say) get a
    Chromium of their own, replacing the shared one until a test asks for other flags."""
    browser = _shared_browser(binary, flags)
    try:
        with browser.new_page() as page:
            yield page
    except BaseException:
        if browser.log_path.exists():
            shutil.copyfile(browser.log_path, tmp_path / "chromium.log")
        raise
