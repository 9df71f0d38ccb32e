"""What loading a run's model once saves a served predictor: the latency of one predictor call that
loads the model from the run folder (as every served batch did before ``cached_load``) against one that
finds it loaded, interleaved call by call in one process.

A run of a recipe with a text predictor is called on ``--text``; a run of a recipe with an image
predictor (detection, segmentation) on ``--image``, decoded once::

    python benchmarks/predictor_latency.py --run runs/sst2-textcnn --recipe sst2-textcnn --threads 1
    python benchmarks/predictor_latency.py --run runs/benchmark-mnist-segmentation --recipe mnist-segmentation

Prints one line per run and, last, one JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from _common import command_line, parse_arguments


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="a run folder (repeatable)")
    parser.add_argument("--recipe", default=None, help="the recipe of runs whose folder does not name it "
                        "(benchmark runs have no config.json)")
    parser.add_argument("--text", default="a moving and beautifully acted film", help="the input of text predictors")
    parser.add_argument("--image", default=None, help="the input of image predictors (default: a black 64x64 image)")
    parser.add_argument("--calls", type=int, default=30, help="calls of each kind per run")
    args = parse_arguments(parser, argv)

    from PIL import Image

    from deepzen import cli
    from deepzen.data.images import open_picture
    from deepzen.recipes import RECIPES, forget_loaded
    from deepzen.runs import run_recipe_name

    cli.load_recipes()
    print(f"{command_line('predictor_latency.py', argv)}; {time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()}-core "
          f"CPU, load average {os.getloadavg()[0]:.1f}, {torch.get_num_threads()} torch thread(s)", flush=True)
    report = {}
    for run in args.run:
        name = run_recipe_name(run) or args.recipe
        if name is None:
            raise SystemExit(f"{run} has no config.json naming its recipe: give --recipe")
        recipe = RECIPES.get(name)
        if recipe.image_predictor is not None:
            picture = open_picture(args.image) if args.image else Image.new("RGB", (64, 64))
            call = lambda: recipe.image_predictor(run, [picture], None)  # noqa: E731
        elif recipe.predictor is not None:
            call = lambda: recipe.predictor(run, [args.text], None)  # noqa: E731
        else:
            raise SystemExit(f"{run}: its recipe {recipe.name} has no predictor")
        call()  # warm-up: imports, allocator
        times = {"loading": [], "loaded": []}
        for _ in range(args.calls):
            for kind in times:
                if kind == "loading":
                    forget_loaded()
                start = time.perf_counter()
                call()
                times[kind].append(1000 * (time.perf_counter() - start))
        medians = {kind: statistics.median(values) for kind, values in times.items()}
        report[run] = {"recipe": recipe.name, **{f"{kind}_ms": round(m, 2) for kind, m in medians.items()},
                       "speedup": round(medians["loading"] / medians["loaded"], 1)}
        print(f"{run} ({recipe.name}): loading the model {medians['loading']:.1f} ms per call, loaded "
              f"{medians['loaded']:.1f} ms: {report[run]['speedup']}x", flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
