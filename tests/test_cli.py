from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lookalike.cli import main


def test_load_embed_similar_json(tree: Path, dataset_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", str(tree), "--name", dataset_name]) == 0
    assert "17 samples" in capsys.readouterr().out
    assert main(["embed", dataset_name, "--model", "random-tiny-clip"]) == 0
    out, err = capsys.readouterr()
    assert "16/17 samples embedded" in out and "corrupt.png" in err

    query = str(tree / "train" / "blue" / "blue-21-0.png")
    assert main(["similar", dataset_name, "--image", query, "-k", "4", "--split", "train", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4
    assert {"id", "filepath", "label", "score"} <= set(rows[0])
    assert rows[0]["filepath"] == query and rows[0]["label"] == "blue"
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert {r["split"] for r in rows} == {"train"}

    assert main(["similar", dataset_name, "--sample", rows[0]["id"], "-k", "2"]) == 0
    table = capsys.readouterr().out
    assert "score" in table and "lookalike-similar" in table

    assert main(["similar", dataset_name, "--like", rows[0]["id"], "--unlike", rows[1]["id"], "--json"]) == 0
    liked = json.loads(capsys.readouterr().out)
    assert rows[0]["id"] not in {r["id"] for r in liked} and rows[1]["id"] not in {r["id"] for r in liked}

    npy = tree.parent / "vectors.npy"
    assert main(["embeddings", dataset_name, "--out", str(npy)]) == 0
    vectors = np.load(npy)
    ids = json.loads(npy.with_suffix(".ids.json").read_text())
    assert vectors.shape == (16, 64) and len(ids) == 16  # the corrupt file has no vector
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    query_row = vectors[ids.index(rows[0]["id"])]
    best = ids[int(np.argmax(np.where(np.array(ids) == rows[0]["id"], -2, vectors @ query_row)))]
    assert best == rows[1]["id"]  # the exported vectors give the same nearest neighbour as Qdrant


def test_errors_exit_2_with_a_message(dataset_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["similar", "no-such-dataset", "--text", "x"]) == 2
    assert "no FiftyOne dataset named 'no-such-dataset'" in capsys.readouterr().err
    assert main(["embed", "no-such-dataset", "--model", "nope"]) == 2
    assert main(["embed", "x", "--model", "random-tiny-clip", "--qdrant-url", "http://127.0.0.1:9"]) == 2
    assert "error:" in capsys.readouterr().err


def test_unreachable_server_is_named(tree: Path, dataset_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["load", str(tree / "test"), "--name", dataset_name])
    assert main(["embed", dataset_name, "--model", "random-tiny-clip", "--qdrant-url", "http://127.0.0.1:9"]) == 2
    assert "http://127.0.0.1:9" in capsys.readouterr().err


def test_help_and_models(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "similar" in capsys.readouterr().out
    assert main(["models"]) == 0
    assert "efficientnet-lite0" in capsys.readouterr().out
