"""config.yaml: every key, defaults, unknown keys and bad values named, flags override."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer.config import Config, load_config, parse_config
from importer.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_loads_with_every_documented_key():
    cfg = load_config(REPO / "config.yaml")
    assert cfg.api.base_url == "https://api.qm.allobrain.com"
    assert cfg.manifest.timezone == "Europe/Paris"
    assert cfg.metadata.phone_columns == ("client_phone",)
    assert cfg.upload.workers == "auto" and cfg.upload.max_workers == 32 and cfg.upload.max_attempts == 6
    assert cfg.metadata.include is None  # "all"


def test_defaults_without_a_file(tmp_path):
    cfg = load_config(None, cwd=tmp_path)
    assert cfg == Config()
    assert cfg.manifest.timezone == "UTC"


def test_config_yaml_in_the_current_folder_is_used(tmp_path):
    (tmp_path / "config.yaml").write_text("upload:\n  workers: 3\n")
    assert load_config(None, cwd=tmp_path).upload.workers == 3


def test_missing_config_path_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("uplod:\n  workers: 2\n", "unknown key 'uplod'"),
        ("upload:\n  wrokers: 2\n", "unknown key 'upload.wrokers'"),
        ("upload:\n  workers: many\n", "'upload.workers' must be auto or a whole number .got 'many'."),
        ("upload:\n  workers: 0\n", "'upload.workers' must be auto or a whole number from 1 to 64"),
        ("upload:\n  max_workers: 100\n", "'upload.max_workers' must be a whole number from 1 to 64"),
        ("upload:\n  ride_out_seconds: -1\n", "'upload.ride_out_seconds' must be 0"),
        ("upload:\n  retry_unknown: yes please\n", "'upload.retry_unknown' must be true or false"),
        ("manifest:\n  delimiter: '|'\n", "'manifest.delimiter' must be one of auto"),
        ("manifest:\n  encoding: ebcdic\n", "'manifest.encoding' must be one of"),
        ("manifest:\n  timezone: Mars/Olympus\n", "'manifest.timezone' is not a known time zone"),
        ("metadata:\n  default_region: XX\n", "'metadata.default_region' is not a known region"),
        ("metadata:\n  rename: [a, b]\n", "'metadata.rename' must map"),
        ("api: [1, 2]\n", "'api' must be a mapping"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("api:\n  base_url: ''\n", "'api.base_url' must be non-empty text"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, message):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("|", r"\|")) as exc:
        load_config(p)
    assert str(p) in str(exc.value)


def test_invalid_yaml_is_reported(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("api: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_values_are_coerced():
    cfg = parse_config({
        "campaign_id": 12345,
        "manifest": {"delimiter": "tab", "encoding": "CP1252"},
        "metadata": {"include": ["site"], "rename": {"site": "Site"}, "phone_columns": "client_phone"},
        "upload": {"max_per_second": 5, "timeout_seconds": 30},
    })
    assert cfg.campaign_id == "12345"
    assert cfg.manifest.delimiter == "\t" and cfg.manifest.encoding == "cp1252"
    assert cfg.metadata.include == ("site",) and cfg.metadata.rename_map == {"site": "Site"}
    assert cfg.metadata.phone_columns == ("client_phone",)
    assert cfg.upload.max_per_second == 5.0


def test_flags_override_config_and_none_means_not_given():
    cfg = parse_config({"upload": {"workers": 4}, "campaign_id": "abc"})
    out = cfg.with_overrides(**{"upload.workers": 12, "campaign_id": None, "api.base_url": "http://127.0.0.1:9"})
    assert out.upload.workers == 12
    assert out.campaign_id == "abc"
    assert out.api.base_url == "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match="upload.workers"):
        cfg.with_overrides(**{"upload.workers": 0})
