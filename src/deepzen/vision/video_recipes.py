"""Video recipe: which digits appear in a Moving MNIST clip and which way each one moves.

``deepzen train moving-mnist-video`` trains a 3D CNN (``model=c3d``, or ``model=r2plus1d``) on clips
of :mod:`deepzen.data.moving_mnist` (two digits, 20 frames of 64x64) and, in the same run, the
baseline that averages a 2D CNN over the frames (``baseline=false`` skips it). Each clip's label has
one slot per digit class: absent, or present and moving left / right / up / down (5 ids; see
:func:`deepzen.data.moving_mnist.digit_directions`). The network predicts the 10 slots at once.

Reported on the test clips, for each model (prefix ``test_`` for the 3D CNN, ``baseline_`` for the
frame average):

- ``digits_accuracy``: the clips whose set of present digits is predicted exactly;
- ``direction_accuracy``: of the digits that appear, those predicted present AND moving the right way;
- ``clip_accuracy``: the clips whose 10 slots are all right.

Target for the 3D CNN: direction accuracy >= 0.90. The frame average cannot order the frames, so
it can at best tell a digit's axis of motion (horizontal or vertical), not its sign: about 0.5.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import deepzen
from deepzen.data.images import load_mnist
from deepzen.data.moving_mnist import LABEL_NAMES, FreshClips, labelled_clips
from deepzen.recipes import register_recipe, write_text
from deepzen.training.callbacks import FollowEpochs
from deepzen.vision.video import create

NUM_DIGITS = 10


@dataclass
class VideoConfig:
    data: str | None = None  # the MNIST folder the clips are drawn from (default $DEEPZEN_DATA/mnist)
    model: str = "c3d"  # the 3D CNN: "c3d" or "r2plus1d"
    baseline: bool = True  # also train the 2D CNN averaged over the frames, and report it
    train_clips: int = 3000  # training clips per epoch, from MNIST's training digits
    redraw: bool = True  # draw new training clips every epoch (false: one fixed set of train_clips)
    test_clips: int = 600  # test clips, from MNIST's test digits
    frames: int = 20  # frames per clip
    shared_direction: bool = True  # the two digits of a clip set off in one direction; false: one each
    filters: int = 16  # the first stage's filters (doubled at each stage)
    epochs: int = 40  # 15 gave direction accuracy 0.873, 25 gave 0.893, 40 gives 0.905 (BENCHMARKS.md)
    batch_size: int = 16
    learning_rate: float = 2e-3  # Adam's peak rate, decayed to 0 along a cosine over the epochs
    seed: int = 0
    verbose: int = 2


def clip_scores(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The three accuracies of the module docstring, from true and predicted slot ids ``(N, 10)``."""
    present = labels > 0
    return {"digits_accuracy": float(((predicted > 0) == present).all(1).mean()),
            "direction_accuracy": float((predicted[present] == labels[present]).mean()),
            "clip_accuracy": float((predicted == labels).all(1).mean())}


def training_clips(config: VideoConfig, images: np.ndarray, labels: np.ndarray) -> dict:
    """``fit``'s arguments for the training clips, from the MNIST training digits ``images``:
    :class:`~deepzen.data.moving_mnist.FreshClips` (``redraw``), else one fixed set of clips."""
    options = {"frames": config.frames, "shared_direction": config.shared_direction}
    if config.redraw:
        clips = FreshClips(images, labels, config.train_clips, config.batch_size, seed=config.seed, **options)
        return {"x": clips, "callbacks": [FollowEpochs(clips)]}
    clips, clip_labels = labelled_clips(images, labels, config.train_clips, seed=config.seed, **options)
    return {"x": clips.astype(np.float32), "y": clip_labels, "batch_size": config.batch_size}  # the models rescale


def train_and_score(name: str, config: VideoConfig, train: dict, x_test, y_test) -> tuple[dict, object]:
    """Trains one model on ``train`` (:func:`training_clips`) and scores it on the test clips: (scores, model)."""
    deepzen.seed(config.seed)
    model = create(name, (NUM_DIGITS, len(LABEL_NAMES)), x_test.shape[1:], filters=config.filters)
    steps = config.epochs * -(-config.train_clips // config.batch_size)  # either way, batches of batch_size
    schedule = deepzen.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=schedule),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(**train, epochs=config.epochs, validation_data=(x_test[:200], y_test[:200]),
                        verbose=config.verbose)
    predicted = model.predict(x_test, batch_size=50).argmax(-1)  # (N, 10) slot ids
    return {**clip_scores(y_test, predicted), "parameters": sum(p.numel() for p in model.parameters())}, \
        (model, history)


def moving_mnist_video(config: VideoConfig, run_dir: Path) -> dict:
    from deepzen.training.plots import plot_history

    if config.model not in ("c3d", "r2plus1d"):
        raise ValueError(f"moving-mnist-video expects model 'c3d' or 'r2plus1d'. Received: model={config.model!r}")
    digits, digit_labels, test_digits, test_labels = load_mnist(config.data)
    x_test, y_test = labelled_clips(test_digits, test_labels, config.test_clips, seed=config.seed + 1,
                                    frames=config.frames, shared_direction=config.shared_direction)
    x_test = x_test.astype(np.float32)  # pixels 0..255; the models rescale
    scores, (model, history) = train_and_score(config.model, config, training_clips(config, digits, digit_labels),
                                               x_test, y_test)
    model.save(run_dir / "model.dz")
    plot_history(history, run_dir / "training_curves.png", title=f"moving-mnist-video ({config.model})")
    metrics = {f"test_{key}": value for key, value in scores.items()}
    if config.baseline:
        baseline, (baseline_model, baseline_history) = train_and_score(
            "frame_average", config, training_clips(config, digits, digit_labels), x_test, y_test)
        baseline_model.save(run_dir / "baseline.dz")
        plot_history(baseline_history, run_dir / "baseline_curves.png", title="moving-mnist-video (frame average)")
        metrics.update({f"baseline_{key}": value for key, value in baseline.items()})
    write_text(run_dir / "labels.json", json.dumps({
        "slots": [str(d) for d in range(NUM_DIGITS)], "slot_ids": list(LABEL_NAMES)}, indent=2) + "\n")
    return {**metrics, "train_clips": config.train_clips, "test_clips": len(x_test)}


register_recipe("moving-mnist-video", VideoConfig,
                "3D CNN (C3D or R(2+1)D) vs a frame-averaged 2D CNN on Moving MNIST: which digits appear and "
                "which way each moves; target direction accuracy >= 0.90",
                dataset="Moving MNIST clips generated from the MNIST digits",
                target="test direction accuracy >= 0.90")(moving_mnist_video)
