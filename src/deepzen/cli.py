"""The ``deepzen`` command: train recipes into run folders, resume them, evaluate, predict, serve, export.

Every verb has ``--help``. Recipes come from the domain packages, plus any module named in the
``DEEPZEN_RECIPE_MODULES`` environment variable (comma-separated), so your own recipes run here too.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from deepzen.recipes import parse_overrides

# The domain verticals register their recipes when imported; the command line is where they meet.
RECIPE_MODULES = ("deepzen.vision.recipes", "deepzen.vision.segmentation_recipes", "deepzen.vision.video_recipes",
                  "deepzen.vision.detection.recipes",
                  "deepzen.text.recipes", "deepzen.generative.recipes", "deepzen.recommend.recipes", "deepzen.rl.recipes")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
INTERRUPTED = 130  # the shell's exit code for a process stopped by Ctrl-C


def load_recipes() -> None:
    extra = [name.strip() for name in os.environ.get("DEEPZEN_RECIPE_MODULES", "").split(",") if name.strip()]
    for name in (*RECIPE_MODULES, *extra):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name or name in extra:  # a vertical that exists but fails to import is a real error
                raise


# -- train / demo / evaluate ---------------------------------------------------------------------------
def command_train(args) -> int:
    from deepzen.runs import Run, load_toml_config
    from deepzen.training import distributed

    if args.nproc > 1 and not distributed.active():
        return launch_torchrun(args)
    if args.recipe is None and args.resume is None:
        raise ValueError("train needs a RECIPE (see `deepzen list`) or --resume RUN")
    if args.restart and args.resume is None:
        raise ValueError("--restart starts over the run named by --resume RUN")
    if args.tensorboard:
        from deepzen.training.tensorboard import summary_writer_class

        try:
            summary_writer_class()  # before a run folder is made: the package is there
        except ImportError as error:
            raise ValueError(str(error)) from None
    load_recipes()
    distributed.init()
    distributed.set_sync_batchnorm(args.sync_batchnorm)
    overrides = {**(load_toml_config(args.config) if args.config else {}), **parse_overrides(args.set)}
    if not distributed.is_rank_zero():
        sys.stdout = open(os.devnull, "w")  # only rank 0 prints
    if args.resume:
        run = Run.open(args.resume, overrides, checkpoint_every=args.checkpoint_every, restart=args.restart)
        if args.recipe is not None and args.recipe != run.recipe:
            raise ValueError(f"{args.resume} is a run of {run.recipe!r}, not {args.recipe!r}")
        print(f"Resuming {run.path} ({run.recipe}) {run.resuming}")
    else:
        run = Run.create(args.recipe, overrides, args.run_dir, checkpoint_every=args.checkpoint_every)
        print(f"Training {run.recipe} in {run.path}")
    if args.tensorboard:
        run.tensorboard = True
        print(f"TensorBoard logs: tensorboard --logdir {run.path / 'tensorboard'}")
    try:
        metrics = run.execute()
    except KeyboardInterrupt as stop:
        print(f"\nStopped{': ' + str(stop) if str(stop) else ''}. Continue with: deepzen train --resume {run.path}",
              file=sys.stderr)
        return INTERRUPTED
    finally:
        distributed.shutdown()
    print(json.dumps(metrics, indent=2))
    print(f"Run folder: {run.path}")
    return 0


def launch_torchrun(args) -> int:
    """Re-runs this ``train`` command under ``torchrun --standalone --nproc_per_node N``."""
    import subprocess

    from deepzen.runs import default_folder

    command = ["train"] + ([args.recipe] if args.recipe else [])
    for pair in args.set:
        command += ["--set", pair]
    if args.resume:
        command += ["--resume", args.resume] + (["--restart"] if args.restart else [])
    else:  # all processes must agree on the folder, so it is named here
        command += ["--run-dir", str(args.run_dir or default_folder(args.recipe))]
    if args.config:
        command += ["--config", args.config]
    if args.checkpoint_every:
        command += ["--checkpoint-every", str(args.checkpoint_every)]
    if args.sync_batchnorm:
        command += ["--sync-batchnorm"]
    if args.tensorboard:
        command += ["--tensorboard"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
                "-m", "deepzen.cli", *command]
    print("Launching: " + " ".join(launcher[2:]), flush=True)
    torchrun = subprocess.Popen(launcher, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    while True:
        try:
            return torchrun.wait()
        except KeyboardInterrupt:  # torchrun got the Ctrl-C as well: it stops its workers, who save first
            continue


def _die_with_parent() -> None:
    """Asks Linux to send SIGTERM to this (torchrun) process when the ``deepzen`` process dies, so that a
    killed launcher does not leave workers training on their own (torchrun stops them on SIGTERM)."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def command_demo(args) -> int:
    from deepzen.runs import Run, fresh_folder

    load_recipes()
    run = Run.create("digits-cnn", parse_overrides(args.set), args.run_dir or fresh_folder(Path("runs/demo")))
    print("deepzen demo: a small CNN on the 8x8 digits shipped inside scikit-learn")
    metrics = run.execute()
    print(f"Test accuracy: {metrics['test_accuracy']:.2%} on {metrics['test_samples']} held-out images")
    print(f"Run folder: {run.path} (model.dz, metrics.json, history.csv, training_curves.png, checkpoint.ckpt ...)")
    print(f"Next: deepzen predict {run.path} IMAGE.png   or   deepzen serve {run.path}")
    return 0


def command_evaluate(args) -> int:
    from deepzen.runs import Run

    load_recipes()
    run = Run.open(args.run, mode="replay")
    print(f"Evaluating {run.path} ({run.recipe}): the recipe's evaluation with the trained weights restored")
    metrics = run.execute()
    print(json.dumps(metrics, indent=2))
    return 0


# -- predict -----------------------------------------------------------------------------------------------
def read_input(path: str, shape: tuple[int, ...]):
    """One input file as a batch ``(n, *shape)``: a .npy sample or batch, or an image resized to ``shape``."""
    import numpy as np

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"No input file at {file}")
    suffix = file.suffix.lower()
    if suffix == ".npy":
        array = np.load(file, allow_pickle=False)
    elif suffix in IMAGE_SUFFIXES:
        array = read_image(file, shape)
    else:
        raise ValueError(f"Cannot read {file}: expected a .npy array or an image "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    if tuple(array.shape) == tuple(shape):
        array = array[None]
    if tuple(array.shape[1:]) != tuple(shape):
        raise ValueError(f"{file}: expected one sample of shape {tuple(shape)} or a batch (n, {', '.join(map(str, shape))})"
                         f". Received: {tuple(array.shape)}")
    return array


def read_image(path: Path, shape: tuple[int, ...]):
    """An image file as a (C, H, W) float array in [0, 1], converted and resized to the model's input."""
    from deepzen.data.images import read_image as image_array

    try:
        return image_array(path, shape)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def command_predict(args) -> int:
    """Raw inputs go to the run's recipe's predictor when it has one; files go to the saved model."""
    from deepzen.recipes import RECIPES
    from deepzen.runs import run_recipe_name

    if args.top is not None and args.top < 1:
        raise ValueError(f"--top expects a positive number. Received: --top {args.top}")
    recipe = run_recipe_name(args.run)
    if recipe is not None:
        load_recipes()
    predictor = RECIPES.get(recipe).predictor if recipe is not None and recipe in RECIPES else None
    if predictor is not None:
        results = predictor(Path(args.run), raw_inputs(args.inputs), args.top)
    else:
        results = predict_files(args, recipe)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for result in results:
            print(describe_result(result))
    return 0


def raw_inputs(inputs: list[str]) -> list[str]:
    """The input strings of a predictor: ``-`` reads one input per line from stdin, ``@FILE`` from FILE.

    Empty inputs are refused with the place they came from.
    """
    expanded = []
    for argument in inputs:
        if argument == "-":
            lines, source = sys.stdin.read().splitlines(), "stdin"
        elif argument.startswith("@"):
            file = Path(argument[1:])
            if not file.is_file():
                raise FileNotFoundError(f"{argument}: no file at {file} (@FILE reads one input per line from FILE)")
            lines, source = file.read_text(encoding="utf-8").splitlines(), str(file)
        else:
            lines, source = [argument], None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                where = f"line {number} of {source}" if source else f"input {len(expanded) + 1}"
                raise ValueError(f"{where} is empty: expected one text line or id per input")
            expanded.append(line)
    if not expanded:
        raise ValueError(f"No inputs in {' '.join(inputs)}: expected one text line or id per input")
    return expanded


def predict_files(args, recipe: str | None) -> list[dict]:
    """Predictions of the run's saved model on .npy arrays and images, one result per sample."""
    import numpy as np

    from deepzen.recipes import RECIPES
    from deepzen.runs import model_file
    from deepzen.training.serialization import load_model

    path = model_file(args.run, args.model)
    missing = [name for name in args.inputs if not Path(name).is_file()]
    if missing:
        with_predictors = [name for name, entry in RECIPES.items() if entry.predictor is not None]
        raise FileNotFoundError(
            f"No input file at {missing[0]}: the model of this run ({recipe or 'recipe unknown'}) predicts on "
            f".npy arrays and images ({', '.join(IMAGE_SUFFIXES)}). Text lines and ids are read by the runs of "
            f"recipes with a predictor: {', '.join(with_predictors) or 'none registered'}")
    model = load_model(path, compile=False)
    preprocessing = None
    if (Path(args.run) / "preprocessing.json").is_file():  # the run trained on normalized pixels: normalize alike
        from deepzen.vision.tasks import run_images

        preprocessing = run_images(args.run, model)
    spec = model.input_spec
    if spec is not None and not hasattr(spec, "shape"):
        raise ValueError(f"{path}: predict reads files for single-input models")
    shape = spec.shape if spec is not None else preprocessing.input_shape if preprocessing is not None else None
    if shape is None:
        raise ValueError(f"{path}: the model file does not say its input shape, so files cannot be read for it")
    batches = [read_input(name, shape) for name in args.inputs]
    inputs = np.concatenate(batches).astype(np.int64 if spec is not None and not spec.dtype.is_floating_point
                                            else np.float32)
    outputs = model.predict(preprocessing.prepare(inputs) if preprocessing is not None else inputs)
    results, start = [], 0
    for name, batch in zip(args.inputs, batches):
        for index in range(len(batch)):
            label = name if len(batch) == 1 else f"{name}[{index}]"
            results.append({"input": label, **describe_output(outputs[start + index], args.top or 3)})
        start += len(batch)
    return results


def describe_result(result: dict) -> str:
    """One prediction as plain text: ranked classes, tags and entities, recommendations, text, or the output."""
    shown = result["input"]
    if "top" in result:
        ranked = ", ".join(f"{entry.get('label', entry.get('class'))} ({entry['probability']:.1%})"
                           for entry in result["top"])
        return f"{shown}: {ranked}"
    if "tags" in result:
        entities = "; ".join(f"{kind} {text!r}" for kind, _, _, text in result["entities"]) or "no entities"
        return f"{shown}\n  tags: {' '.join(result['tags'])}\n  entities: {entities}"
    if "recommendations" in result:
        lines = [f"{shown}:"] + [f"  {rank}. {entry['title']} (item {entry['item']}, score {entry['score']:.3f})"
                                 if entry.get("title") else f"  {rank}. item {entry['item']} (score {entry['score']:.3f})"
                                 for rank, entry in enumerate(result["recommendations"], start=1)]
        return "\n".join(lines)
    if "translation" in result:
        return f"{shown} -> {result['translation']}"
    if "text" in result:
        return result["text"]  # a language model's continuation of the input, which it starts with
    return f"{shown}: {result['output']}"


def describe_output(output, top: int) -> dict:
    """A classifier's output (C,) as its top classes with probabilities; other outputs as plain lists."""
    import numpy as np

    output = np.asarray(output, dtype=np.float64)
    if output.ndim != 1 or output.shape[0] < 2:
        return {"output": output.tolist()}
    is_distribution = output.min() >= 0 and abs(output.sum() - 1.0) < 1e-3
    probabilities = output if is_distribution else np.exp(output - output.max()) / np.exp(output - output.max()).sum()
    order = np.argsort(-probabilities)[:top]
    return {"top": [{"class": int(c), "probability": float(probabilities[c])} for c in order],
            "output": output.tolist()}


# -- serve / export ---------------------------------------------------------------------------------------
def command_serve(args) -> int:
    """Serves a run (through its recipe's predictor when it has one) on uvicorn until SIGTERM or Ctrl-C."""
    settings = serve_settings(args)
    try:
        from deepzen.serving.server import serve
        from deepzen.serving.servables import load_servable
    except ImportError as missing:
        raise ValueError(str(missing)) from None  # names the serve extra
    load_recipes()
    servable = load_servable(args.run, settings, args.model)
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        print(f"Warning: listening on {settings.host} without an API key (--api-key or $DEEPZEN_API_KEY)",
              file=sys.stderr)

    def banner(url: str) -> None:
        print(f"Serving {args.run} ({servable.kind}) at {url}  (POST /predict, GET /ui, /docs, /metadata, /metrics). "
              "Ctrl-C or SIGTERM stops.", flush=True)

    serve(servable, log_requests=args.log, on_ready=banner)
    print("Stopped.", flush=True)
    return 0


def serve_settings(args):
    """The ServeSettings of ``deepzen serve``'s options (the API key from $DEEPZEN_API_KEY unless given)."""
    import dataclasses

    from deepzen.serving.settings import ServeSettings, api_key_from_environment

    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(ServeSettings)}
    values["api_key"] = values["api_key"] or api_key_from_environment()
    values["cors_origins"] = tuple(values["cors_origins"] or ())
    return ServeSettings(**values)


def add_serve_settings(parser: argparse.ArgumentParser) -> None:
    """One option per ServeSettings field (``max_body_bytes`` -> ``--max-body-bytes``), with its help and default."""
    import dataclasses

    from deepzen.serving.settings import ServeSettings

    for field in dataclasses.fields(ServeSettings):
        option = "--" + field.name.replace("_", "-")
        if field.name == "cors_origins":
            parser.add_argument("--cors-origin", dest="cors_origins", action="append", default=[], metavar="ORIGIN",
                                help=field.metadata["help"] + " (repeat for several)")
        elif field.name == "api_key":
            parser.add_argument(option, default=None, metavar="KEY", help=field.metadata["help"])
        else:
            parser.add_argument(option, type=type(field.default), default=field.default,
                                help=f"{field.metadata['help']} (default: {field.default})")


def command_export(args) -> int:
    from deepzen.export import (EXPORTED_GENERATOR, export_generator, export_onnx, generator_kind, verify_generator,
                                verify_onnx)
    from deepzen.runs import model_file
    from deepzen.training.serialization import load_model

    path = model_file(args.run, args.model)
    model = load_model(path, compile=False)
    if generator_kind(model) is not None:  # translators and language models: the graphs a decoding loop needs
        folder = Path(args.output) if args.output else Path(args.run) / "onnx"
        paths = export_generator(model, folder, opset_version=args.opset)
        difference = verify_generator(paths, model)
        print(f"Exported {path} ({generator_kind(model).replace('_', ' ')}) to "
              f"{', '.join(str(p) for p in paths.values())}: {EXPORTED_GENERATOR}. onnxruntime matches deepzen "
              f"within {difference:.2g} (max abs difference of the step's log-probabilities)")
        return 0
    output = Path(args.output) if args.output else Path(args.run) / "model.onnx"
    export_onnx(model, output, opset_version=args.opset)
    difference = verify_onnx(output, model)
    print(f"Exported {path} to {output}; onnxruntime matches deepzen within {difference:.2g} (max abs difference)")
    return 0


# -- interpret ---------------------------------------------------------------------------------------------
def command_interpret(args) -> int:
    """Image runs: saliency, Grad-CAM, occlusion, filters, feature maps, top losses, confusion matrix.
    Text classification runs (they have vocabulary.json): the attention over the words of each input text."""
    import numpy as np

    from deepzen.runs import model_file
    from deepzen.training.serialization import load_model
    from deepzen.vision import interpret

    if args.top_losses < 1:
        raise ValueError(f"--top-losses expects a positive number. Received: --top-losses {args.top_losses}")
    if (Path(args.run) / "vocabulary.json").is_file():
        if not args.inputs:
            raise ValueError(f"{args.run} is a text classification run: give the texts to explain")
        written = [interpret.interpret_text_run(args.run, raw_inputs(args.inputs), which=args.model,
                                                out_dir=args.output)]
    else:
        if (args.data is None) != (args.labels is None):
            raise ValueError("--data and --labels go together: the test images (.npy) and their labels (.npy)")
        model = load_model(model_file(args.run, args.model), compile=False)
        shape = interpret.run_images(args.run, model).input_shape
        if args.inputs and shape is None:
            raise ValueError(f"{args.run}: the model's input shape is unknown, so image files cannot be read for it")
        pixels = np.concatenate([read_input(name, shape) for name in args.inputs]) if args.inputs else None
        test_set = (np.load(args.data, allow_pickle=False), np.load(args.labels, allow_pickle=False)) if args.data \
            else None
        written = interpret.interpret_run(args.run, pixels, model=model, test_set=test_set, layer=args.layer,
                                          k=args.top_losses, out_dir=args.output)
    for path in written:
        print(path)
    return 0


# -- list ---------------------------------------------------------------------------------------------------
class TrainHelp(argparse.Action):
    """``train --help``; after a recipe name it also lists that recipe's settings (type, default, meaning)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from deepzen.recipes import RECIPES, describe_settings

        parser.print_help()
        name = getattr(namespace, "recipe", None)
        if name:
            load_recipes()
            if name not in RECIPES:
                parser.exit(2, f"\ndeepzen: no recipe {name!r}. Known recipes: {', '.join(RECIPES.names())}\n")
            recipe = RECIPES.get(name)
            print(f"\n{name}: {recipe.description}")
            print(describe_settings(recipe))
        else:
            print("\nThe settings of a recipe: deepzen train RECIPE --help (recipes: deepzen list)")
        parser.exit()


def command_list(args) -> int:
    from deepzen.data.paths import dataset_status
    from deepzen.recipes import RECIPES

    load_recipes()
    print("Recipes (settings: deepzen train RECIPE --help):")
    for name, recipe in RECIPES.items():
        print(f"  {name:24s} {recipe.description}")
        if args.long:
            print(f"  {'':24s}   dataset: {recipe.dataset or 'not stated'}")
            print(f"  {'':24s}   target:  {recipe.target or 'not stated'}")
    from deepzen.vision import models

    print("Image models (deepzen.vision.models.create(name)):\n  " + ", ".join(models.list()))
    from deepzen.experiments import EXPERIMENTS

    print("Experiments (deepzen experiment NAME):\n  " + ", ".join(EXPERIMENTS.names()))
    print("Datasets (files under $DEEPZEN_DATA):")
    for name, present in dataset_status().items():
        print(f"  {name:24s} {'present' if present else 'missing'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepzen", description="The classic deep-learning curriculum, on PyTorch.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    listing = verbs.add_parser("list", help="recipes, models and datasets", description="List the recipes, "
                               "image models and datasets (and whether each dataset's files are present).")
    listing.add_argument("--long", action="store_true", help="also each recipe's dataset and target result")
    listing.set_defaults(handler=command_list)

    train = verbs.add_parser("train", help="run a recipe into a run folder, or resume one", add_help=False,
                             description="Run a recipe by name. The run folder gets the resolved config, "
                             "metrics per epoch, curves, best/last models, checkpoints and the final evaluation. "
                             "`deepzen train RECIPE --help` also lists the recipe's settings.")
    train.add_argument("-h", "--help", action=TrainHelp, help="show this help (and RECIPE's settings) and exit")
    train.add_argument("recipe", nargs="?", help="a recipe name (see `deepzen list`); optional with --resume")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    train.add_argument("--config", metavar="FILE.toml", help="settings from a TOML file (--set wins)")
    train.add_argument("--run-dir", help="the run folder (default: runs/RECIPE-TIMESTAMP)")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    train.add_argument("--restart", action="store_true",
                       help="with --resume: train the run again from the start in its folder, with its config "
                       "(deletes its checkpoints, histories and models)")
    train.add_argument("--nproc", type=int, default=1, metavar="N",
                       help="train on N processes (DDP; launches torchrun --standalone)")
    train.add_argument("--sync-batchnorm", action="store_true",
                       help="with --nproc: batch-norm layers normalize with the statistics of the global batch, "
                       "synchronised across the processes (default: each process's own slice)")
    train.add_argument("--tensorboard", action="store_true",
                       help="also log every fit for TensorBoard into RUN/tensorboard (needs deepzen[tensorboard])")
    train.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                       help="also checkpoint every STEPS steps inside an epoch (default: at epoch ends)")
    train.set_defaults(handler=command_train)

    demo = verbs.add_parser("demo", help="train a small CNN on the embedded 8x8 digits (no download)",
                            description="Train the digits-cnn recipe into a run folder (runs/demo by default).")
    demo.add_argument("--run-dir", help="the run folder (default: runs/demo, or runs/demo-N when taken)")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    demo.set_defaults(handler=command_demo)

    evaluate = verbs.add_parser("evaluate", help="re-run a finished run's evaluation",
                                description="Re-run the recipe's data preparation and evaluation with the "
                                "trained weights restored from the run's checkpoints (nothing is trained or written).")
    evaluate.add_argument("run", metavar="RUN", help="a run folder")
    evaluate.set_defaults(handler=command_evaluate)

    predict = verbs.add_parser("predict", help="predict with a run's model on files, text lines or user ids",
                               description="Predict with a run's model. Runs of text and recommender recipes "
                               "read raw inputs: a sentence to classify, tag, continue or translate, or a user id "
                               "to recommend items for (`-` reads one input per line from stdin, @FILE from FILE). "
                               "Other runs read .npy arrays (one sample or a batch) or images "
                               f"({', '.join(IMAGE_SUFFIXES)}; resized, scaled to [0, 1]).")
    predict.add_argument("run", metavar="RUN", help="a run folder")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="input files; or text lines / user ids, `-` (stdin) or @FILE (one per line)")
    predict.add_argument("--model", default="auto", choices=["auto", "final", "best", "last"],
                         help="which model file for file inputs (auto: model.dz, else best.dz, else last.dz)")
    predict.add_argument("--top", type=int, default=None,
                         help="classes shown per input for classifiers (default 3), items per user for "
                         "recommenders (default 10)")
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(handler=command_predict)

    serve = verbs.add_parser("serve", help="serve a run's model over HTTP (FastAPI on uvicorn)",
                             description="Serve a run over HTTP: POST /predict (JSON; image models also take "
                             "PNG/JPEG at POST /predict/image), a page to try it at /ui, the API at /docs, "
                             "/health, /ready, /metadata, /metrics. Runs of text and recommender recipes are "
                             "served through their predictor. Concurrent requests are batched together. "
                             "Needs the serve extra: pip install 'deepzen[serve]'.")
    serve.add_argument("run", metavar="RUN", help="a run folder")
    serve.add_argument("--model", default="auto", choices=["auto", "final", "best", "last"],
                       help="which model file of a run without a predictor (auto: model.dz, best.dz, last.dz)")
    serve.add_argument("--log", action="store_true", help="log every request to stderr")
    add_serve_settings(serve)
    serve.set_defaults(handler=command_serve)

    export = verbs.add_parser("export", help="export a run's model to ONNX and check it with onnxruntime",
                              description="Export to ONNX (torch.onnx) with a dynamic batch axis, then compare "
                              "onnxruntime's outputs with deepzen's on random inputs.")
    export.add_argument("run", metavar="RUN", help="a run folder")
    export.add_argument("--output", help="the .onnx file (default: RUN/model.onnx); for translators and language "
                        "models the folder of encoder.onnx and decoder_step.onnx (default: RUN/onnx)")
    export.add_argument("--model", default="auto", choices=["auto", "final", "best", "last"])
    export.add_argument("--opset", type=int, default=None, help="ONNX opset version (default: torch's)")
    export.set_defaults(handler=command_export)

    explain = verbs.add_parser("interpret", help="see inside a run's classifier: PNGs in RUN/interpret",
                               description="Image classifiers: saliency maps, Grad-CAM, occlusion sensitivity, "
                               "first-layer filters and feature maps for IMAGES (default: the first test images), "
                               "and, with the run's test set (known for digits-cnn and the MNIST/CIFAR recipes, or "
                               "--data/--labels), the top losses and the confusion matrix. Images are pixel values "
                               "in [0, 1] (image files, or .npy arrays), normalized as the run's preprocessing.json "
                               "says. Text classifiers with attention: the attention over the words of each text.")
    explain.add_argument("run", metavar="RUN", help="a run folder")
    explain.add_argument("inputs", nargs="*", metavar="INPUT",
                         help="images (.npy or image files) or, for a text run, texts (`-`: stdin, @FILE)")
    explain.add_argument("--layer", help="the convolution Grad-CAM reads, by module name (default: the last one)")
    explain.add_argument("--top-losses", type=int, default=12, metavar="K", help="how many top losses (default 12)")
    explain.add_argument("--data", metavar="X.npy", help="test images (N, C, H, W), pixel values in [0, 1]")
    explain.add_argument("--labels", metavar="Y.npy", help="their (N,) class ids")
    explain.add_argument("--model", default="auto", choices=["auto", "final", "best", "last"])
    explain.add_argument("--output", help="the folder for the PNGs (default: RUN/interpret)")
    explain.set_defaults(handler=command_interpret)

    from deepzen.experiments import add_experiment_command  # does not import torch

    add_experiment_command(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from deepzen.training.callbacks import CallbackError

    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, CallbackError) as error:  # model/run file errors are ValueErrors
        print(f"deepzen: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
