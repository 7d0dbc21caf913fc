"""The web page's guards at the HTTP level, against the live `allobrain-import ui`: the token, the session
cookie, the Host check (DNS rebinding), CSRF, loopback only, no outside asset, and the API key never in a
page, a log or a file."""

from __future__ import annotations

import re
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from runkit import write_config, write_manifest
from uikit import login, start_ui

from importer.sandbox import Sandbox

UI_PACKAGE = Path(__file__).resolve().parents[1] / "importer" / "ui"


@pytest.fixture
def ui(tmp_path):
    write_manifest(tmp_path / "calls", n=3, agents=1)
    server = start_ui(tmp_path / "calls", cwd=tmp_path)
    yield server
    server.stop()


def test_no_token_no_page(ui):
    for path in ("/", "/columns", "/plan", "/results/x", "/run/1/events"):
        r = requests.get(ui.base + path, timeout=10, allow_redirects=False)
        assert r.status_code == 403, path
        assert "Open the link that `allobrain-import ui` printed" in r.text
    assert requests.get(ui.base + "/?token=wrong", timeout=10).status_code == 403


def test_the_token_works_once_and_becomes_a_strict_httponly_cookie(ui):
    first = requests.get(ui.url, timeout=10, allow_redirects=False)
    assert first.status_code == 303 and first.headers["Location"] == "/"
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    token = ui.url.split("token=")[1]
    assert token not in cookie
    again = requests.get(ui.url, timeout=10, allow_redirects=False)
    assert again.status_code == 403  # spent: someone who read the terminal later gets nothing
    # The cookie, not the token, opens the page from now on.
    sid = cookie.split(";")[0].split("=", 1)[1]
    page = requests.get(ui.base + "/", cookies={"allobrain_ui": sid}, timeout=10)
    assert page.status_code == 200 and "Choose a spreadsheet" in page.text
    assert requests.get(ui.base + "/", cookies={"allobrain_ui": sid + "x"}, timeout=10).status_code == 403


FOREIGN_HOSTS = ("evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "localhost:1",
                 "127.0.0.1", "[::1]:{port}", "")


def test_a_foreign_host_is_refused_even_with_the_session(ui):
    cookie = _cookie(ui)
    for host in FOREIGN_HOSTS:
        r = requests.get(ui.base + "/", headers={"Host": host.format(port=ui.port), "Cookie": cookie}, timeout=10)
        assert r.status_code == 421, host
        assert "Choose a spreadsheet" not in r.text
    ok = requests.get(ui.base + "/", headers={"Host": f"127.0.0.1:{ui.port}", "Cookie": cookie}, timeout=10)
    assert ok.status_code == 200  # the same request with the page's own Host


def _cookie(ui) -> str:
    first = requests.get(ui.url, timeout=10, allow_redirects=False)
    return first.headers["Set-Cookie"].split(";")[0]


def test_the_token_cannot_be_spent_through_a_rebinding_name(ui):
    r = requests.get(ui.url, headers={"Host": f"evil.example:{ui.port}"}, timeout=10, allow_redirects=False)
    assert r.status_code == 421 and "Set-Cookie" not in r.headers
    assert requests.get(ui.url, timeout=10, allow_redirects=False).status_code == 303  # still unspent


def test_localhost_with_the_right_port_is_accepted(ui):
    r = requests.get(ui.base + "/", headers={"Host": f"localhost:{ui.port}", "Cookie": _cookie(ui)}, timeout=10)
    assert r.status_code == 200


def test_every_post_needs_the_csrf_token_and_a_same_origin(ui):
    session, csrf = login(ui)
    posts = {"/choose/pick": {"path": "calls.csv"}, "/destination": {"sandbox": "on"}, "/columns": {},
             "/run": {}, "/run/1/stop": {}, "/results/x/rerun": {}}
    for path, form in posts.items():
        for data in (form, form | {"csrf": ""}, form | {"csrf": csrf[:-2] + "xx"}):
            r = session.post(ui.base + path, data=data, timeout=10, allow_redirects=False)
            assert r.status_code == 403, (path, data)
        r = session.post(ui.base + path, data=form | {"csrf": csrf}, headers={"Origin": "http://evil.example"},
                         timeout=10, allow_redirects=False)
        assert r.status_code == 403, path
    # Nothing was chosen by the refused forms; the right token and origin work.
    assert "Chosen:" not in session.get(ui.base + "/", timeout=10).text
    ok = session.post(ui.base + "/choose/pick", data={"path": "calls.csv", "csrf": csrf},
                      headers={"Origin": ui.base}, timeout=10, allow_redirects=False)
    assert ok.status_code == 303 and ok.headers["Location"].endswith("/columns")


def test_a_pick_outside_the_folder_is_refused(ui, tmp_path):
    session, csrf = login(ui)
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    for path in ("../secret.csv", str(tmp_path / "secret.csv"), "../calls/../secret.csv"):
        r = session.post(ui.base + "/choose/pick", data={"path": path, "csrf": csrf}, timeout=10)
        assert "That file is not under" in r.text
    assert session.get(ui.base + "/columns", timeout=10, allow_redirects=False).status_code == 303


def test_it_listens_on_127_0_0_1_only(ui):
    with socket.create_connection(("127.0.0.1", ui.port), timeout=5):
        pass
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", ui.port), timeout=5)


def test_answers_forbid_framing_and_outside_content(ui):
    session, _ = login(ui)
    r = session.get(ui.base + "/", timeout=10)
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"
    for asset in ("style.css", "app.js"):
        assert requests.get(f"{ui.base}/static/{asset}", timeout=10).status_code == 200


def test_every_asset_ships_in_the_package_and_none_comes_from_elsewhere():
    files = list((UI_PACKAGE / "templates").glob("*.html")) + list((UI_PACKAGE / "static").iterdir())
    assert {p.name for p in (UI_PACKAGE / "static").iterdir()} == {"style.css", "app.js"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path.name
        assert "@import" not in text and "url(http" not in text, path.name


def _walk_the_pages(ui, session: requests.Session, csrf: str, manifest: str) -> list[str]:
    """Every step of the job, as the browser would ask for them; the bodies it got."""
    pages = [session.get(ui.base + "/", timeout=10).text]
    pages.append(session.post(ui.base + "/choose/pick", data={"path": manifest, "csrf": csrf}, timeout=10).text)
    form = {"csrf": csrf, "col_file_path": "file_path", "col_agent_email": "agent_email",
            "col_agent_name": "agent_name", "col_conversation_timestamp": "conversation_timestamp",
            "col_campaign_id": "campaign_id"}
    pages.append(session.post(ui.base + "/columns", data=form, timeout=10).text)
    pages.append(session.get(ui.base + "/plan", timeout=10).text)
    run = session.post(ui.base + "/run", data={"csrf": csrf}, timeout=10)
    pages.append(run.text)
    assert "/run/1" in run.url, run.text
    pages.append(session.get(ui.base + "/run/1/events", timeout=30).text)  # the stream ends with the run
    results = session.get(ui.base + "/", timeout=10)
    key = re.search(r'href="/results/([0-9a-f]+)"', results.text).group(1)
    pages.append(results.text)
    pages.append(session.get(f"{ui.base}/results/{key}", timeout=10).text)
    pages.append(session.get(f"{ui.base}/results/{key}/download/csv", timeout=10).text)
    return pages


def _everything_on_disk(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


@contextmanager
def _real_api(tmp_path: Path, n: int, *, api_key: str | None = None, env_key: str | None = None):
    """A sandbox standing in for the real API (its key `api_key`), a manifest of n rows and the page,
    started with `env_key` in its environment, pointed at that API by its --config."""
    with Sandbox(api_key=api_key, data_dir=tmp_path / "sandbox") if api_key else \
            Sandbox(data_dir=tmp_path / "sandbox") as sb:
        folder = tmp_path / "calls"
        write_manifest(folder, n=n, agents=2)
        config = write_config(folder, api="{base_url: '" + sb.url + "'}")
        ui = start_ui(folder, cwd=tmp_path, key=env_key, config=config)
        try:
            yield sb, ui
        finally:
            assert ui.stop() == 0


def _nowhere(key: str, pages: list[str], ui, tmp_path: Path) -> None:  # noqa: ANN001
    for body in pages:
        assert key not in body
    assert key not in ui.out and key not in ui.err
    assert key.encode() not in _everything_on_disk(tmp_path / "calls")  # results, run-info, config, ledger


def test_the_key_from_the_environment_never_reaches_a_page_a_log_or_a_file(tmp_path):
    key = "envkey-" + "7f3a9c" * 5
    with _real_api(tmp_path, 4, api_key=key, env_key=key) as (sb, ui):
        session, csrf = login(ui)
        first = session.get(ui.base + "/", timeout=10).text
        assert "taken from the environment variable ALLOBRAIN_API_KEY" in first
        assert 'id="sandbox" name="sandbox" value="on" >' in first  # a key is there: not the sandbox
        pages = _walk_the_pages(ui, session, csrf, "calls.csv")
    assert len(sb.calls()) == 4  # the key was used: the API took every call
    assert "uploaded" in pages[-1]
    _nowhere(key, pages, ui, tmp_path)


def test_a_typed_key_is_kept_in_memory_only(tmp_path):
    key = "typedkey-" + "c0ffee" * 5
    with _real_api(tmp_path, 3, api_key=key) as (sb, ui):
        session, csrf = login(ui)
        assert 'id="sandbox" name="sandbox" value="on" checked' in session.get(ui.base + "/", timeout=10).text
        r = session.post(ui.base + "/destination", data={"csrf": csrf, "api_key": key, "back": "/plan"},
                         timeout=10)
        assert "typed in this page (kept in memory" in r.text
        assert 'type="password" id="api_key"' in r.text and "value=" not in r.text.split('id="api_key"')[1][:80]
        pages = [r.text, *_walk_the_pages(ui, session, csrf, "calls.csv")]
    assert len(sb.calls()) == 3
    assert [q["path"] for q in sb.requests_log()].count("/calls/audio") == 3
    _nowhere(key, pages, ui, tmp_path)


def test_a_refused_key_is_said_on_the_page_without_the_key(tmp_path):
    key = "wrongkey-" + "abcdef" * 5
    with _real_api(tmp_path, 3, env_key=key) as (sb, ui):  # the sandbox expects its own key
        session, csrf = login(ui)
        pages = _walk_the_pages(ui, session, csrf, "calls.csv")
    assert sb.calls() == []
    assert "the API refused the key" in pages[-2]
    _nowhere(key, pages, ui, tmp_path)
