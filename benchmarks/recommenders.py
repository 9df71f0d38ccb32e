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

Catalogues that scale (``--scale``): synthetic MovieLens-like ratings (:func:`synthetic_ratings`) at
10k, 30k and 60k items; each (size, algorithm, library) fit + predict runs in its own subprocess,
which reports its time, RMSE and peak memory (``resource.getrusage`` maxrss). With ``--repeats N``
each cell runs N times, the libraries interleaved (their order alternates from one repetition to
the next, so a burst of load on a shared machine hits both), and the table gives the median. A Surprise run whose
dense similarity matrices would not fit (estimated, :func:`surprise_memory_estimate`) is reported as
such instead of being run out of memory. Writes ``results/recommenders_scale.{md,json}``.

    python benchmarks/recommenders.py --scale --threads 1
    python benchmarks/recommenders.py --scale --sizes 10000 --repeats 5 --threads 1   # medians of 5
    python benchmarks/recommenders.py --quick   # a smoke test on 2,000 items
    python benchmarks/recommenders.py --ranking --threads 1   # full-catalogue HR@10 at 60k items

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


# -- catalogues that scale: synthetic MovieLens-like ratings --------------------------------------------

SCALE_SIZES = (10_000, 30_000, 60_000)
SCALE_ALGORITHMS = {  # name -> (centering, user_based, similarity)
    "means-user": ("mean", True, "msd"),
    "means-item": ("mean", False, "msd"),
    "baseline-item": ("baseline", False, "pearson_baseline"),
}
MEMORY_BUDGET = 4 * 2 ** 30  # bytes: above it a run is not started (its dense matrix is estimated instead)


def synthetic_ratings(n_items: int, seed: int = 0):
    """MovieLens-like ratings for ``n_items`` items, seeded.

    Shaped like MovieLens' ``ml-latest-small`` (610 users, 9,742 items, 100,836 ratings): one user per
    16 items; ratings per user log-normal (median 90, mean about 165, at least 20, at most a fifth of
    the catalogue); items drawn with a Zipf-like popularity (weight 1 / (rank + 10)^1.1), so a few
    items have hundreds of ratings and most have one or two; half-star ratings 0.5..5 from a user
    bias, an item bias and noise (mean about 3.5).

    Returns:
        ``(user, item, rating)`` arrays in a shuffled order.
    """
    rng = np.random.default_rng(seed)
    n_users = max(10, n_items // 16)
    per_user = np.clip(rng.lognormal(np.log(90), 1.1, n_users).astype(np.int64), 20, n_items // 5)
    weight = 1.0 / (np.arange(n_items) + 10.0) ** 1.1
    weight = weight[rng.permutation(n_items)]  # popularity is not the id order
    users, items = [], []
    for user, count in enumerate(per_user):
        keys = np.log(rng.random(n_items)) / weight  # Efraimidis-Spirakis: weighted sampling without replacement
        chosen = np.argpartition(-keys, count)[:count].copy()  # not a view: it would keep all n_items alive
        users.append(np.full(count, user))
        items.append(chosen)
    user, item = np.concatenate(users), np.concatenate(items)
    user_bias, item_bias = rng.normal(0, 0.4, n_users), rng.normal(0, 0.5, n_items)
    raw = 3.5 + user_bias[user] + item_bias[item] + rng.normal(0, 0.8, len(user))
    rating = np.clip(np.round(raw * 2) / 2, 0.5, 5.0)
    order = rng.permutation(len(user))
    return user[order], item[order], rating[order]


def surprise_memory_estimate(n: int, similarity: str) -> int:
    """Bytes of the dense n x n float64 matrices scikit-surprise's similarity holds at once (its Cython
    keeps the similarity and per-pair sums as n x n arrays: 3 for msd, 5 for cosine and
    pearson_baseline, 7 for pearson). Measured on 9,252 items with msd: 2.1 GB peak, 2.1 GB estimated."""
    arrays = {"msd": 3, "cosine": 5, "pearson_baseline": 5, "pearson": 7}[similarity]
    return arrays * n * n * 8


def scale_child(library: str, algorithm: str, n_items: int, seed: int) -> dict:
    """One fit + predict of ``algorithm`` by ``library`` on the synthetic catalogue, in this process."""
    import resource

    centering, user_based, similarity = SCALE_ALGORITHMS[algorithm]
    user, item, rating = synthetic_ratings(n_items, seed)
    cut = int(0.8 * len(user))  # the ratings are shuffled: 80% train, 20% test
    if library == "deepzen":
        from deepzen.data.ratings import Ratings
        from deepzen.recommend import KNN

        train, test = Ratings(user[:cut], item[:cut], rating[:cut]), Ratings(user[cut:], item[cut:], rating[cut:])
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        model = KNN(40, similarity, user_based=user_based, centering=centering).fit(train)
        predictions = model.predict(test.user, test.item).astype(np.float64)  # ends with a host copy
        seconds = time.perf_counter() - start
    else:
        import surprise

        classes = {"none": surprise.KNNBasic, "mean": surprise.KNNWithMeans, "baseline": surprise.KNNBaseline}
        raw = [(str(u), str(i), float(r), None) for u, i, r in zip(user[:cut], item[:cut], rating[:cut])]
        trainset = surprise.Dataset(surprise.Reader(rating_scale=(0.5, 5))).construct_trainset(raw)
        testset = [(str(u), str(i), float(r)) for u, i, r in zip(user[cut:], item[cut:], rating[cut:])]
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        algorithm_object = classes[centering](k=40, min_k=1, verbose=False, sim_options={
            "name": similarity, "user_based": user_based, "min_support": 1})
        predictions = np.array([p.est for p in algorithm_object.fit(trainset).test(testset)])
        seconds = time.perf_counter() - start
    rmse, mae = errors(predictions, rating[cut:].astype(np.float64))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "rmse": rmse, "mae": mae, "peak_bytes": peak, "before_fit_bytes": rss_before,
            "ratings": len(user), "train": cut, "users": int(user.max()) + 1, "items_rated": int(len(np.unique(item)))}


RANKING_MODELS = ("baseline-only", "means-user")  # full-catalogue ranking: models cheap to score everywhere


def ranking_child(model_name: str, n_items: int, seed: int) -> dict:
    """HR@10 / NDCG@10 of one test rating per user against the whole catalogue, in this process."""
    import resource

    from deepzen.data.ratings import Ratings
    from deepzen.recommend import KNN, BaselineOnly, full_ranking_metrics

    user, item, rating = synthetic_ratings(n_items, seed)
    cut = int(0.8 * len(user))
    train, test = Ratings(user[:cut], item[:cut], rating[:cut]), Ratings(user[cut:], item[cut:], rating[cut:])
    test = test.take(np.unique(test.user, return_index=True)[1])  # one test rating per user
    model = BaselineOnly() if model_name == "baseline-only" else KNN(40, "msd", centering="mean")
    model.fit(train)
    start = time.perf_counter()
    metrics = full_ranking_metrics(model, test)
    return {**metrics, "seconds": time.perf_counter() - start,
            "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def ranking_main(args) -> None:
    """Full-catalogue ranking at the largest size, each model in its own subprocess."""
    import json
    import subprocess

    n_items = 2_000 if args.quick else max(int(size) for size in args.sizes.split(","))
    lines = ["| items | model | HR@10 | NDCG@10 | users | ranking s | peak memory |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for model_name in RANKING_MODELS:
        command = [sys.executable, __file__, "--ranking-child", model_name, str(n_items), "--seed", str(args.seed)]
        command += ["--threads", str(args.threads)] if args.threads else []
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps({"items": n_items, "model": model_name, **row}), flush=True)
        lines.append(f"| {n_items:,} | {model_name} | {row['hr@10']:.4f} | {row['ndcg@10']:.4f} | {row['users']:,} | "
                     f"{row['seconds']:.1f} | {row['peak_bytes'] / 2 ** 30:.2f} GiB |")
    command = "python benchmarks/recommenders.py " + " ".join(sys.argv[1:])
    text = (f"# Full-catalogue ranking in bounded memory\n\n`{command.strip()}`; load average before "
            f"{os.getloadavg()[0]:.2f}. One test rating per user ranked against every item the user did not "
            f"rate in training (`full_ranking_metrics`: users scored a chunk at a time, ranks counted). The "
            f"synthetic ratings carry no preference beyond user and item biases, so HR@10 is near chance; the "
            f"table shows time and memory.\n\n" + "\n".join(lines) + "\n")
    print(text)
    out = RESULTS.with_name("recommenders_ranking_quick.md" if args.quick else "recommenders_ranking.md")
    out.write_text(text)


def scale_main(args) -> None:
    """The catalogue-size benchmark: every (size, algorithm, library) run in its own subprocess."""
    import json
    import subprocess

    sizes = [2_000] if args.quick else [int(size) for size in args.sizes.split(",")]
    chosen = args.algorithms.split(",") if args.algorithms else list(SCALE_ALGORITHMS)
    libraries = args.libraries.split(",")
    uptime_before = os.getloadavg()
    rows = []
    for n_items in sizes:
        for algorithm in chosen:
            centering, user_based, similarity = SCALE_ALGORITHMS[algorithm]
            n_neighbours = max(10, n_items // 16) if user_based else n_items  # rows of the n x n matrix
            runs = {library: [] for library in libraries}
            skipped = {}
            estimate = surprise_memory_estimate(n_neighbours, similarity)
            if "surprise" in libraries and estimate > args.surprise_memory:
                skipped["surprise"] = (f"not run: its dense {n_neighbours:,} x {n_neighbours:,} similarity needs "
                                       f"about {estimate / 2 ** 30:.0f} GiB (n^2 x 8 bytes x "
                                       f"{estimate // (8 * n_neighbours ** 2)} arrays), over "
                                       f"{args.surprise_memory / 2 ** 30:.0f} GiB")
            for repeat in range(args.repeats):
                for library in libraries if repeat % 2 == 0 else libraries[::-1]:
                    if library in skipped:
                        continue
                    command = [sys.executable, __file__, "--scale-child", library, algorithm, str(n_items),
                               "--seed", str(args.seed)] + (["--threads", str(args.threads)] if args.threads else [])
                    try:
                        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
                        if done.returncode != 0:
                            skipped[library] = f"failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"
                        else:
                            runs[library].append(json.loads(done.stdout.strip().splitlines()[-1]))
                    except subprocess.TimeoutExpired:
                        skipped[library] = f"not finished within {args.timeout} s"
                    print(json.dumps({"items": n_items, "algorithm": algorithm, "library": library, "repeat": repeat,
                                      **(runs[library][-1] if library not in skipped else {})}), flush=True)
            for library in libraries:
                row = {"items": n_items, "algorithm": algorithm, "library": library}
                if library in skipped:
                    row.update(skipped=skipped[library])
                else:
                    seconds = [run["seconds"] for run in runs[library]]
                    row.update(runs[library][0], seconds=float(np.median(seconds)), all_seconds=seconds,
                               peak_bytes=max(run["peak_bytes"] for run in runs[library]))
                rows.append(row)
    uptime_after = os.getloadavg()
    write_scale_results(rows, args, uptime_before, uptime_after)


def write_scale_results(rows, args, load_before, load_after) -> None:
    import json

    lines = ["| items | users | ratings | algorithm | library | fit + predict s (median) | runs | peak memory | RMSE "
             "| speedup |",
             "| ---: | ---: | ---: | --- | --- | ---: | --- | ---: | ---: | ---: |"]
    by_key = {(row["items"], row["algorithm"], row["library"]): row for row in rows}
    labels = {"means-user": "KNNWithMeans, user-based, msd, k=40", "means-item": "KNNWithMeans, item-based, msd, k=40",
              "baseline-item": "KNNBaseline, item-based, pearson_baseline, k=40"}
    for row in rows:
        label = labels[row["algorithm"]]
        if "skipped" in row:
            lines.append(f"| {row['items']:,} | | | {label} | {row['library']} | {row['skipped']} | | | | |")
            continue
        other = by_key.get((row["items"], row["algorithm"], "surprise"), {})
        speedup = (f"{other['seconds'] / row['seconds']:.1f}x" if row["library"] == "deepzen" and "seconds" in other
                   else "")
        lines.append(f"| {row['items']:,} ({row['items_rated']:,} rated) | {row['users']:,} | {row['ratings']:,} | "
                     f"{label} | {row['library']} | {row['seconds']:.2f} | "
                     f"{', '.join(f'{seconds:.2f}' for seconds in row['all_seconds'])} | "
                     f"{row['peak_bytes'] / 2 ** 30:.2f} GiB | {row['rmse']:.4f} | {speedup} |")
    command = "python benchmarks/recommenders.py " + " ".join(sys.argv[1:])
    header = (f"# Catalogues that scale: deepzen.recommend vs scikit-surprise on synthetic MovieLens-like ratings\n\n"
              f"`{command.strip()}` on {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"Python {platform.python_version()}; load average (1, 5, 15 min) {load_before[0]:.2f}, "
              f"{load_before[1]:.2f}, {load_before[2]:.2f} before and {load_after[0]:.2f}, {load_after[1]:.2f}, "
              f"{load_after[2]:.2f} after.\n\n"
              f"Data: `synthetic_ratings(n_items, seed={args.seed})` (one user per 16 items, log-normal ratings per "
              f"user, Zipf-like item popularity, half stars); 80% train, 20% test. Each run is a subprocess of its own; "
              f"{args.repeats} runs per cell, the libraries interleaved; seconds of fit + predict (building Surprise's "
              f"trainset not timed): the median, speedup = Surprise's median / deepzen's; peak memory = the largest "
              f"maxrss of the runs (data included). Surprise runs are not started where its dense similarity "
              f"would not fit (estimate shown).\n\n")
    text = header + "\n".join(lines) + "\n"
    print(text)
    out = args.out if args.out != RESULTS else RESULTS.with_name("recommenders_scale.md")
    if args.quick:
        out = out.with_name(out.stem + "_quick.md")
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "load_before": load_before,
                                                    "load_after": load_after, "rows": rows}, indent=1) + "\n")


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
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per fold and side, or per --scale cell (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--data", type=Path, default=None, help="the ml-100k folder (default $DEEPZEN_DATA/ml-100k)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    scale = parser.add_argument_group("catalogues that scale (synthetic ratings)")
    scale.add_argument("--scale", action="store_true", help="the catalogue-size benchmark instead of MovieLens 100K")
    scale.add_argument("--quick", action="store_true", help="--scale on a 2,000-item catalogue: a smoke test")
    scale.add_argument("--sizes", default=",".join(str(size) for size in SCALE_SIZES))
    scale.add_argument("--libraries", default="deepzen,surprise")
    scale.add_argument("--seed", type=int, default=0)
    scale.add_argument("--timeout", type=int, default=3600, help="seconds per run")
    scale.add_argument("--surprise-memory", type=float, default=8 * 2 ** 30,
                       help="bytes: Surprise runs whose estimated dense matrices exceed this are not started")
    scale.add_argument("--ranking", action="store_true",
                       help="full-catalogue HR@10 / NDCG@10 at the largest size (with --quick: 2,000 items)")
    scale.add_argument("--scale-child", nargs=3, metavar=("LIBRARY", "ALGORITHM", "ITEMS"), help=argparse.SUPPRESS)
    scale.add_argument("--ranking-child", nargs=2, metavar=("MODEL", "ITEMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scale_child:
        import json

        library, algorithm, n_items = args.scale_child
        print(json.dumps(scale_child(library, algorithm, int(n_items), args.seed)))
        return
    if args.ranking_child:
        import json

        print(json.dumps(ranking_child(args.ranking_child[0], int(args.ranking_child[1]), args.seed)))
        return
    if args.ranking:
        ranking_main(args)
        return
    if args.scale or args.quick:
        if args.algorithms == parser.get_default("algorithms"):
            args.algorithms = None
        scale_main(args)
        return
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
