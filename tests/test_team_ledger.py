"""A team ledger on PostgreSQL, end to end: real CLI runs as child processes, a real sandbox, a real server.

Several runs of one manifest at once (one killed), two people with overlapping manifests, a rate limit shared
by the fleet, the database restarted or cut off mid-run. Whatever happens, no call reaches the sandbox twice,
and reruns finish the job.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from faultkit import (
    CAMPAIGN,
    HEADERS,
    REPO,
    assert_exactly_once,
    check_results_file,
    kill,
    server_fingerprints,
    wait_until,
    write_manifest,
)
from runkit import read_results, run_cli

from importer.sandbox import Sandbox

pytestmark = pytest.mark.slow
WORKERS = 4


def team_config(folder: Path, url: str, *, lease: float = 3, name: str = "team.yaml", **upload) -> Path:
    data = {"state_dir": str(folder / "state"), "ledger": {"url": url, "lease_seconds": lease},
            "upload": {"max_attempts": 4, "workers": WORKERS, **upload}}
    path = folder / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def child(manifest: Path, config: Path, sb: Sandbox, results: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "importer", "run", str(manifest), "--config", str(config), "--api-url", sb.url,
           "--quiet", "--results", str(results), *extra]
    env = dict(os.environ, ALLOBRAIN_API_KEY=sb.api_key, PYTHONPATH=str(REPO))
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def rerun(sb: Sandbox, manifest: Path, config: Path, results: Path, *extra: str):
    return run_cli("run", manifest, "--config", config, "--api-url", sb.url, "--quiet", "--results", results,
                   *extra)


def test_three_runs_of_one_manifest_at_once_one_killed_then_a_rerun_finishes(tmp_path, pg_url, monkeypatch):
    with Sandbox(latency_ms=80, data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        manifest, rows = write_manifest(tmp_path, n=90, agents=3)
        cfg = team_config(tmp_path, pg_url)
        procs = [child(manifest, cfg, sb, tmp_path / f"run{i}.csv") for i in range(3)]
        assert wait_until(lambda: len(sb.calls()) >= 15, 60), "the runs never reached the sandbox"
        kill(procs[0])
        survivors = [finish(p) for p in procs[1:]]
        for code, out in survivors:
            assert code in (0, 1), out
        held = server_fingerprints(sb.calls())
        assert max(held.values()) == 1, "a call reached the sandbox twice"
        mine = []
        for i in (1, 2):
            lines = check_results_file(tmp_path / f"run{i}.csv", rows)
            statuses = {x["import_status"] for x in lines}
            assert statuses <= {"uploaded", "already_uploaded", "not_attempted", "unknown"}, statuses
            for x in lines:
                if x["import_status"] == "not_attempted":  # only the killed run's rows in flight
                    assert "being sent by run" in x["import_error"] or "sent by run" in x["import_error"], x
            mine.append(sum(x["import_status"] == "uploaded" for x in lines))
        assert all(n > 0 for n in mine), f"the survivors did not share the work: {mine}"

        time.sleep(3.5)  # the killed run's lease runs out: its rows in flight become unknown
        r = rerun(sb, manifest, cfg, tmp_path / "final.csv")
        lines = check_results_file(tmp_path / "final.csv", rows)
        by_status = assert_exactly_once(lines, rows, sb.calls())
        unknown = by_status.get("unknown", [])
        assert len(unknown) <= WORKERS, f"{len(unknown)} unknown: more than the killed run had in flight"
        assert r.code == (1 if unknown else 0), r.out + r.err
        for x in lines:
            if x["import_status"] == "unknown":
                assert "the server may already have this call" in x["import_error"]


def _copy_manifest(src_rows, folder: Path, headers: list[str]) -> Path:
    """Person 2's spreadsheet: its own copies of the recordings in another folder, other column order."""
    folder.mkdir(parents=True)
    (folder / "copies").mkdir()
    lines = [",".join(headers)]
    for row in src_rows:
        copy = folder / "copies" / row.file.name
        shutil.copyfile(row.file, copy)
        cells = {"file_path": f"copies/{copy.name}", "agent_email": row.email, "agent_name": row.email.split("@")[0],
                 "conversation_timestamp": str(row.ts), "campaign_id": CAMPAIGN, "site": "Lyon"}
        lines.append(",".join(cells[h] for h in headers))
    path = folder / "mine.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_two_people_with_overlapping_manifests_send_each_call_once(tmp_path, pg_url):
    with Sandbox(latency_ms=60, data_dir=tmp_path / "server") as sb:
        first, rows = write_manifest(tmp_path / "alice", n=40, agents=2)
        # Bob's sheet holds rows 20..39 of Alice's and 20 more, columns in another order, files copied.
        more, extra_rows = write_manifest(tmp_path / "bob-new", n=60, agents=2)
        bob_rows = rows[20:] + extra_rows[40:]
        second = _copy_manifest(bob_rows, tmp_path / "bob", list(reversed(HEADERS)))
        a = child(first, team_config(tmp_path / "alice", pg_url), sb, tmp_path / "alice.csv")
        b = child(second, team_config(tmp_path / "bob", pg_url), sb, tmp_path / "bob.csv")
        (ca, out_a), (cb, out_b) = finish(a), finish(b)
        assert (ca, cb) == (0, 0), out_a + out_b
        alice, bob = read_results(tmp_path / "alice.csv"), read_results(tmp_path / "bob.csv")
        held = server_fingerprints(sb.calls())
        assert len(sb.calls()) == 60 and set(held.values()) == {1}
        overlap = {(x["agent_email"], x["conversation_timestamp"]) for x in alice[20:]}
        for x in bob:
            key = (x["agent_email"], x["conversation_timestamp"])
            twin = next((y for y in alice if (y["agent_email"], y["conversation_timestamp"]) == key), None)
            if key in overlap:
                assert {x["import_status"], twin["import_status"]} == {"uploaded", "already_uploaded"}
                assert x["import_call_id"] == twin["import_call_id"]
            else:
                assert x["import_status"] == "uploaded"


def test_a_rate_limit_shared_by_three_runs_keeps_the_sandbox_under_its_limit(tmp_path, pg_url):
    with Sandbox(rate_limit=10, data_dir=tmp_path / "server") as sb:
        whole, _ = write_manifest(tmp_path, n=42, agents=1)
        header, *lines = whole.read_text(encoding="utf-8").splitlines()
        procs = []
        for i in range(3):  # three different manifests (14 rows each): every run has its own work
            part = tmp_path / f"part{i}.csv"
            part.write_text("\n".join([header, *lines[i::3]]) + "\n", encoding="utf-8")
            cfg = team_config(tmp_path, pg_url, max_per_second=10, name=f"team{i}.yaml")
            procs.append(child(part, cfg, sb, tmp_path / f"r{i}.csv"))
        started = time.monotonic()
        results = [finish(p) for p in procs]
        elapsed = time.monotonic() - started
        assert all(code == 0 for code, _ in results), results
        log = sb.requests_log()
        assert [e for e in log if e["status"] == 429] == [], "the fleet went over the shared limit"
        # 42 uploads and 3 invites at 10/s shared: at least about 3.5 s even after the sandbox's 1 s burst
        assert len(sb.calls()) == 42 and elapsed >= 3.5


def _count(lines: list[dict[str, str]], status: str) -> int:
    return sum(x["import_status"] == status for x in lines)


def test_the_database_restarted_mid_run_the_run_reconnects_or_stops_and_reruns_finish(tmp_path, pg_url,
                                                                                      pg_cluster, monkeypatch):
    with Sandbox(latency_ms=60, data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        manifest, rows = write_manifest(tmp_path, n=60, agents=2)
        cfg = team_config(tmp_path, pg_url, lease=20)
        proc = child(manifest, cfg, sb, tmp_path / "cut.csv", "-v")
        assert wait_until(lambda: len(sb.calls()) >= 10, 60)
        pg_cluster.restart()
        code, out = finish(proc)
        assert code in (0, 1), out
        assert "Traceback" not in out
        lines = check_results_file(tmp_path / "cut.csv", rows)
        assert_exactly_once(lines, rows, sb.calls(), allowed={"uploaded", "not_attempted"})
        r = rerun(sb, manifest, cfg, tmp_path / "final.csv")
        assert r.code == 0, r.out + r.err
        assert_exactly_once(check_results_file(tmp_path / "final.csv", rows), rows, sb.calls(),
                            allowed={"uploaded", "already_uploaded"})
        assert len(sb.calls()) == 60


def test_the_network_to_the_database_cut_claims_not_recorded_are_not_sent(tmp_path, pg_url, pg_cluster,
                                                                          monkeypatch):
    from pgkit import CuttableProxy

    proxy = CuttableProxy(pg_cluster.port)
    via_proxy = pg_url.replace(f":{pg_cluster.port}/", f":{proxy.port}/")
    with Sandbox(latency_ms=100, data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        manifest, rows = write_manifest(tmp_path, n=60, agents=2)
        # lease 12 s: a claim waits 3 s for the database, a mark after a request up to 12 s
        cfg = team_config(tmp_path, via_proxy, lease=12)
        proc = child(manifest, cfg, sb, tmp_path / "cut.csv")
        assert wait_until(lambda: len(sb.calls()) >= 8, 60)
        proxy.cut()
        at_cut = len(sb.calls())
        time.sleep(6)
        during = len(sb.calls())
        proxy.restore()
        code, out = finish(proc)
        assert code == 1, out
        assert "STOPPED: the ledger at postgresql://" in out and "did not answer" in out, out
        # Only the requests already in flight when the network went could finish: nothing new was sent.
        assert during - at_cut <= WORKERS
        lines = check_results_file(tmp_path / "cut.csv", rows)
        assert_exactly_once(lines, rows, sb.calls(), allowed={"uploaded", "not_attempted"})
        assert _count(lines, "uploaded") == len(sb.calls())
        not_sent = [x for x in lines if x["import_status"] == "not_attempted"]
        assert not_sent and all("the ledger at postgresql://" in x["import_error"] for x in not_sent)
        # The outcomes it could not write during the cut were written once the database answered again.
        from importer.ledger.postgres import PostgresLedger

        with PostgresLedger(pg_url, sb.url.rstrip("/")) as led:
            counts = led.counts()
            assert counts.pop("uploaded") == len(sb.calls())
            # A claim the database recorded though its answer was lost in the cut was never sent: it is given
            # back as `failed` (safe to send), never left `sending` or turned `unknown`.
            assert set(counts) <= {"failed"} and counts.get("failed", 0) <= WORKERS, counts
            given_back = led._all("SELECT error FROM allobrain_calls WHERE status='failed'", (), what="test")
            assert all(e == "claimed, but the claim could not be confirmed: not sent" for (e,) in given_back)

        r = rerun(sb, manifest, cfg, tmp_path / "final.csv")
        assert r.code == 0, r.out + r.err
        assert_exactly_once(check_results_file(tmp_path / "final.csv", rows), rows, sb.calls(),
                            allowed={"uploaded", "already_uploaded"})
        assert len(sb.calls()) == 60


def test_the_database_password_is_never_printed(tmp_path, pg_url, pg_cluster, sandbox, monkeypatch):
    manifest, _ = write_manifest(tmp_path, n=2, agents=1)
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    log = tmp_path / "run.log"
    # A wrong password: refused by the server; the message names the database, never the password.
    monkeypatch.setenv("PGPASSWORD", "Wrong-Secret-4242")
    r = run_cli("run", manifest, "--config", team_config(tmp_path, pg_url), "--api-url", sandbox.url, "-v",
                "--log-file", log, "--results", tmp_path / "r.csv")
    assert r.code == 2
    assert "cannot use the ledger at postgresql://postgres@127.0.0.1" in r.err
    assert "password authentication failed" in r.err
    # The right one, a whole run with a verbose log: it appears nowhere either.
    monkeypatch.setenv("PGPASSWORD", pg_cluster.password)
    r2 = run_cli("run", manifest, "--config", team_config(tmp_path, pg_url), "--api-url", sandbox.url, "-v",
                 "--log-file", log, "--results", tmp_path / "r2.csv")
    assert r2.code == 0, r2.out + r2.err
    everything = r.out + r.err + r2.out + r2.err + log.read_text() + (tmp_path / "r2.csv").read_text()
    assert "Wrong-Secret-4242" not in everything and pg_cluster.password not in everything
    # In the URL it is refused before anything is opened, and not repeated.
    bad = team_config(tmp_path, pg_url.replace("postgres@", f"postgres:{pg_cluster.password}@"), name="bad.yaml")
    r3 = run_cli("run", manifest, "--config", bad, "--api-url", sandbox.url)
    assert r3.code == 2 and "'ledger.url' carries a password" in r3.err
    assert pg_cluster.password not in r3.out + r3.err


def _earlier_uploads(pg_url: str, api: str, file_size: int, n: int) -> None:
    """What an earlier import leaves in a team ledger: `n` uploads to this campaign of other recordings that
    happen to be the same size as this manifest's (fixed-length clips), written as one bulk statement."""
    import psycopg

    from importer.ledger.postgres import PostgresLedger

    PostgresLedger(pg_url, api).close()  # creates the schema
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO allobrain_calls (api, campaign_id, agent_email, ts, file_name, file_size, status, call_id,"
            " http_status, run_id, fingerprint) SELECT %s, %s, 'earlier@example.com', i, 'old' || i || '.wav', %s,"
            " 'uploaded', md5(i::text), 200, 'an-earlier-run', md5('recording ' || i) FROM generate_series(1, %s) i",
            (api, CAMPAIGN, file_size, n))


def test_a_run_starting_beside_another_begins_uploading_and_shares_the_work(tmp_path, pg_url):
    """The same-recording rule reads the ledger's uploads of a row's size and campaign. It read them once per
    row to send, so a run's plan grew with rows x uploads of that size: with another run filling the ledger
    at once (or an earlier import of clips of one length), a run sat in its plan until the others had done
    everything. Read once per size, it starts at once and takes its share."""
    from importer.safety import canonical_api

    with Sandbox(latency_ms=100, data_dir=tmp_path / "server") as sb:
        manifest, rows = write_manifest(tmp_path, n=300, agents=2)
        sizes = {r.file.stat().st_size for r in rows}
        assert len(sizes) == 1, sizes
        _earlier_uploads(pg_url, canonical_api(sb.url), sizes.pop(), 20000)
        cfg = team_config(tmp_path, pg_url)
        # A colleague's run that skips the rule (so it sends from its first second), and this run, at once.
        other = child(manifest, cfg, sb, tmp_path / "other.csv", "--allow-same-recording")
        mine = child(manifest, cfg, sb, tmp_path / "mine.csv")
        (c1, out1), (c2, out2) = finish(other), finish(mine)
        assert (c1, c2) == (0, 0), out1 + out2
        held = server_fingerprints(sb.calls())
        assert len(sb.calls()) == 300 and set(held.values()) == {1}, "a call reached the sandbox twice"
        theirs, ours = check_results_file(tmp_path / "other.csv", rows), check_results_file(tmp_path / "mine.csv", rows)
        assert _count(theirs, "uploaded") + _count(ours, "uploaded") == 300
        assert _count(ours, "uploaded") > 0, "this run sat in its plan while the other one sent everything"
        # The rows the other run sent are already_uploaded by their own key, never "the same recording".
        assert not [x for x in ours if "same recording" in x["import_error"]]


def test_a_daily_quota_shared_by_three_runs_is_passed_by_at_most_the_uploads_in_flight(tmp_path, pg_url):
    """`upload.max_per_day` holds for the fleet. Each run counted the others' uploads only when it counted the
    ledger again (every 5 s, or when its own uploads neared the quota), so three fast runs could each send
    most of the quota before any of them saw the others. Now every check adds what the other runs uploaded
    since the count and what they are sending: the fleet passes the quota by at most what was in flight."""
    quota = 150
    with Sandbox(data_dir=tmp_path / "server") as sb:
        whole, rows = write_manifest(tmp_path, n=3 * quota, agents=1)
        header, *lines = whole.read_text(encoding="utf-8").splitlines()
        procs = []
        for i in range(3):  # three different manifests, each as long as the whole quota
            part = tmp_path / f"part{i}.csv"
            part.write_text("\n".join([header, *lines[i::3]]) + "\n", encoding="utf-8")
            cfg = team_config(tmp_path, pg_url, max_per_day=quota, name=f"team{i}.yaml")
            procs.append(child(part, cfg, sb, tmp_path / f"r{i}.csv"))
        results = [finish(p) for p in procs]
        assert all(code == 1 for code, _ in results), results
        sent = len(sb.calls())
        assert set(server_fingerprints(sb.calls()).values()) == {1}
        assert quota <= sent <= quota + 3 * WORKERS, f"{sent} uploads for a daily quota of {quota}"
        for i in range(3):
            held = [x for x in read_results(tmp_path / f"r{i}.csv") if x["import_status"] == "not_attempted"]
            assert held and all(x["import_error"].startswith("daily quota reached: ") for x in held)
