"""The `files:` config and the errors that concern a whole store rather than a row."""

from __future__ import annotations

import subprocess
import sys

import pytest
from runkit import REPO, child_env
from test_s3 import manifest

from importer.config import parse_config
from importer.errors import ConfigError
from importer.sources import Sources, scheme_of


@pytest.mark.parametrize(("files", "named"), [
    ({"s3": {"endpoint": "x"}}, "files.s3.endpoint"),
    ({"root": "ftp://host/x"}, "files.root"),
    ({"root": "http://recordings.example.com/"}, "files.root"),
    ({"s3": {"endpoint_url": "http://minio.example.com:9000"}}, "files.s3.endpoint_url"),
    ({"sftp": {"password_env": "hunter2!"}}, "files.sftp.password_env"),
    ({"https": {"headers_env": {"Authorization": "Bearer abc.def"}}}, "files.https.headers_env.Authorization"),
    ({"https": {"headers_env": ["Authorization"]}}, "files.https.headers_env"),
    ({"sftp": {"known_hosts": 3}}, "files.sftp.known_hosts"),
])
def test_bad_files_settings_name_the_key(files, named):
    with pytest.raises(ConfigError) as caught:
        parse_config({"files": files})
    assert named in str(caught.value)


def test_good_files_settings_and_resolution(tmp_path):
    cfg = parse_config({"files": {"root": "s3://calls-archive/connect/acme/CallRecordings",
                                  "s3": {"endpoint_url": "http://127.0.0.1:9000", "region": "eu-west-3"}}})
    assert cfg.files.root == "s3://calls-archive/connect/acme/CallRecordings/"
    sources = Sources(cfg.files)
    assert sources.resolve("2025/11/25/a.wav", [str(tmp_path)]) == \
        "s3://calls-archive/connect/acme/CallRecordings/2025/11/25/a.wav"
    assert sources.resolve(".\\2025\\a.wav", [str(tmp_path)]) == "s3://calls-archive/connect/acme/CallRecordings/2025/a.wav"
    assert sources.resolve("sftp://nas/x.wav", [str(tmp_path)]) == "sftp://nas/x.wav"
    assert sources.resolve("/abs/a.wav", [str(tmp_path)]) == "/abs/a.wav"
    local = Sources(parse_config({"files": {"root": str(tmp_path / "calls")}}).files)
    assert local.resolve("a.wav", ["/elsewhere"]) == str(tmp_path / "calls" / "a.wav")
    assert [scheme_of(x) for x in ("s3://b/k", "C:\\x.wav", "HTTPS://h/a", "a://b")] == ["s3", "file", "https", "file"]


def test_a_missing_extra_is_one_error_naming_the_install(tmp_path):
    """A child process in which boto3 cannot be imported, as on a machine without the [s3] extra."""
    blocked = tmp_path / "blocked" / "boto3"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('boto3 is not installed here')\n")
    m = manifest(tmp_path, [f"s3://calls-archive/x/{i}.wav" for i in range(3)])
    env = child_env("unused") | {"PYTHONPATH": f"{blocked.parent}:{REPO}"}
    done = subprocess.run([sys.executable, "-m", "importer", "validate", str(m)], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == ("error: the manifest has s3:// recordings, but S3 support is not installed: "
                                   "pip install 'allobrain-import[s3]'")
    assert "row " not in done.stdout
