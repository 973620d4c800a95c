"""The paper-protocol harness at toy scale on real CIFAR-10, so that it cannot rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from conftest import DATA_DIR

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"


def load_harness():
    spec = importlib.util.spec_from_file_location("reproduce", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_toy_paper_protocol_writes_consistent_outputs(tmp_path):
    harness = load_harness()
    record = harness.main([
        "--protocol", "toy", "--data", str(DATA_DIR / "cifar10.npz"),
        "--selectors", "Entropy", "GraphCut", "--output", str(tmp_path),
    ])
    assert record["n_train"] == 200 and record["n_test"] == 100
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["results"]) == {"RandomSelector", "Entropy", "GraphCut"}  # Random added
    table = (tmp_path / "table.md").read_text()
    for name, by_fraction in saved["results"].items():
        cell = by_fraction["0.1"]
        assert np.isclose(cell["mean"], np.mean(cell["scores"]))  # summary = its seeds
        assert 0.0 <= cell["mean"] <= 100.0
        assert f"| {name} | {cell['mean']:.1f} ± {cell['std']:.1f} |" in table
    assert (tmp_path / "accuracy.png").stat().st_size > 10_000


def test_paper_column_and_difference_at_one_percent():
    harness = load_harness()
    rows = {"RandomSelector": {0.01: {"mean": 40.0, "std": 1.0}},
            "Moderate": {0.01: {"mean": 30.0, "std": 2.0}}}
    table = harness.markdown_table(rows, [0.01])
    assert "| RandomSelector | 40.0 ± 1.0 | 36.7 | +3.3 |" in table
    assert "| Moderate | 30.0 ± 2.0 | — | — |" in table
