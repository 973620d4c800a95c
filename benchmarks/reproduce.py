"""Reproduce the DeepCore paper's CIFAR-10 comparison through CoresetCV.

Protocols (``--protocol``):

``paper``
    DeepCore Table 1: ResNet-18, proxy trained 10 epochs (constant LR), coreset training 200
    epochs, batch 128, SGD lr 0.1 with a cosine schedule, balanced selection, 5 seeds, scored
    on the 10,000 test images. Needs a GPU to finish in reasonable time.
``cpu``
    A protocol sized for 2 CPU cores (under 90 minutes): a stratified pool of 10,000 CIFAR-10
    training images, LeNet as proxy (10 epochs) and as trainer, fractions 0.01, 0.05, 0.1,
    0.2, 0.3, 3 seeds, every registered selector, scored on the 10,000 test images.
``toy``
    The paper protocol at toy scale (a few hundred images, 1 epoch), run in CI so the harness
    cannot rot.

Outputs, under ``--output``: ``results.json`` (every cell and the settings), ``table.md``
(mean ± std accuracy per selector and fraction, the paper's 1% figure and the difference
beside it) and ``accuracy.png`` (accuracy against fraction, as the paper's Fig. 1).

Example::

    python benchmarks/reproduce.py --protocol cpu --data ../shared/data/cifar10.npz \\
        --output benchmarks/results/cpu_protocol
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

# DeepCore Table 1, CIFAR-10, ResNet-18, 1% of the data (mean of 5 seeds); METHODS.md.
PAPER_1PCT = {
    "RandomSelector": 36.7, "GraphCut": 42.8, "FacilityLocation": 38.9, "Cal": 37.8,
    "Herding": 34.8, "KCenterGreedy": 31.1, "Forgetting": 35.2, "Glister": 32.9,
    "Craig": 31.7, "GradMatch": 30.8, "Margin": 28.2, "DeepFool": 27.6, "GraNd": 26.7,
    "ContextualDiversity": 23.6, "Entropy": 21.1, "LeastConfidence": 19.8,
}

PROTOCOLS = {
    "paper": dict(model="resnet18", pool=None, proxy_epochs=10, epochs=200, batch_size=128,
                  lr=0.1, seeds=5, fractions=[0.01], test=None),
    "cpu": dict(model="lenet", pool=10_000, proxy_epochs=10, epochs=30, batch_size=64,
                lr=0.05, seeds=3, fractions=[0.01, 0.05, 0.1, 0.2, 0.3], test=None),
    "toy": dict(model="resnet18", pool=200, proxy_epochs=1, epochs=1, batch_size=64,
                lr=0.1, seeds=1, fractions=[0.1], test=100),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    p.add_argument("--data", default="../shared/data/cifar10.npz",
                   help="CIFAR-10 as an .npz (X_train/y_train/X_test/y_test) or a torchvision root")
    p.add_argument("--selectors", nargs="*", default=None,
                   help="registry names (default: every registered selector)")
    p.add_argument("--fractions", nargs="*", type=float, default=None)
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (0, 1, ...)")
    p.add_argument("--epochs", type=int, default=None, help="coreset training epochs")
    p.add_argument("--proxy-epochs", type=int, default=None)
    p.add_argument("--model", default=None, help="architecture of proxy and trainer")
    p.add_argument("--pool", type=int, default=None, help="training pool size (stratified)")
    p.add_argument("--test", type=int, default=None, help="test set size (stratified subset)")
    p.add_argument("--device", default="auto")
    p.add_argument("--n-jobs", type=int, default=None)
    p.add_argument("--output", default="benchmarks/results/reproduce")
    p.add_argument("--checkpoint", default=None, help="directory to resume an interrupted run")
    p.add_argument("--from-json", default=None,
                   help="only re-render table.md and accuracy.png from this results.json")
    return p.parse_args(argv)


def settings_from(args):
    s = dict(PROTOCOLS[args.protocol])
    for key in ("fractions", "seeds", "epochs", "proxy_epochs", "model", "pool", "test"):
        value = getattr(args, key)
        if value is not None:
            s[key] = value
    s["protocol"], s["data"], s["device"] = args.protocol, args.data, args.device
    return s


def load_cifar(path, pool, test, seed=0):
    """CIFAR-10 train pool (stratified subset of ``pool`` rows) and test set."""
    from sklearn.model_selection import train_test_split

    from sk_coreset.datasets import load_dataset

    data = load_dataset(path) if str(path).endswith(".npz") else load_dataset("cifar10", root=path)
    X, y, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
    if pool is not None and pool < len(y):
        X, _, y, _ = train_test_split(X, y, train_size=pool, stratify=y, random_state=seed)
    if test is not None and test < len(y_test):
        X_test, _, y_test, _ = train_test_split(X_test, y_test, train_size=test,
                                                stratify=y_test, random_state=seed)
    return X, y, X_test, y_test


def build_search(s, selectors, n_jobs=None, checkpoint=None):
    from sk_coreset import CoresetCV, NetClassifier, NetFeaturizer

    featurizer = NetFeaturizer(module=s["model"], max_epochs=s["proxy_epochs"],
                               batch_size=s["batch_size"], lr=s["lr"], device=s["device"])
    trainer = NetClassifier(module=s["model"], max_epochs=s["epochs"],
                            batch_size=s["batch_size"], lr=s["lr"], device=s["device"])
    return CoresetCV(trainer, fractions=s["fractions"], selectors=selectors,
                     featurizer=featurizer, seeds=list(range(s["seeds"])),
                     n_jobs=n_jobs, checkpoint=checkpoint, verbose=1)


def summarise(search, fractions):
    """Per selector and fraction: mean and std accuracy (%) over seeds, selection seconds."""
    res = search.cv_results_
    rows = {}
    n_cols = search.n_splits_
    for i, params in enumerate(res["params"]):
        scores = np.array([res[f"split{j}_test_score"][i] for j in range(n_cols)]) * 100
        rows.setdefault(params["selector"], {})[params["fraction"]] = {
            "mean": float(scores.mean()), "std": float(scores.std()),
            "select_seconds": float(res["mean_select_time"][i]),
            "scores": scores.tolist(),
        }
    return rows


def markdown_table(rows, fractions):
    head = ["selector"] + [f"{f:g}" for f in fractions]
    one_pct = 0.01 in fractions
    if one_pct:
        head += ["paper 1%", "diff at 1%"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(rows, key=lambda r: -rows[r][fractions[0]]["mean"])
    for name in order:
        cells = [name] + [f"{rows[name][f]['mean']:.1f} ± {rows[name][f]['std']:.1f}"
                          for f in fractions]
        if one_pct:
            paper = PAPER_1PCT.get(name)
            ours = rows[name][0.01]["mean"]
            cells += ["—" if paper is None else f"{paper:.1f}",
                      "—" if paper is None else f"{ours - paper:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.from_json is not None:
        record = json.loads(Path(args.from_json).read_text())
        write_report(record, Path(args.from_json).parent)
        return record
    s = settings_from(args)
    from sk_coreset.selectors import available_selectors, make_selector

    names = args.selectors or available_selectors()
    selectors = [type(make_selector(name)).__name__ for name in names]
    if "RandomSelector" not in selectors:
        selectors = ["RandomSelector", *selectors]  # the baseline is always on
    X, y, X_test, y_test = load_cifar(args.data, s["pool"], s["test"])
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    search = build_search(s, selectors, args.n_jobs, args.checkpoint)
    search.set_params(test_set=(X_test, y_test))
    start = time.perf_counter()
    search.fit(X, y)
    seconds = time.perf_counter() - start

    rows = summarise(search, s["fractions"])
    record = {"settings": s, "selectors": selectors, "seconds": seconds,
              "n_train": int(len(y)), "n_test": int(len(y_test)),
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "machine": platform.platform(), "results": rows}
    (out / "results.json").write_text(json.dumps(record, indent=2))
    write_report(record, out)
    return record


def write_report(record, out: Path):
    """``table.md`` and ``accuracy.png`` from a results record (as in ``results.json``)."""
    s, rows = record["settings"], record["results"]
    fractions = s["fractions"]
    rows = {name: {float(f): cell for f, cell in by_f.items()} for name, by_f in rows.items()}
    table = markdown_table(rows, fractions)
    versus = versus_random_table(rows, fractions)
    (out / "table.md").write_text(
        f"Protocol `{s['protocol']}`: {record['n_train']} training images, "
        f"{record['n_test']} test images, model {s['model']}, proxy {s['proxy_epochs']} epochs, "
        f"training {s['epochs']} epochs, {s['seeds']} seed(s); accuracy in % (mean ± std over "
        f"seeds); {record['seconds'] / 60:.1f} min.\n\n" + table
        + ("" if versus is None else
           "\nDifference from `RandomSelector` in points, paired by seed (same proxy, same "
           "training seed); **bold** where every seed is above random, _italic_ where every "
           "seed is below.\n\n" + versus)
    )
    plot_record(rows).figure.savefig(out / "accuracy.png", dpi=120, bbox_inches="tight")
    print(table)
    print(f"wrote {out}/results.json, table.md, accuracy.png ({record['seconds'] / 60:.1f} min)")


def versus_random_table(rows, fractions):
    """Per selector and fraction: mean ± std over seeds of (accuracy - random accuracy)."""
    if "RandomSelector" not in rows:
        return None
    base = rows["RandomSelector"]
    lines = ["| selector | " + " | ".join(f"{f:g}" for f in fractions) + " |",
             "|" + "---|" * (len(fractions) + 1)]
    for name in sorted(rows, key=lambda r: -np.mean(
            [rows[r][f]["mean"] - base[f]["mean"] for f in fractions])):
        if name == "RandomSelector":
            continue
        cells = []
        for f in fractions:
            d = np.array(rows[name][f]["scores"]) - np.array(base[f]["scores"])
            text = f"{d.mean():+.1f} ± {d.std():.1f}"
            if len(d) > 1 and (d > 0).all():
                text = f"**{text}**"
            elif len(d) > 1 and (d < 0).all():
                text = f"_{text}_"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_record(rows):
    from sk_coreset.plotting import plot_fraction_curves

    res = {"param_selector": [], "param_fraction": [], "mean_test_score": [],
           "std_test_score": [], "mean_select_time": []}
    for name, by_f in rows.items():
        for f, cell in by_f.items():
            res["param_selector"].append(name)
            res["param_fraction"].append(f)
            res["mean_test_score"].append(cell["mean"] / 100)
            res["std_test_score"].append(cell["std"] / 100)
            res["mean_select_time"].append(cell["select_seconds"])
    return plot_fraction_curves(res)

if __name__ == "__main__":
    main()
