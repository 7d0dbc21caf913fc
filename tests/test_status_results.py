"""`allobrain-import status` and `allobrain-import results`, on both ledgers, as a person runs them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import yaml
from faultkit import REPO, wait_until, write_manifest
from runkit import read_results, run_cli

from importer.sandbox import Sandbox


def config(folder, pg_url=None):
    data = {"state_dir": str(folder / "state"), "upload": {"workers": 2}}
    if pg_url:
        data["ledger"] = {"url": pg_url, "lease_seconds": 30}
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def cfg(request, tmp_path):
    return config(tmp_path, request.getfixturevalue("pg_url") if request.param == "postgres" else None)


def test_status_and_results_tell_a_manifests_rows_from_the_ledger(tmp_path, cfg, sandbox, monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    manifest, _ = write_manifest(tmp_path, n=5, agents=1)
    first = tmp_path / "first.csv"
    assert run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", first).code == 0
    # The sheet grows: one more row, not sent yet, and one invalid row.
    more, _ = write_manifest(tmp_path / "more", n=7, agents=1)
    lines = manifest.read_text().splitlines()
    extra = more.read_text().splitlines()[-1]
    bad = lines[1].replace("agent0@example.com", "not-an-email")
    manifest.write_text("\n".join([*lines, extra, bad]) + "\n")

    s = run_cli("status", manifest, "--config", cfg, "--api-url", sandbox.url)
    assert s.code == 0, s.err
    assert "live runs: none" in s.out
    assert "calls.csv: 7 rows, against http://127.0.0.1:" in s.out
    assert "  uploaded          5\n" in s.out and "  not sent yet      1\n" in s.out and "  invalid           1\n" in s.out

    out = tmp_path / "from-ledger.csv"
    r = run_cli("results", manifest, "--config", cfg, "--api-url", sandbox.url, "--out", out)
    assert r.code == 1, r.err  # not every row is uploaded
    assert f"results: {out}" in r.out and "  uploaded          5" in r.out
    rows = read_results(out)
    assert [x["import_status"] for x in rows] == ["uploaded"] * 5 + ["not_attempted", "invalid"]
    assert [x["import_call_id"] for x in rows[:5]] == [x["import_call_id"] for x in read_results(first)]
    assert rows[5]["import_error"] == "not sent yet: no run has claimed it"
    assert "agent_email" in rows[6]["import_error"]
    # That file is a results file like any other: rerunning it sends only the new row.
    before = len(sandbox.calls())
    again = run_cli("run", out, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", tmp_path / "r2.csv")
    assert again.code == 1 and len(sandbox.calls()) == before + 1  # 1 = the invalid row


def test_status_lists_a_live_run_with_its_host_pid_and_user(tmp_path, pg_url):
    with Sandbox(latency_ms=150, data_dir=tmp_path / "server") as sb:
        manifest, _ = write_manifest(tmp_path, n=40, agents=1)
        cfg = config(tmp_path, pg_url)
        env = dict(os.environ, ALLOBRAIN_API_KEY=sb.api_key, PYTHONPATH=str(REPO))
        child = subprocess.Popen([sys.executable, "-m", "importer", "run", str(manifest), "--config", str(cfg),
                                  "--api-url", sb.url, "--quiet", "--results", str(tmp_path / "r.csv")], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_until(lambda: len(sb.calls()) >= 4, 60)
            s = run_cli("status", manifest, "--config", cfg, "--api-url", sb.url)
        finally:
            child.wait(120)
        assert s.code == 0, s.err
        assert "live runs: 1" in s.out
        assert f"host {socket.gethostname()}  pid {child.pid}  user " in s.out
        assert "being sent by run " in s.out and "  sending " in s.out
        time.sleep(0.1)
        after = run_cli("status", "--config", cfg, "--api-url", sb.url)
        assert "live runs: none" in after.out and "rows" not in after.out.split("live runs: none")[1]


def test_results_refuses_to_overwrite_what_is_not_a_results_file(tmp_path, sandbox):
    manifest, _ = write_manifest(tmp_path, n=1, agents=1)
    cfg = config(tmp_path)
    (tmp_path / "state").mkdir()
    r0 = run_cli("status", "--config", cfg)  # no ledger yet: said plainly
    assert r0.code == 2 and "no ledger yet in" in r0.err
    keep = tmp_path / "notes.csv"
    keep.write_text("precious\n")
    r = run_cli("results", manifest, "--config", cfg, "--api-url", sandbox.url, "--out", keep)
    assert r.code == 2 and "is not a results file written by allobrain-import" in r.err
    assert keep.read_text() == "precious\n"
    r2 = run_cli("results", manifest, "--config", cfg, "--api-url", sandbox.url, "--out", tmp_path / "x.xlsx")
    assert r2.code == 2 and "--out must be a .csv file" in r2.err
