"""Exact resume on the CPU under every default: a pairwise matrix of settings and interruptions.

Each cell trains a small CNN (Conv2D + BatchNormalization + Dropout, so the channels-last layout,
the running statistics and the RNG all matter) once straight through and once interrupted and
resumed from its TrainingCheckpoint; the final weights, optimizer state, callback state, history
and evaluation must be bit-identical. The interruptions are a crash at an epoch end (in this
process), ``kill -9`` of a real child process after a checkpoint inside an epoch, and ``kill -9``
of a child while it is inside a checkpoint's file write (the previous checkpoint must be intact).

A GAN (``Model.fit`` with an overriding ``train_step`` and two optimizers) is ``kill -9``-ed inside an
epoch as well: its networks, averaged generator, both optimizers and history must come back exactly.

``CELLS`` lists the cells (pairwise: every value of every dimension, and every pair of values of two
dimensions, is in at least one cell); ``resume_matrix_cells()`` gives their ids, for benchmark scripts.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import deepzen
from deepzen.callbacks import Callback, EarlyStopping, ReduceLROnPlateau, WeightAverage
from deepzen.layers import Activation, BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input
from deepzen.models import Sequential
from deepzen.training.callbacks import CallbackError
from deepzen.training.checkpoint import TrainingCheckpoint, checkpoint_position, read_checkpoint
from deepzen.training.serialization import ModelFileError, read_tensors, write_tensors


@dataclass(frozen=True)
class Cell:
    memory_format: str   # compile(memory_format=): "auto" trains the convolution channels-last on the CPU
    optimizer: str       # a key of OPTIMIZERS
    precision: str       # compile(precision=)
    callback: str        # the stateful callback: a key of STATEFUL_CALLBACKS
    interruption: str    # one of INTERRUPTIONS

    @property
    def id(self) -> str:
        return "-".join(astuple(self))


DIMENSIONS = {
    "memory_format": ("auto", "channels_first"),
    "optimizer": ("adam", "adamw", "sgd_momentum", "rmsprop", "adagrad"),
    "precision": ("float32", "mixed_bfloat16"),
    "callback": ("EarlyStopping", "ReduceLROnPlateau", "WeightAverage"),
    "interruption": ("epoch_end", "kill_mid_epoch", "kill_during_write"),
}

CELLS = [
    Cell("auto", "adam", "float32", "EarlyStopping", "kill_during_write"),
    Cell("auto", "adam", "mixed_bfloat16", "ReduceLROnPlateau", "epoch_end"),
    Cell("channels_first", "adam", "float32", "WeightAverage", "kill_mid_epoch"),
    Cell("auto", "adamw", "float32", "EarlyStopping", "kill_mid_epoch"),
    Cell("auto", "adamw", "mixed_bfloat16", "ReduceLROnPlateau", "kill_during_write"),
    Cell("channels_first", "adamw", "float32", "WeightAverage", "epoch_end"),
    Cell("auto", "sgd_momentum", "mixed_bfloat16", "EarlyStopping", "epoch_end"),
    Cell("auto", "sgd_momentum", "float32", "ReduceLROnPlateau", "kill_mid_epoch"),
    Cell("channels_first", "sgd_momentum", "mixed_bfloat16", "WeightAverage", "kill_during_write"),
    Cell("auto", "rmsprop", "float32", "EarlyStopping", "kill_during_write"),
    Cell("channels_first", "rmsprop", "mixed_bfloat16", "ReduceLROnPlateau", "epoch_end"),
    Cell("auto", "rmsprop", "float32", "WeightAverage", "kill_mid_epoch"),
    Cell("channels_first", "adagrad", "mixed_bfloat16", "EarlyStopping", "kill_mid_epoch"),
    Cell("auto", "adagrad", "float32", "ReduceLROnPlateau", "kill_during_write"),
    Cell("auto", "adagrad", "float32", "WeightAverage", "epoch_end"),
]


def resume_matrix_cells() -> list[str]:
    """The ids of the matrix's cells (one test each: ``test_resume_is_bit_exact[<id>]``)."""
    return [cell.id for cell in CELLS]


OPTIMIZERS = {
    "adam": lambda: deepzen.optimizers.Adam(learning_rate=0.01),
    "adamw": lambda: deepzen.optimizers.AdamW(learning_rate=0.01),
    "sgd_momentum": lambda: deepzen.optimizers.SGD(learning_rate=0.05, momentum=0.9),
    "rmsprop": lambda: deepzen.optimizers.RMSprop(learning_rate=0.01),
    "adagrad": lambda: deepzen.optimizers.Adagrad(learning_rate=0.05),
}
# min_delta=1e3: no epoch after the first improves, so the callbacks' patience counters carry across
# the interruptions (EarlyStopping stops after epoch 3 of 4; ReduceLROnPlateau halves the rate then).
STATEFUL_CALLBACKS = {
    "EarlyStopping": lambda: EarlyStopping("val_loss", patience=1, min_delta=1e3),
    "ReduceLROnPlateau": lambda: ReduceLROnPlateau("val_loss", factor=0.5, patience=2, min_delta=1e3),
    "WeightAverage": lambda: WeightAverage(decay=0.5),
}
INTERRUPTIONS = ("epoch_end", "kill_mid_epoch", "kill_during_write")

EPOCHS, BATCH_SIZE, EVERY_STEPS = 4, 8, 2  # 36 training samples: 5 steps an epoch, checkpoints after steps 2, 4
KILL_AT = (1, 2)        # kill_mid_epoch: killed after the checkpoint at step 2 of epoch 2 (0-based epoch 1)
WRITE_KILLED_AT = (1, 4)  # kill_during_write: killed inside the write of step 4's; step 2's must be intact


def data() -> tuple[np.ndarray, np.ndarray]:
    """x (48, 3, 6, 6) float32, y (48,) int64 in 0..2."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(48, 3, 6, 6)).astype(np.float32), rng.integers(0, 3, size=48)


def cnn(memory_format: str, optimizer: str, precision: str) -> Sequential:
    deepzen.seed(0)
    model = Sequential([Input((3, 6, 6)), Conv2D(4, 3), BatchNormalization(), Activation("relu"), Dropout(0.3),
                        Flatten(), Dense(3)])
    model.compile(optimizer=OPTIMIZERS[optimizer](),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True),
                  metrics=["accuracy"], precision=precision, memory_format=memory_format, device="cpu")
    return model


def fit(cell: Cell, checkpoint: Path | None, before: tuple[Callback, ...] = (), after: tuple[Callback, ...] = ()
        ) -> tuple[Sequential, Callback, TrainingCheckpoint | None]:
    """The cell's fit, the same in every process; with ``checkpoint``, it checkpoints there (and resumes from it).

    ``before`` and ``after``: callbacks that run before and after the TrainingCheckpoint.
    """
    model = cnn(cell.memory_format, cell.optimizer, cell.precision)
    stateful = STATEFUL_CALLBACKS[cell.callback]()
    ckpt = None
    if checkpoint is not None:
        every_steps = None if cell.interruption == "epoch_end" else EVERY_STEPS
        ckpt = TrainingCheckpoint(checkpoint, every_steps=every_steps, catch_interrupt=False)
    x, y = data()
    model.fit(x, y, batch_size=BATCH_SIZE, epochs=EPOCHS, validation_split=0.25, verbose=0,
              callbacks=[stateful, *before, *([ckpt] if ckpt else []), *after])
    return model, stateful, ckpt


GAN_CELL = "gan-auto-two_adams-float32-kill_mid_epoch"


def fit_gan(checkpoint: Path | None, after: tuple[Callback, ...] = ()):
    """A tiny DCGAN (channels-last on the CPU, generator average, uint8 pixels): 44 images, 5 steps an epoch."""
    from deepzen.generative import build_dcgan

    deepzen.seed(0)
    gan = build_dcgan((1, 8, 8), latent_dim=6, base_filters=4, generator_average=0.5)
    gan.compile(label_smoothing=0.1, device="cpu")
    ckpt = TrainingCheckpoint(checkpoint, every_steps=EVERY_STEPS, catch_interrupt=False) if checkpoint else None
    pixels = np.random.default_rng(0).integers(0, 256, size=(44, 8, 8), dtype=np.uint8)
    gan.fit(pixels, epochs=3, batch_size=BATCH_SIZE, verbose=0, callbacks=[*([ckpt] if ckpt else []), *after])
    return gan, ckpt


# -- the interruptions ---------------------------------------------------------------------------------
class CrashAtEpochBegin(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


class WaitForKillAfterStep(Callback):
    """Once TrainingCheckpoint saved at ``at`` = (epoch, steps done) -- it runs last at every event -- the next
    step begins: say so there, and wait to be killed."""

    def __init__(self, at: tuple[int, int]):
        self.at = at

    def on_train_batch_begin(self, step, logs=None):
        if (self.model.fit_state.epoch, step) == self.at:
            print(f"ready {os.getpid()}", flush=True)
            time.sleep(600)


class WaitForKillInsideWrite(Callback):
    """Before TrainingCheckpoint (which runs last at every event) saves at ``at``: makes that file write say so
    and wait."""

    def __init__(self, at: tuple[int, int], path: Path):
        self.at, self.path = at, path

    def on_train_batch_end(self, step, logs=None):
        if (self.model.fit_state.epoch, step + 1) == self.at:
            real_replace = os.replace

            def replace(source, target):  # the temporary file is written; the rename would commit it
                if Path(target) == self.path:
                    print(f"ready {os.getpid()}", flush=True)
                    time.sleep(600)
                real_replace(source, target)

            os.replace = replace


def child_main(cell_id: str, checkpoint: str) -> None:
    """In the child process: the cell's fit, which stops (to be killed) where the cell's interruption says."""
    checkpoint = Path(checkpoint)
    if cell_id == GAN_CELL:
        fit_gan(checkpoint, after=(WaitForKillAfterStep(KILL_AT),))
        print("finished without being killed", flush=True)
        return
    cell = next(cell for cell in CELLS if cell.id == cell_id)
    if cell.interruption == "kill_mid_epoch":
        fit(cell, checkpoint, after=(WaitForKillAfterStep(KILL_AT),))
    else:
        fit(cell, checkpoint, before=(WaitForKillInsideWrite(WRITE_KILLED_AT, checkpoint),))
    print("finished without being killed", flush=True)


def launcher_main(threads: int) -> None:
    """A process that imports torch and deepzen once and forks a child process per cell to be killed.

    It reads ``<cell id> <checkpoint path>`` lines on stdin; each child runs :func:`child_main` and
    prints ``ready <pid>`` at its kill point; once the child is gone the launcher prints ``exited <status>``.
    (Starting a fresh interpreter per cell costs seconds here: torch's optimizers import torch._dynamo.)
    """
    torch.set_num_threads(threads)  # as the test process has it: the numbers depend on it
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])  # imports torch._dynamo; nothing is computed before a fork
    for line in sys.stdin:
        cell_id, checkpoint = line.rstrip("\n").split(" ", 1)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child_main(cell_id, checkpoint)
                code = 0
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(f"exited {status}", flush=True)


LAUNCHER = """
import sys
sys.path.insert(0, sys.argv[1])
import test_resume_matrix
test_resume_matrix.launcher_main(int(sys.argv[2]))
"""


class Launcher:
    """The test's side of :func:`launcher_main`: starts a cell's child process and ``kill -9``s it when it is ready."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(Path(__file__).parent),
                                         str(torch.get_num_threads())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)

    def _read_line(self, timeout: float = 120.0) -> str:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, f"the launcher said nothing for {timeout} s"
        return self.process.stdout.readline().strip()

    def kill_when_ready(self, cell: Cell, checkpoint: Path) -> None:
        self.process.stdin.write(f"{cell.id} {checkpoint}\n")
        self.process.stdin.flush()
        line = self._read_line()
        if not line.startswith("ready "):  # it ended by itself: read up to the launcher's "exited", then fail
            said = [line]
            while not said[-1].startswith("exited"):
                said.append(self._read_line())
            raise AssertionError(f"the child process did not reach its kill point (it said {said})")
        os.kill(int(line.split()[1]), signal.SIGKILL)
        status = self._read_line()
        assert status.startswith("exited ") and os.WIFSIGNALED(int(status.split()[1])) \
            and os.WTERMSIG(int(status.split()[1])) == signal.SIGKILL, status

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the tensors are tiny, and on a busy machine two threads wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def launcher(one_thread):
    launcher = Launcher()
    yield launcher
    launcher.close()


def interrupt(cell: Cell, checkpoint: Path, launcher: Launcher) -> tuple[int, int]:
    """Interrupts the cell's fit as the cell says; returns the (epoch, step) it must resume from."""
    if cell.interruption == "epoch_end":
        with pytest.raises(CallbackError, match="simulated crash"):
            fit(cell, checkpoint, after=(CrashAtEpochBegin(2),))
        return 2, 0
    launcher.kill_when_ready(cell, checkpoint)
    if cell.interruption == "kill_mid_epoch":
        return KILL_AT
    leftovers = [p.name for p in checkpoint.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1, "the child was not killed inside a checkpoint write"
    return WRITE_KILLED_AT[0], WRITE_KILLED_AT[1] - EVERY_STEPS  # the previous checkpoint


# -- comparing runs --------------------------------------------------------------------------------------
def assert_same_tree(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        if not torch.equal(a, b):
            difference = (a.double() - b.double()).abs().max().item()
            raise AssertionError(f"{where} differs (by up to {difference:.3g})")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_tree(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}/{index}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(resumed: tuple, reference: tuple) -> None:
    (model, stateful, _), (reference_model, reference_stateful, _) = resumed, reference
    assert_same_tree(model.state_dict(), reference_model.state_dict(), "weights")
    assert_same_tree(model.optimizer.state_dict(), reference_model.optimizer.state_dict(), "optimizer")
    assert_same_tree(stateful.state_dict(), reference_stateful.state_dict(), type(stateful).__name__)
    assert model.history.epoch == reference_model.history.epoch
    assert model.history.history == reference_model.history.history
    x, y = data()
    assert model.evaluate(x, y, verbose=0) == reference_model.evaluate(x, y, verbose=0)


# -- the matrix ------------------------------------------------------------------------------------------
def test_the_cells_cover_every_pair_of_settings():
    names = [field.name for field in fields(Cell)]
    assert len(set(CELLS)) == len(CELLS)
    for cell in CELLS:
        for name in names:
            assert getattr(cell, name) in DIMENSIONS[name]
    for first, second in itertools.combinations(names, 2):
        covered = {(getattr(cell, first), getattr(cell, second)) for cell in CELLS}
        assert covered == set(itertools.product(DIMENSIONS[first], DIMENSIONS[second])), (first, second)


@pytest.mark.parametrize("cell", CELLS, ids=resume_matrix_cells())
def test_resume_is_bit_exact(cell: Cell, tmp_path, launcher):
    reference = fit(cell, None)
    checkpoint = tmp_path / "run.ckpt"
    epoch, step = interrupt(cell, checkpoint, launcher)
    position = checkpoint_position(checkpoint)  # hash-checked: the interruption left a whole checkpoint
    assert (position["epoch"], position["step"], position["finished"]) == (epoch, step, False)
    resumed = fit(cell, checkpoint)
    assert (resumed[2].resumed_from["epoch"], resumed[2].resumed_from["step"]) == (epoch, step)
    if cell.callback == "EarlyStopping":
        assert reference[1].stopped_epoch == 2 and len(reference[0].history.epoch) == 3
    assert_same_run(resumed, reference)


def test_a_channels_last_cnn_with_fused_adam_resumes_after_epoch_1_of_2_exactly(tmp_path):
    """The defect of issue 16: the optimizer state came back contiguous under channels-last weights."""
    x, y = data()

    def two_epochs(crash: bool):
        model = cnn("auto", "adam", "float32")
        extra = [CrashAtEpochBegin(1)] if crash else []
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=2, verbose=0,
                  callbacks=[TrainingCheckpoint(tmp_path / "c.ckpt", catch_interrupt=False), *extra])
        return model

    reference = cnn("auto", "adam", "float32")
    reference.fit(x, y, batch_size=BATCH_SIZE, epochs=2, verbose=0)
    with pytest.raises(CallbackError, match="simulated crash"):
        two_epochs(crash=True)
    resumed = two_epochs(crash=False)
    assert resumed.engine.channels_last and resumed.optimizer.defaults["fused"]
    assert_same_tree(resumed.state_dict(), reference.state_dict(), "weights")
    assert resumed.history.history == reference.history.history
    conv = resumed.layers[0].weight  # the Conv2D
    assert resumed.optimizer.state[conv]["exp_avg"].stride() == conv.stride()


# -- malformed checkpoints ---------------------------------------------------------------------------
class CrashAfterStep(Callback):
    """Crashes as the step after ``at`` = (epoch, steps done) begins, once TrainingCheckpoint saved at ``at``."""

    def __init__(self, at: tuple[int, int]):
        self.at = at

    def on_train_batch_begin(self, step, logs=None):
        if (self.model.fit_state.epoch, step) == self.at:
            raise RuntimeError("simulated crash")


MALFORMED_CELL = Cell("auto", "adam", "float32", "EarlyStopping", "kill_mid_epoch")


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint taken after step 2 of epoch 2 (it holds an epoch's progress and EarlyStopping's state)."""
    path = tmp_path_factory.mktemp("malformed") / "valid.ckpt"
    with pytest.raises(CallbackError, match="simulated crash"):
        fit(MALFORMED_CELL, path, after=(CrashAfterStep(KILL_AT),))
    return path


def rewritten(saved: Path, folder: Path, edit) -> Path:
    """A copy of the checkpoint ``saved`` with ``edit(metadata, tensors)`` applied, written with a valid hash."""
    tensors, metadata = read_tensors(saved)
    edit(metadata, tensors)
    path = folder / "edited.ckpt"
    write_tensors(path, tensors, metadata)
    return path


def _set(name, value):
    return lambda metadata, tensors: metadata.__setitem__(name, value)


MALFORMED_HEADERS = {
    "epoch 1000": (_set("epoch", 1000), "'epoch' must be in \\[0, 4\\] .*Received: 1000"),
    "epoch -3": (_set("epoch", -3), "'epoch' must be in \\[0, 4\\] .*Received: -3"),
    "step = steps": (_set("step", 5), "'step' must be 0, or inside epoch 2 of 4 \\(below its 5 steps\\). Received: 5"),
    "step -1": (_set("step", -1), "'step' must be 0.*Received: -1"),
    "step in no epoch": (lambda m, t: m.update(epoch=4), "'step' must be 0, or inside epoch 5 of 4"),
    "version 3": (_set("checkpoint", 3), "checkpoint version 3; this deepzen reads versions 1 to 2"),
    "version as text": (_set("checkpoint", "1"), "'checkpoint' must be int. Received: '1'"),
    "missing optimizers": (lambda m, t: m.pop("optimizers"), "its header has no 'optimizers'"),
    "missing epoch": (lambda m, t: m.pop("epoch"), "its header has no 'epoch'"),
    "epoch as text": (_set("epoch", "1"), "'epoch' must be int. Received: '1'"),
    "epoch as bool": (_set("epoch", True), "'epoch' must be int. Received: True"),
    "finished as int": (_set("finished", 0), "'finished' must be bool. Received: 0"),
    "stopped as null": (_set("stopped", None), "'stopped' must be bool. Received: None"),
    "epochs 0": (_set("epochs", 0), "'epochs' must be a positive integer. Received: 0"),
    "batch_size 0": (_set("batch_size", 0), "'batch_size' must be a positive integer. Received: 0"),
    "steps as float": (_set("steps", 5.0), "'steps' must be int or null. Received: 5.0"),
    "world size 2 of 1 rank": (_set("world_size", 2), "the states of 1 processes for a world size of 2"),
    "ranks as dict": (_set("ranks", {}), "'ranks' must be list. Received: {}"),
    "optimizers as list": (_set("optimizers", [1, 2]), "'optimizers' must be dict. Received: \\[1, 2\\]"),
    "history of text": (lambda m, t: m["history"]["history"].update(loss="low"), "'history' must be"),
}


@pytest.mark.parametrize("edit, message", MALFORMED_HEADERS.values(), ids=MALFORMED_HEADERS.keys())
def test_a_malformed_checkpoint_header_is_refused_naming_the_file(edit, message, saved_checkpoint, tmp_path):
    path = rewritten(saved_checkpoint, tmp_path, edit)
    with pytest.raises(ModelFileError, match=message) as refused:
        read_checkpoint(path)
    assert str(path) in str(refused.value)
    with pytest.raises(ModelFileError, match=message):  # what a fit resuming from it sees
        fit(MALFORMED_CELL, path)


def _drop_tensor(prefix: str, suffix: str = ""):
    def edit(metadata, tensors):
        del tensors[next(key for key in sorted(tensors) if key.startswith(prefix) and key.endswith(suffix))]
    return edit


def _replace_tensor(prefix: str, suffix: str, value):
    def edit(metadata, tensors):
        tensors[next(key for key in sorted(tensors) if key.startswith(prefix) and key.endswith(suffix))] = value
    return edit


def _set_in(tree_name: str, path: tuple, value):
    """Sets the node at ``path`` (dict keys, list/tuple indexes) of the flattened tree ``metadata[tree_name]``."""
    def edit(metadata, tensors):
        node = metadata[tree_name]
        for key in path[:-1]:
            node = _child(node, key)
        if isinstance(node, dict) and "__dict__" in node:
            next(pair for pair in node["__dict__"] if pair[0] == path[-1])[1] = value
        else:
            (node["__tuple__"] if isinstance(node, dict) and "__tuple__" in node else node)[path[-1]] = value
    return edit


def _child(node, key):
    if isinstance(node, dict) and "__dict__" in node:
        return next(value for name, value in node["__dict__"] if name == key)
    return (node["__tuple__"] if isinstance(node, dict) and "__tuple__" in node else node)[key]


MALFORMED_STATES = {
    "missing optimizer tensor": (_drop_tensor("optimizer/", "exp_avg"),
                                 "its optimizer state: a saved state names the tensor"),
    "missing weight": (_drop_tensor("model/", "weight"), "its model weights do not fit this model"),
    "weight of another shape": (_replace_tensor("model/", "dense.weight", torch.zeros(2, 2)),
                                "its model weights do not fit this model"),
    "exp_avg of another shape": (_replace_tensor("optimizer/", "exp_avg", torch.zeros(7)),
                                 "its optimizer state: its 'exp_avg' of shape \\(7,\\) does not fit"),
    "learning rate as text": (_set_in("optimizers", ("optimizer", "param_groups", 0, "lr"), "fast"),
                              "its optimizer state: its 'lr' is 'fast'"),
    "betas of one number": (_set_in("optimizers", ("optimizer", "param_groups", 0, "betas"), {"__tuple__": [0.9]}),
                            "its optimizer state: its 'betas' is \\(0.9,\\)"),
    "no parameter groups": (_set_in("optimizers", ("optimizer", "param_groups",), []),
                            "its optimizer state: it holds state for parameters \\[0, 1, 2, 3, 4\\] that no"),
    "two parameter groups": (lambda m, t: _child(m["optimizers"]["optimizer"], "param_groups").append({"__dict__": [["params", []]]}),
                             "its optimizer state \\(ValueError: .*parameter groups"),
    "state of an unknown parameter": (_set_in("optimizers", ("optimizer", "state",), {"__dict__": [[99, {"__dict__": []}]]}),
                                      "its optimizer state: it holds state for parameters \\[99\\]"),
    "optimizer param_groups of text": (_set_in("optimizers", ("optimizer", "param_groups",), "all"),
                                       "its optimizer state: it must be"),
    "bad tree": (_set("callbacks", {"__not_a_tree__": 1}), "its callback states: a saved state holds an object"),
    "array of objects": (_set_in("ranks", (0, "rng", "numpy", 1, "dtype"), "|O"),
                         "its RNG and epoch progress: the array .* has no numeric dtype"),
    "rng state of text": (_set_in("ranks", (0, "rng", "python"), "seed"),
                          "its RNG and epoch progress \\((TypeError|ValueError)"),
    "callback state without wait": (lambda m, t: m.__setitem__("callbacks", {"__dict__": [
        ["EarlyStopping", {"__dict__": [["best", 1.0]]}]]}), "its callback states: EarlyStopping must be a dict "
                                                            "with the key 'wait'"),
    "callback wait as text": (_set_in("callbacks", ("EarlyStopping", "wait"), "long"),
                              "its callback states: EarlyStopping/wait must be a number. Received: 'long'"),
    "callback states as a tuple": (_set("callbacks", {"__tuple__": []}),
                                   "its callback states: the callback states must be a dict"),
    "progress of other steps": (lambda m, t: m.update(step=4),
                                "the progress of the interrupted epoch does not describe"),
}


@pytest.mark.parametrize("edit, message", MALFORMED_STATES.values(), ids=MALFORMED_STATES.keys())
def test_a_checkpoint_whose_states_do_not_fit_is_refused_naming_the_file(edit, message, saved_checkpoint, tmp_path):
    path = rewritten(saved_checkpoint, tmp_path, edit)
    with pytest.raises(ModelFileError, match=message) as refused:
        fit(MALFORMED_CELL, path)
    assert str(path) in str(refused.value)


def test_a_version_1_checkpoint_still_resumes(saved_checkpoint, tmp_path):
    """Version 1 held the compiled optimizer's state as "optimizer"; version 2 holds "optimizers" by name."""
    def as_version_1(metadata, tensors):
        metadata["checkpoint"] = 1
        metadata["optimizer"] = metadata.pop("optimizers")["optimizer"]

    path = rewritten(saved_checkpoint, tmp_path, as_version_1)
    _, _, checkpoint = fit(MALFORMED_CELL, path)
    assert (checkpoint.resumed_from["epoch"], checkpoint.resumed_from["step"]) == KILL_AT


def test_a_gan_killed_inside_an_epoch_resumes_bit_exactly(tmp_path, launcher):
    reference, _ = fit_gan(None)
    checkpoint = tmp_path / "gan.ckpt"
    launcher.kill_when_ready(SimpleNamespace(id=GAN_CELL), checkpoint)
    position = checkpoint_position(checkpoint)
    assert (position["epoch"], position["step"], position["finished"]) == (*KILL_AT, False)
    resumed, ckpt = fit_gan(checkpoint)
    assert (ckpt.resumed_from["epoch"], ckpt.resumed_from["step"]) == KILL_AT
    assert_same_tree(resumed.state_dict(), reference.state_dict(), "weights")  # G, D, the averaged G
    assert set(reference.optimizers) == {"generator_optimizer", "discriminator_optimizer"}
    for name, optimizer in reference.optimizers.items():
        assert_same_tree(resumed.optimizers[name].state_dict(), optimizer.state_dict(), name)
    assert resumed.history.epoch == reference.history.epoch == [0, 1, 2]
    assert resumed.history.history == reference.history.history
