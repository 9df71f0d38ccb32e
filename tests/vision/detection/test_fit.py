"""Detector training on ``Model.fit`` is the loop the detection benchmarks were measured with, bit for bit,
and resumes exactly from a checkpoint taken inside an epoch.

The reference below is that loop as it was written before the detector moved onto ``Model.fit``
(torch's AdamW, a ``LambdaLR`` warm-up over the first epoch then a cosine to zero, one seeded generator
drawing each epoch's order, augmentation per batch): ``fit_detector`` must leave the same weights, so
BENCHMARKS.md's detection numbers stand for the fit-based training.
"""

import math

import pytest
import torch

from deepzen.optimizers.schedules import CosineDecay
from deepzen.vision.detection.augment import DetectionAugment
from deepzen.vision.detection.loss import MultiboxLoss
from deepzen.vision.detection.model import SSD
from deepzen.training.callbacks import Callback
from deepzen.training.checkpoint import TrainingCheckpoint
from deepzen.vision.detection.train import Detector, WarmupCosine, fit_detector


def reference_loop(model, images, targets, *, epochs, batch_size, learning_rate, weight_decay, augment, seed):
    """The detector's former training loop (logs left out)."""
    loss = MultiboxLoss(model.anchors)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    total, warmup = epochs * steps_per_epoch, steps_per_epoch

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    order = torch.Generator().manual_seed(seed)
    model.train()
    augment.train()
    rates = []
    for _ in range(epochs):
        permutation = torch.randperm(len(images), generator=order)
        for first in range(0, len(images), batch_size):
            index = permutation[first:first + batch_size]
            batch, batch_targets = augment(images[index].float() / 255, targets[index])
            class_loss, box_loss = loss.terms(batch_targets, model(batch))
            optimizer.zero_grad(set_to_none=True)
            (class_loss + box_loss).backward()
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
    return rates


def scenes(count=12, seed=0):
    """Random bright rectangles of two classes on 64x64 RGB images, 0-2 per image (an empty one included)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 60, (count, 3, 64, 64), generator=generator, dtype=torch.uint8)
    targets = torch.full((count, 2, 5), -1.0)
    for i in range(1, count):
        for j in range(1 + i % 2):
            x, y = (int(v) for v in torch.randint(0, 36, (2,), generator=generator))
            w, h = (int(v) for v in torch.randint(10, 28, (2,), generator=generator))
            images[i, :, y:y + h, x:x + w] = 220
            targets[i, j] = torch.tensor([x, y, x + w, y + h, (i + j) % 2], dtype=torch.float32)
    return images, targets


def network():
    torch.manual_seed(3)
    return SSD(num_classes=2, in_channels=3, image_size=(64, 64), width=4, pyramid_channels=8)


SETTINGS = {"epochs": 2, "batch_size": 5, "learning_rate": 3e-3, "weight_decay": 5e-4, "seed": 5}


def augmentation():
    return DetectionAugment(flip=True, scale=(0.6, 1.4), photometric=0.3, seed=7)


def test_fit_detector_trains_the_weights_of_the_former_loop():
    images, targets = scenes()  # 12 images, batches of 5: the last batch of each epoch is short
    reference, trained = network(), network()
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), trained.state_dict().values()))
    reference_loop(reference, images, targets, augment=augmentation(), **SETTINGS)
    history = fit_detector(trained, images, targets, augment=augmentation(), verbose=0, **SETTINGS)
    assert [entry["epoch"] for entry in history] == [1, 2]
    before = network().state_dict()
    for key, value in reference.state_dict().items():
        assert torch.equal(trained.state_dict()[key], value), key
        if value.is_floating_point() and "running" not in key and value.numel() > 8:
            assert not torch.equal(value, before[key]), f"{key} did not train"


def test_warmup_cosine_is_the_former_lambda_schedule():
    """The rate of update k is LambdaLR's: lr * factor(k), to the last bit (3 epochs of 4 steps, 1 of 5, 2 of 1)."""
    for epochs, steps in ((3, 4), (1, 5), (2, 1)):
        total, warmup, rate = epochs * steps, steps, 3e-3
        model = torch.nn.Linear(1, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=rate)

        def factor(step):
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        lambda_lr = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        schedule = WarmupCosine(rate, warmup, total)
        for k in range(total + 1):
            assert schedule(k) == optimizer.param_groups[0]["lr"], (epochs, steps, k)
            optimizer.step()
            lambda_lr.step()
        assert epochs == 1 or schedule(total) == 0.0  # a single epoch has no decay


def test_warmup_cosine_reads_cosine_decay():
    """After the warm-up it is Keras's CosineDecay with warmup, unshifted; during it, one step ahead."""
    schedule = WarmupCosine(0.1, 5, 25)
    cosine = CosineDecay(0.0, decay_steps=20, warmup_target=0.1, warmup_steps=5)
    assert [schedule(k) for k in range(5)] == [cosine(k + 1) for k in range(5)]
    assert [schedule(k) for k in range(5, 30)] == [cosine(k) for k in range(5, 30)]
    with pytest.raises(ValueError, match="warmup_steps <= total_steps"):
        WarmupCosine(0.1, 6, 5)


class _CtrlCAfter(Callback):
    """Plays a Ctrl-C at the end of step ``step`` of epoch ``epoch``: the checkpoint saves there and stops the fit."""

    def __init__(self, checkpoint, epoch, step):
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step

    def on_train_batch_end(self, step, logs=None):
        if (self.model.fit_state.epoch, step) == (self.epoch, self.step):
            self.checkpoint.interrupted = True


def test_a_fit_interrupted_inside_an_epoch_resumes_exactly(tmp_path):
    """The checkpoint holds the augmentation's generator and the schedule's position: the resumed fit ends
    with the weights, optimizer state and logs of the uninterrupted one."""
    images, targets = scenes()

    def fit(path, callbacks=()):
        torch.manual_seed(11)  # fit draws its shuffle seed here; the checkpoint restores it on resume
        detector = Detector(network(), augment=augmentation(), order_seed=None)
        detector.compile(optimizer=torch.optim.AdamW(detector.network.parameters(), lr=1e-3))
        checkpoint = TrainingCheckpoint(path, every_steps=None, catch_interrupt=False)
        extra = [cb(checkpoint) for cb in callbacks]
        history = detector.fit(images, targets, batch_size=5, epochs=2, verbose=0, callbacks=[*extra, checkpoint])
        return detector, history

    straight, straight_history = fit(tmp_path / "straight.ckpt")
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "resumed.ckpt", [lambda checkpoint: _CtrlCAfter(checkpoint, epoch=1, step=0)])
    resumed, resumed_history = fit(tmp_path / "resumed.ckpt")
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    moments = [detector.optimizer.state_dict()["state"][0]["exp_avg"] for detector in (resumed, straight)]
    assert torch.equal(*moments)
    assert resumed_history.history == straight_history.history
    assert set(straight_history.history) == {"loss", "class_loss", "box_loss", "learning_rate"}
    assert "augment._extra_state" in straight.state_dict()  # the augmentation generator is checkpointed
