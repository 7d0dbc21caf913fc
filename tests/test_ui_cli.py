"""`allobrain-import ui` as a command: its flags, Ctrl-C during a run (results complete), and the package
shipping the page's templates and assets in a non-editable install."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from runkit import REPO, read_results, run_cli, write_manifest
from uikit import login, start_ui


def test_bad_flags_are_usage_errors(tmp_path):
    r = run_cli("ui", "--port", "70000", "--no-browser")
    assert r.code == 2 and "--port must be from 1 to 65535" in r.err
    r = run_cli("ui", "--folder", tmp_path / "nope", "--no-browser")
    assert r.code == 2 and "--folder: not a folder" in r.err
    r = run_cli("ui", "--config", tmp_path / "nope.yaml", "--no-browser")
    assert r.code == 2 and "config file not found" in r.err


def test_a_taken_port_names_the_flag(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = run_cli("ui", "--port", str(port), "--folder", tmp_path, "--no-browser")
    assert r.code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in r.err and "choose another port with --port" in r.err


def test_ctrl_c_in_the_terminal_stops_a_run_cleanly(tmp_path):
    folder = tmp_path / "calls"
    write_manifest(folder, n=30, agents=1)
    (folder / "config.yaml").write_text("upload:\n  max_per_second: 4\n  workers: 1\n", encoding="utf-8")
    ui = start_ui(folder, cwd=tmp_path)
    session, csrf = login(ui)
    session.post(ui.base + "/choose/pick", data={"path": "calls.csv", "csrf": csrf}, timeout=10)
    run = session.post(ui.base + "/run", data={"csrf": csrf}, timeout=10)
    assert run.url.endswith("/run/1")
    deadline = time.monotonic() + 30
    while "uploaded" not in _first_results(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ui.stop() == 0
    assert "stopping: in-flight uploads finish" in ui.err and "page stopped" in ui.out
    results = next((folder / "results").glob("calls-*.csv"))
    rows = read_results(results)
    statuses = [r["import_status"] for r in rows]
    assert len(rows) == 30 and "uploaded" in statuses and "not_attempted" in statuses
    assert set(statuses) == {"uploaded", "not_attempted"}
    info = json.loads(results.with_name(results.name + ".run.json").read_text(encoding="utf-8"))
    assert info["complete"] is True and info["sandbox"] is True


def _first_results(folder: Path) -> str:
    found = list((folder / "results").glob("calls-*.csv")) if (folder / "results").is_dir() else []
    return found[0].read_text(encoding="utf-8-sig") if found else ""


@pytest.mark.slow
def test_a_built_wheel_ships_the_templates_and_assets(tmp_path):
    """A non-editable install gets the page's files (package data), not only the Python modules."""
    source = tmp_path / "src"  # a copy: building writes build/ and egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "importer", source / "importer", ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("allobrain_import-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n for n in names if n.startswith("importer/ui/") and not n.endswith(".py")}
    in_repo = {p.relative_to(REPO).as_posix() for p in (REPO / "importer" / "ui").rglob("*")
               if p.is_file() and p.suffix in (".html", ".css", ".js")}
    assert in_repo and shipped == in_repo
    assert any(re.fullmatch(r"importer/ui/templates/base\.html", n) for n in names)
