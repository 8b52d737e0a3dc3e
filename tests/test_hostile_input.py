"""Property-based tests (hypothesis) of what users type: CLI options and YAML configs. Every invalid input gets
a one-line error naming the option or setting, never a traceback; every accepted config holds values of the
right type and range."""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import MODEL, write_blobs
from lookalike.cli import build_parser, main
from lookalike.config import CHOICES, MAXIMUM, MINIMUM, SECTIONS, Config, load_config
from lookalike.exceptions import ConfigError

KEYS = sorted({f.name for section in SECTIONS for f in dataclasses.fields(getattr(Config(), section))})
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["fp32", "bf16", "auto", "clip:ViT-B-32", "0", "-1", ""]),
    st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
SETTINGS = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers()), VALUES, max_size=4)
CONFIGS = st.dictionaries(st.one_of(st.sampled_from(SECTIONS), st.text(max_size=8), st.integers()),
                          st.one_of(SETTINGS, VALUES), max_size=3)
# Derandomized: CI runs the same examples each time (a new one found by chance would fail an unrelated
# submission); to explore others, drop derandomize and run `pytest --hypothesis-seed=N` (ten seeds passed).
QUICK = settings(max_examples=150, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid(config: Config) -> None:
    """Every setting of an accepted config has its declared type and range."""
    for section in SECTIONS:
        part = getattr(config, section)
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if value is None:
                assert "None" in str(f.type), f.name
                continue
            if str(f.type) == "bool":
                assert isinstance(value, bool), f.name
                continue
            assert not isinstance(value, bool), f.name
            if "int" in str(f.type):
                assert isinstance(value, int) and value >= MINIMUM.get(f.name, -(10**9)), f.name
            elif "float" in str(f.type):
                assert isinstance(value, float) and math.isfinite(value), f.name
                assert MINIMUM.get(f.name, -math.inf) <= value <= MAXIMUM.get(f.name, math.inf), f.name
            elif "list" in str(f.type):
                assert all(isinstance(v, str) for v in value), f.name
            else:
                assert isinstance(value, str) and value.strip(), f.name
                assert value in CHOICES.get((section, f.name), (value,)), f.name


@QUICK
@given(data=CONFIGS)
def test_any_yaml_config_loads_valid_or_is_refused_in_one_line_naming_the_setting(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        config = load_config(path)
    except ConfigError as e:
        message = str(e)
        assert "\n" not in message
        named = [str(s) for s in data] + [f"{s}.{k}" for s, v in data.items() if isinstance(v, dict) for k in v]
        assert any(repr(n) in message or n in message for n in named) or "mapping" in message, message
        return
    _valid(config)


@QUICK
@given(text=st.text(max_size=80))
def test_any_text_as_a_config_file_is_loaded_or_refused_in_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    try:
        _valid(load_config(path))
    except ConfigError as e:
        assert "\n" not in str(e) and str(path) in str(e)


def test_a_bad_config_through_the_cli_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("embed:\n  batch_size: lots\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}: embed.batch_size must be a int, got 'lots'"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small embedded dataset the commands run on."""
    import fiftyone as fo

    from lookalike import embed, load

    root = tmp_path_factory.mktemp("shop")
    for split, seed in (("train", 1), ("test", 2)):
        for colour in ("red", "blue"):
            write_blobs(root / split / colour, colour, 4, seed)
    name = "t-hostile-shop"
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    load(root, name=name)
    embed(name, MODEL)
    yield name
    fo.delete_dataset(name)


COMMANDS = ["similar", "mislabels", "duplicates", "quality", "outliers", "evaluate", "embed"]
SKIPPED = {"--help", "-h", "--qdrant-url", "--qdrant-api-key", "--rebuild", "--vectors", "--from-field", "--ids",
           "--engine", "--ray-address"}  # a Ray cluster started per example: test_ray covers them
ARGUMENT = st.one_of(st.sampled_from(["-1", "0", "1", "3", "0.5", "1e9", "nan", "", "red", "train", "x" * 30]),
                     st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
                              max_size=8), st.integers(-5, 50).map(str))


def _options(command: str) -> list[argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[command]._actions if a.option_strings and not set(a.option_strings) & SKIPPED]


@st.composite
def command_lines(draw: st.DrawFn, name: str) -> list[str]:
    command = draw(st.sampled_from(COMMANDS))
    argv = [command, draw(st.sampled_from([name, name, "no-such-dataset"]))]
    for action in draw(st.lists(st.sampled_from(_options(command)), max_size=4, unique_by=lambda a: a.dest)):
        argv.append(draw(st.sampled_from(action.option_strings)))
        if action.nargs != 0:
            argv.append(draw(ARGUMENT))
    if command == "embed" and "--model" not in argv:
        argv += ["--model", MODEL]
    return argv


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_command_line_runs_or_fails_in_one_line_naming_what_was_wrong(
        shop: str, data: st.DataObject, capsys: pytest.CaptureFixture[str]) -> None:
    argv = data.draw(command_lines(shop))
    try:
        code = main(argv)  # anything but a LookalikeError or argparse's exit escapes here: the test fails
    except SystemExit as e:  # argparse: a malformed command line
        code = int(e.code or 0)
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    if code == 0:
        return
    errors = [line for line in out.err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1, (argv, out.err)
    words = {re.sub(r"^-+", "", w).replace("-", "_") for w in argv[2:] if w.startswith("-")}
    named = words | {w.replace("_", "-") for w in words} | {"no-such-dataset", "query", "argument", "model"}
    assert any(n and n in errors[0] for n in named), (argv, errors[0])
