from pathlib import Path

import pytest

from lookalike.config import load_config
from lookalike.exceptions import ConfigError


def test_defaults_then_file_then_environment_then_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("embed:\n  model: clip:RN50\n  batch_size: 8\nindex:\n  url: http://file:6333\n")
    assert load_config().embed.batch_size == 32
    c = load_config(f)
    assert (c.embed.model, c.embed.batch_size, c.index.url) == ("clip:RN50", 8, "http://file:6333")
    monkeypatch.setenv("LOOKALIKE_BATCH_SIZE", "16")
    monkeypatch.setenv("LOOKALIKE_QDRANT_URL", "http://env:6333")
    c = load_config(f)
    assert (c.embed.model, c.embed.batch_size, c.index.url) == ("clip:RN50", 16, "http://env:6333")
    c = load_config(f, {"embed": {"batch_size": 4, "model": None}})
    assert (c.embed.model, c.embed.batch_size) == ("clip:RN50", 4)


def test_bad_files_and_values_say_what_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    f = tmp_path / "bad.yaml"
    f.write_text("embed:\n  modle: x\n")
    with pytest.raises(ConfigError, match=r"unknown setting embed\.modle"):
        load_config(f)
    f.write_text("embedding:\n  model: x\n")
    with pytest.raises(ConfigError, match="unknown section 'embedding'"):
        load_config(f)
    monkeypatch.setenv("LOOKALIKE_BATCH_SIZE", "many")
    with pytest.raises(ConfigError, match="LOOKALIKE_BATCH_SIZE"):
        load_config()


def test_api_key_stays_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_QDRANT_API_KEY", "s3cret")
    c = load_config()
    assert c.index.api_key == "s3cret"
    assert "s3cret" not in repr(c)


def test_shipped_configs_parse() -> None:
    root = Path(__file__).parents[1] / "configs"
    for name in ("demo.yaml", "clip.yaml", "qdrant-server.yaml"):
        load_config(root / name)


def test_stored_server_urls_carry_no_credentials() -> None:
    from lookalike.runs import public_url

    assert public_url("https://user:s3cret@qdrant.example:6333/base?api-key=s3cret") == "https://qdrant.example:6333/base"
    assert public_url(None) is None
