"""Helpers for the web page's tests: `allobrain-import ui` as a child process (as a person starts it), and a
headless Chromium driven by Selenium through Debian's chromedriver (nothing is downloaded)."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from runkit import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,800")
# Screenshots of each step, outside the repository, to look at after a run.
SHOTS = Path(os.environ.get("UI_SCREENSHOTS", Path(tempfile.gettempdir()) / "allobrain-ui-screenshots"))


@dataclass
class Ui:
    proc: subprocess.Popen
    url: str  # with the one-time token
    port: int
    out: str = ""
    err: str = ""
    output: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """Ctrl-C, as a person stops it; what it printed is kept in out/err."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.out += out
        self.err += err
        return self.proc.returncode


def start_ui(folder: Path, cwd: Path, *, key: str | None = None, config: Path | None = None) -> Ui:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("ALLOBRAIN_API_KEY", None)
    env.pop("PYTHONWARNINGS", None)
    if key is not None:
        env["ALLOBRAIN_API_KEY"] = key
    cmd = [sys.executable, "-m", "importer", "ui", "--port", "0", "--folder", str(folder), "--no-browser"]
    if config is not None:
        cmd += ["--config", str(config)]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = ""
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if ready:
        first = proc.stdout.readline()
    match = re.search(r"open (http://127\.0\.0\.1:(\d+)/\?token=\S+)", first)
    if match is None:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"ui did not start: {first!r} {out!r} {err!r}")
    return Ui(proc, match.group(1), int(match.group(2)), out=first)


def login(ui: Ui) -> tuple[requests.Session, str]:
    """A requests session holding the page's cookie, and its CSRF token."""
    s = requests.Session()
    r = s.get(ui.url, timeout=10)
    assert r.status_code == 200, r.text
    return s, csrf_of(r.text)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def need_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)  # in CI a missing browser is a failure, never a skip
    pytest.skip(message)


def chrome(downloads: Path, lang: str = "en-US,en"):  # noqa: ANN201 - selenium's WebDriver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="allobrain-ui-chrome-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--lang={lang.split(',')[0]}")
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
        "intl.accept_languages": lang,
    })
    # The driver's path is given, so Selenium never runs selenium-manager (which would download one).
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    driver._allobrain_profile = profile  # removed by quit_chrome
    return driver


def quit_chrome(driver) -> None:  # noqa: ANN001
    profile = getattr(driver, "_allobrain_profile", None)
    driver.quit()
    if profile:
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name: str) -> Path:  # noqa: ANN001
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for_file(folder: Path, suffix: str, timeout: float = 20) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.glob(f"*{suffix}")] if folder.is_dir() else []
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no {suffix} file downloaded into {folder}")
