"""A GAN on Model.fit resumes exactly: 3 epochs straight against an interrupted run resumed from its
TrainingCheckpoint (at an epoch end, and inside an epoch) give bit-identical weights of both networks
and of the averaged generator, both optimizers' states and the history. CPU, default settings (the
DCGAN's convolutions train channels-last there), uint8 pixels scaled batch by batch."""

import numpy as np
import pytest
import torch

import deepzen
from deepzen.callbacks import Callback
from deepzen.generative import build_dcgan
from deepzen.training.callbacks import CallbackError
from deepzen.training.checkpoint import TrainingCheckpoint, checkpoint_position, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

EPOCHS, BATCH_SIZE, EVERY_STEPS = 3, 8, 2  # 44 images: 5 full batches an epoch (the last 4 images dropped)


class Crash(Callback):
    """Raises after the batch ``step`` (0-based) of ``epoch``, as the next one begins (the checkpoint, last at
    every event, has saved that step by then)."""

    def __init__(self, epoch: int, step: int):
        self.epoch, self.step = epoch, step

    def on_train_batch_begin(self, step, logs=None):
        if (self.model.fit_state.epoch, step - 1) == (self.epoch, self.step):
            raise RuntimeError("simulated crash")


def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(44, 8, 8), dtype=np.uint8)  # (N, H, W) pixels


def fit(checkpoint=None, every_steps=None, crash=None):
    deepzen.seed(0)
    gan = build_dcgan((1, 8, 8), latent_dim=6, base_filters=4, generator_average=0.5)
    gan.compile(label_smoothing=0.1, device="cpu")
    callbacks = [TrainingCheckpoint(checkpoint, every_steps=every_steps)] if checkpoint is not None else []
    callbacks += [crash] if crash is not None else []
    gan.fit(images(), epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0, callbacks=callbacks)
    return gan


def assert_identical(a, b, where):
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}/{index}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(resumed, reference):
    assert any(k.startswith("averaged_generator.") for k in reference.state_dict())
    assert_identical(resumed.state_dict(), reference.state_dict(), "weights")  # G, D and the average
    for name in ("generator_optimizer", "discriminator_optimizer"):
        assert reference.optimizers[name].state_dict()["state"], name  # it has stepped
        assert_identical(resumed.optimizers[name].state_dict(), reference.optimizers[name].state_dict(), name)
    assert resumed.history.epoch == reference.history.epoch == list(range(EPOCHS))
    assert resumed.history.history == reference.history.history
    assert list(reference.history.history) == ["d_loss", "g_loss", "d_real", "d_fake"]


@pytest.mark.parametrize("interruption", ["epoch_end", "mid_epoch"])
def test_an_interrupted_gan_resumes_bit_exactly(interruption, tmp_path):
    reference = fit()
    assert reference.engine.channels_last  # the default on the CPU: the layout the optimizers' state must keep
    path = tmp_path / "gan.ckpt"
    if interruption == "epoch_end":  # crash in epoch 2 before its first checkpoint: resume from epoch 1's end
        where, crash = (1, 0), Crash(1, 0)
        with pytest.raises(CallbackError, match="simulated crash"):
            fit(path, crash=crash)
    else:  # crash after step 3 of epoch 2: resume from the checkpoint after its step 2
        where, crash = (1, 2), Crash(1, 2)
        with pytest.raises(CallbackError, match="simulated crash"):
            fit(path, every_steps=EVERY_STEPS, crash=crash)
    position = checkpoint_position(path)
    assert (position["epoch"], position["step"], position["finished"]) == (*where, False)
    metadata, _ = read_checkpoint(path)
    assert set(metadata["optimizers"]) == {"generator_optimizer", "discriminator_optimizer"}
    resumed = fit(path, every_steps=EVERY_STEPS if interruption == "mid_epoch" else None)
    assert_same_run(resumed, reference)


def test_a_checkpoint_of_another_models_optimizers_is_refused(tmp_path):
    from deepzen.layers import Dense
    from deepzen.models import Sequential
    from deepzen.training.serialization import ModelFileError, read_tensors, write_tensors

    path = tmp_path / "gan.ckpt"
    fit(path)
    tensors, metadata = read_tensors(path)
    metadata["optimizers"] = {"optimizer": metadata["optimizers"]["generator_optimizer"]}
    write_tensors(path, tensors, metadata)
    with pytest.raises(ModelFileError, match="optimizers \\['optimizer'\\]; this model steps"):
        fit(path)
    del Dense, Sequential
