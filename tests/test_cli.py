"""The ``sk-coreset`` command line.

Oracles: the flag list of the DeepCore command line; the registry for ``--selection all``;
for the end-to-end runs, a Uniform cell recomputed by hand (RandomSelector + NetClassifier
with the flags' settings) and the JSON cells averaged with numpy.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch

from sk_coreset.cli import build_parser, build_selectors, main
from sk_coreset.datasets import load_dataset
from sk_coreset.selectors import RandomSelector, available_selectors
from sk_coreset.trainer import NetClassifier

PAPER_FLAGS = [
    "--dataset", "--data-path", "--model", "--selection", "--fraction", "--epochs",
    "--selection-epochs", "--seeds", "--balance", "--no-balance", "--batch-size", "--lr",
    "--optimizer", "--scheduler", "--uncertainty", "--submodular", "--submodular-greedy",
    "--output", "--device",
]


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", ["demo", "run"])
def test_every_flag_exists_and_has_help(command):
    sub = subparsers()[command]
    flags = {opt: a for a in sub._actions for opt in a.option_strings}
    for flag in PAPER_FLAGS:
        assert flag in flags, flag
    for action in sub._actions:
        assert action.help and action.help.strip(), action.option_strings


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--submodular-greedy" in text and "--selection-epochs" in text


def test_selection_names_map_like_the_paper():
    args = build_parser().parse_args([
        "run", "--selection", "Uncertainty", "Submodular", "kCenterGreedy",
        "--uncertainty", "Margin", "--submodular", "FacilityLocation",
        "--submodular-greedy", "StochasticGreedy", "--no-balance",
    ])
    selectors = build_selectors(args)
    kinds = [type(s).__name__ for s in selectors.values()]
    assert kinds == ["Margin", "FacilityLocation", "KCenterGreedy"]
    assert selectors["FacilityLocation"].optimizer == "stochastic"
    assert all(s.balance is False for s in selectors.values())


def test_demo_defaults_cover_every_registered_selector():
    args = build_parser().parse_args(["demo"])
    kinds = [type(s).__name__ for s in build_selectors(args).values()]
    assert kinds == available_selectors()
    assert args.fraction == [0.05, 0.1, 0.2, 0.5] and args.seeds == [0, 1, 2]
    assert args.dataset == "digits" and args.device == "cpu"


def test_unknown_selection_is_reported(capsys):
    assert main(["demo", "--selection", "NoSuchMethod"]) == 2
    assert "Unknown selector" in capsys.readouterr().err


def test_missing_dataset_is_reported(tmp_path, capsys):
    assert main(["run", "--dataset", "CIFAR10", "--data-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sk-coreset: error:") and "CIFAR10" in err


def test_bad_fraction_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--fraction", "1.5"])
    assert "(0, 1]" in capsys.readouterr().err


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--selection", "Uniform", "Entropy", "--fraction", "0.1", "0.5",
               "--seeds", "0", "1", "--epochs", "2", "--selection-epochs", "2",
               "--lr", "0.05", "--batch-size", "64", "--max-samples", "300",
               "--output", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Uniform" in printed and "Entropy" in printed and "10%" in printed

    table = pd.read_csv(out / "results.csv")
    assert len(table) == 4 and set(table["param_selector"]) == {"Uniform", "Entropy"}
    record = json.loads((out / "results.json").read_text())
    cells = pd.DataFrame(record["cells"])
    assert len(cells) == 2 * 2 * 2
    means = cells.groupby(["selector", "fraction"])["test_score"].mean()
    for _, row in table.iterrows():
        assert row["mean_test_score"] == pytest.approx(
            means[(row["param_selector"], row["param_fraction"])])

    # oracle: the Uniform cell at 10%, seed 1, rebuilt from the flags by hand
    X, y, X_test, y_test = load_dataset("digits")
    X, y = X[:300], y[:300]
    idx = RandomSelector(0.1, random_state=1).fit(X, y).sample_indices_
    net = NetClassifier("mlp", max_epochs=2, lr=0.05, batch_size=64, optimizer=torch.optim.SGD,
                        schedule="cosine", device="cpu", random_state=1).fit(X[idx], y[idx])
    cell = cells[(cells.selector == "Uniform") & (cells.fraction == 0.1) & (cells.seed == 1)]
    assert cell["test_score"].item() == net.score(X_test, y_test)

    import matplotlib.image

    image = matplotlib.image.imread(out / "accuracy.png")
    assert image.shape[0] > 300 and image.shape[1] > 400
    assert np.ptp(image[..., :3]) > 0.5  # not a blank canvas


def test_run_end_to_end(tmp_path):
    out = tmp_path / "run"
    rc = main(["run", "--dataset", "digits", "--data-path", str(tmp_path), "--model", "mlp",
               "--selection", "Uncertainty", "--uncertainty", "LeastConfidence",
               "--fraction", "0.2", "--seeds", "0", "--epochs", "2",
               "--selection-epochs", "2", "--batch-size", "32", "--lr", "0.01",
               "--optimizer", "Adam", "--scheduler", "constant", "--device", "cpu",
               "--max-samples", "200", "--output", str(out), "--quiet"])
    assert rc == 0
    record = json.loads((out / "results.json").read_text())
    assert record["config"]["optimizer"] == "Adam"
    assert record["best_params"] == {"selector": "LeastConfidence", "fraction": 0.2}
    assert record["cells"][0]["n_selected"] == 40
    assert (out / "accuracy.png").stat().st_size > 0
