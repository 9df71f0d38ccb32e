"""MovieLens 100K: deepzen's recommenders side by side with scikit-surprise, fold by fold.

For each of the u1..u5 folds and each algorithm, both libraries fit on ``uN.base`` and predict
``uN.test`` in the same process, the two runs of a pair interleaved (their order alternates from
one repetition to the next). The table gives RMSE and MAE averaged over the folds (± the std over
folds, ``np.std``) and the median fit + predict seconds per fold; speedup = surprise's median /
deepzen's. Building surprise's ``Trainset`` and reading the files are not timed for either; one
untimed warm-up pair runs first. scikit-surprise is single-threaded; deepzen uses torch's threads
(``--threads``), except that MatrixFactorization's SGD loop always runs on one thread.

    DEEPZEN_DATA=../shared/data python benchmarks/recommenders.py
    python benchmarks/recommenders.py --folds u1 --algorithms mf   # a quick look

Needs ``pip install scikit-surprise`` (a benchmark-only peer). Prints a Markdown table and writes it
to ``benchmarks/results/recommenders.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "recommenders.md"
FOLDS = ("u1", "u2", "u3", "u4", "u5")


def algorithms():
    """name -> (label, deepzen factory, surprise factory), same settings on both sides."""
    import surprise

    from deepzen.recommend import KNN, MatrixFactorization

    def knn_pair(centering, user_based, similarity="msd"):
        surprise_class = {"none": surprise.KNNBasic, "mean": surprise.KNNWithMeans,
                          "baseline": surprise.KNNBaseline}[centering]
        label = (f"{surprise_class.__name__}, {'user' if user_based else 'item'}-based, {similarity}, k=40")
        return (label,
                lambda: KNN(40, similarity, user_based=user_based, centering=centering),
                lambda: surprise_class(k=40, min_k=1, sim_options={"name": similarity, "user_based": user_based,
                                                                   "min_support": 1}, verbose=False))

    return {
        "basic-user": knn_pair("none", True),
        "basic-item": knn_pair("none", False),
        "means-user": knn_pair("mean", True),
        "means-item": knn_pair("mean", False),
        "baseline-item": knn_pair("baseline", False, "pearson_baseline"),
        "mf": ("biased MF: deepzen MatrixFactorization (32 factors, 6 epochs) vs surprise SVD (100 factors, 20 epochs)",
               lambda: MatrixFactorization(), lambda: surprise.SVD(random_state=0)),
    }


def load_fold(fold: str, folder: Path):
    """The fold for both libraries: deepzen Ratings and surprise's (trainset, testset)."""
    from surprise import Dataset, Reader
    from surprise.model_selection import PredefinedKFold

    from deepzen.data.ratings import load_movielens_100k

    train, test, _ = load_movielens_100k(folder, fold)
    reader = Reader(line_format="user item rating timestamp", sep="\t", rating_scale=(1, 5))
    data = Dataset.load_from_folds([(str(folder / f"{fold}.base"), str(folder / f"{fold}.test"))], reader)
    trainset, testset = next(PredefinedKFold().split(data))
    return train, test, trainset, testset


def run_deepzen(make_model, train, test) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    predictions = make_model().fit(train).predict(test.user, test.item)  # ends with a host copy
    return predictions.astype(np.float64), time.perf_counter() - start


def run_surprise(make_model, trainset, testset) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    algorithm = make_model()
    algorithm.fit(trainset)
    predictions = algorithm.test(testset)
    seconds = time.perf_counter() - start
    return np.array([p.est for p in predictions]), seconds


def errors(predictions: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    error = predictions - truth
    return float(np.sqrt(np.mean(error ** 2))), float(np.mean(np.abs(error)))


def table(results: dict) -> str:
    lines = ["| algorithm | RMSE deepzen | RMSE surprise | MAE deepzen | MAE surprise | s/fold deepzen "
             "| s/fold surprise | speedup |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, sides in results.items():
        cells = []
        for metric in ("rmse", "mae"):
            for side in ("deepzen", "surprise"):
                values = [fold[metric] for fold in sides[side]]
                cells.append(f"{np.mean(values):.4f} ± {np.std(values):.4f}")
        seconds = {side: float(np.median([s for fold in sides[side] for s in fold["seconds"]]))
                   for side in ("deepzen", "surprise")}
        lines.append(f"| {label} | {' | '.join(cells)} | {seconds['deepzen']:.3f} | {seconds['surprise']:.3f} | "
                     f"{seconds['surprise'] / seconds['deepzen']:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", default=",".join(FOLDS))
    parser.add_argument("--algorithms", default="basic-user,basic-item,means-user,means-item,baseline-item,mf")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per fold and side (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--data", type=Path, default=None, help="the ml-100k folder (default $DEEPZEN_DATA/ml-100k)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import surprise

    from deepzen.data.paths import dataset_files

    folder = args.data or dataset_files("ml-100k", ["u1.base"])["u1.base"].parent
    chosen = {name: spec for name, spec in algorithms().items() if name in args.algorithms.split(",")}
    folds = {fold: load_fold(fold, folder) for fold in args.folds.split(",")}
    load_before = os.getloadavg()[0]

    first = next(iter(folds.values()))  # warm-up: imports, allocator, lazy initialisation
    for _, make_deepzen, make_surprise in chosen.values():
        run_deepzen(make_deepzen, first[0], first[1])
        run_surprise(make_surprise, first[2], first[3])

    results = {}
    for label, make_deepzen, make_surprise in chosen.values():
        sides = {"deepzen": [], "surprise": []}
        for fold, (train, test, trainset, testset) in folds.items():
            runs = {"deepzen": [], "surprise": []}
            for repeat in range(args.repeats):
                order = ("deepzen", "surprise") if repeat % 2 == 0 else ("surprise", "deepzen")
                for side in order:
                    if side == "deepzen":
                        predictions, seconds = run_deepzen(make_deepzen, train, test)
                        truth = test.rating
                    else:
                        predictions, seconds = run_surprise(make_surprise, trainset, testset)
                        truth = np.array([r for _, _, r in testset])
                    runs[side].append((predictions, truth, seconds))
            for side, side_runs in runs.items():
                rmse, mae = errors(*side_runs[0][:2])  # the runs are deterministic (seeded)
                sides[side].append({"fold": fold, "rmse": rmse, "mae": mae, "seconds": [s for _, _, s in side_runs]})
            print(f"{label} {fold}: " + ", ".join(
                f"{side} rmse {sides[side][-1]['rmse']:.4f} {np.median(sides[side][-1]['seconds']):.3f}s"
                for side in sides), flush=True)
        results[label] = sides

    load_after = os.getloadavg()[0]
    text = table(results)
    command = "python benchmarks/recommenders.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"# MovieLens 100K: deepzen.recommend vs scikit-surprise\n\n"
              f"`{command.strip()}` on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"torch {torch.__version__} ({torch.get_num_threads()} threads), scikit-surprise "
              f"{surprise.__version__}, Python {platform.python_version()}; folds {args.folds}, "
              f"{args.repeats} timed runs per fold and side; load average {load_before:.1f} before, "
              f"{load_after:.1f} after.\n\n"
              f"RMSE/MAE: mean ± std over the folds. Seconds: median fit + predict time per fold.\n\n")
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + text + "\n")


if __name__ == "__main__":
    main()
