"""Image-classification recipes, registered by name for the command line and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import deepzen
from deepzen.recipes import register_recipe


@dataclass
class DigitsConfig:
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    filters: int = 32  # filters of the first convolution (the second has twice as many)
    seed: int = 0
    verbose: int = 2


def digits_cnn_model(filters: int = 32):
    """Conv-pool-conv-pool-dense for 8x8 grey images: (N, 1, 8, 8) -> 10 logits."""
    from deepzen.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
    from deepzen.models import Sequential

    return Sequential([
        Input((1, 8, 8)),
        Conv2D(filters, 3, padding="same", activation="relu"),   # (N, f, 8, 8)
        MaxPooling2D(2),                                          # (N, f, 4, 4)
        Conv2D(2 * filters, 3, padding="same", activation="relu"),
        MaxPooling2D(2),                                          # (N, 2f, 2, 2)
        Flatten(),
        Dropout(0.3),
        Dense(10),
    ], name="digits_cnn")


@register_recipe("digits-cnn", DigitsConfig,
                 "A small CNN on the 8x8 digits embedded in scikit-learn (the demo; needs no download)",
                 dataset="scikit-learn's 8x8 digits (embedded, no download)", target="test accuracy (about 98%)")
def digits_cnn(config: DigitsConfig, run_dir: Path) -> dict:
    from deepzen.data.images import load_digits_split
    from deepzen.training.plots import plot_history

    deepzen.seed(config.seed)
    x_train, y_train, x_test, y_test = load_digits_split(test_fraction=0.2, seed=config.seed)
    model = digits_cnn_model(config.filters)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=config.learning_rate),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=config.batch_size, epochs=config.epochs,
                        validation_split=0.1, verbose=config.verbose)
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    model.save(run_dir / "model.dz")
    plot_history(history, run_dir / "training_curves.png", title="digits-cnn")
    return {"test_accuracy": test_accuracy, "test_loss": test_loss, "train_samples": len(x_train),
            "test_samples": len(x_test)}


# -- image classification on real data ------------------------------------------------------------------
def _count(value: int) -> int | None:
    """Config convention for subset sizes: 0 means "all"."""
    return int(value) or None


def _image_data(config, **options):
    from deepzen.vision.tasks import load_image_data

    return load_image_data(config.dataset, config.data, train_samples=_count(config.train_samples),
                           test_samples=_count(config.test_samples), seed=config.seed, **options)


@dataclass
class LeNetConfig:
    """LeNet-5 (ReLU, max pooling) with Adam and a cosine learning-rate decay; no augmentation."""

    dataset: str = "mnist"  # or "fashion-mnist", "kmnist" (any MNIST-format folder)
    data: str | None = None  # folder with the four IDX files (default $DEEPZEN_DATA/<dataset>)
    epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 2e-3
    train_samples: int = 0  # 0: all 60,000
    test_samples: int = 0  # 0: all 10,000
    seed: int = 0
    verbose: int = 2


@register_recipe("mnist-lenet5", LeNetConfig,
                 "LeNet-5 on MNIST (or any MNIST-format set: data=PATH); target >= 99.0% test accuracy",
                 dataset="MNIST", target="test accuracy >= 99.0%")
def mnist_lenet5(config: LeNetConfig, run_dir: Path) -> dict:
    from deepzen.vision.tasks import cosine_schedule, fit_classifier, image_classifier, write_report

    deepzen.seed(config.seed)
    data = _image_data(config)
    model = image_classifier("lenet5", data, input_size=data.input_shape[-1])
    history = fit_classifier(model, data, deepzen.optimizers.Adam(learning_rate=config.learning_rate),
                             epochs=config.epochs, batch_size=config.batch_size,
                             schedule=cosine_schedule(config.learning_rate, config.epochs), verbose=config.verbose)
    return write_report(model, data, history, run_dir, title="mnist-lenet5")


@dataclass
class ResNetConfig:
    """A CIFAR ResNet (He et al. 2016) with augmentation, SGD + Nesterov momentum, weight decay.

    On CIFAR-10 the paper's settings are ``dataset=cifar10 epochs=164 schedule=step
    milestones=82,123 weight_decay=1e-4 nesterov=false warmup_epochs=0``: lr 0.1, batch 128, 64k
    iterations, divided by 10 at 32k and 48k; ResNet-20 reaches 91.25% there (the paper trains on
    45k images and keeps 5k for validation; the recipe trains on all 50k)::

        deepzen train mnist-resnet --set dataset=cifar10 --set epochs=164 --set schedule=step \
            --set milestones=82,123 --set weight_decay=1e-4 --set nesterov=false --set warmup_epochs=0
    """

    model: str = "resnet20"  # resnet20/32/44/56/110
    dataset: str = "mnist"  # "mnist", "fashion-mnist", "kmnist" or "cifar10"
    data: str | None = None  # the dataset's folder (default $DEEPZEN_DATA/<dataset>)
    augment: str = "auto"  # "digits" for MNIST-format sets, "cifar" for CIFAR-10; or "none"
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # or "step" (divide by 10 at each milestone epoch)
    milestones: tuple = (82, 123)  # schedule=step: epochs at which the rate is divided by 10
    warmup_epochs: int = 1
    label_smoothing: float = 0.0
    train_samples: int = 0  # 0: all
    test_samples: int = 0  # 0: all
    seed: int = 0
    verbose: int = 2


@register_recipe("mnist-resnet", ResNetConfig,
                 "CIFAR ResNet-20 family with augmentation on MNIST (target >= 99.5%), any MNIST-format folder "
                 "or CIFAR-10 (dataset=cifar10)",
                 dataset="MNIST (or CIFAR-10: dataset=cifar10)", target="test accuracy >= 99.5% on MNIST")
def mnist_resnet(config: ResNetConfig, run_dir: Path) -> dict:
    from deepzen.vision.tasks import cosine_schedule, fit_classifier, image_classifier, step_schedule, write_report

    if config.schedule not in ("cosine", "step"):
        raise ValueError(f"mnist-resnet expects schedule 'cosine' or 'step'. Received: schedule={config.schedule!r}")
    deepzen.seed(config.seed)
    data = _image_data(config)
    augment = config.augment if config.augment != "auto" else "cifar" if config.dataset == "cifar10" else "digits"
    model = image_classifier(config.model, data, augment=augment, seed=config.seed)
    if config.schedule == "cosine":
        schedule = cosine_schedule(config.learning_rate, config.epochs, warmup_epochs=config.warmup_epochs)
    else:
        schedule = step_schedule(config.learning_rate, config.milestones)
    optimizer = deepzen.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum,
                                       nesterov=config.nesterov, weight_decay=config.weight_decay)
    history = fit_classifier(model, data, optimizer, epochs=config.epochs, batch_size=config.batch_size,
                             schedule=schedule, label_smoothing=config.label_smoothing, verbose=config.verbose)
    return write_report(model, data, history, run_dir, title=f"{config.dataset}-{config.model}",
                        extra={"augment": augment})


@dataclass
class TransferConfig:
    """LeNet-5 trained on some MNIST digits, moved to the others with few labels (Yosinski et al. 2014 style)."""

    data: str | None = None  # MNIST folder (default $DEEPZEN_DATA/mnist)
    source_classes: tuple = (0, 1, 2, 3, 4)  # the digits LeNet-5 is first trained on
    target_classes: tuple = (5, 6, 7, 8, 9)  # the digits it is moved to
    per_class: int = 100  # labelled target images per class
    source_samples: int = 0  # source training images (0: all of those classes, about 30,600)
    source_epochs: int = 5  # epochs on the source digits
    source_learning_rate: float = 1e-3  # learning rate on the source digits
    target_epochs: int = 60  # epochs of each run on the target digits
    batch_size: int = 32
    learning_rate: float = 3e-3  # all three target runs (the head's rate when fine-tuning)
    backbone_factor: float = 0.1  # fine-tuning: the backbone's learning rate relative to the head's
    new_layers: tuple = ("pre_logits",)  # fine-tuning: layers drawn afresh and trained with the head
    feature_hidden: int = 128  # feature extraction: hidden units of the new classifier (0: linear)
    seed: int = 0
    verbose: int = 0


@register_recipe("mnist-transfer", TransferConfig,
                 "Transfer learning: LeNet-5 from MNIST digits 0-4 to 5-9 with 100 labels per class "
                 "(scratch vs feature extraction vs fine-tuning)",
                 dataset="MNIST digits 0-4 -> 5-9, 100 labels per class",
                 target="feature extraction and fine-tuning beat training from scratch")
def mnist_transfer(config: TransferConfig, run_dir: Path) -> dict:
    import copy

    from deepzen.models import Model
    from deepzen.vision import transfer
    from deepzen.vision.tasks import (accuracy, classification_loss, fit_classifier, image_classifier,
                                      load_image_data, write_report)

    deepzen.seed(config.seed)
    source = load_image_data("mnist", config.data, classes=config.source_classes,
                             train_samples=_count(config.source_samples), seed=config.seed)
    source_model = image_classifier("lenet5", source)
    fit_classifier(source_model, source, deepzen.optimizers.Adam(learning_rate=config.source_learning_rate),
                   epochs=config.source_epochs, batch_size=128, verbose=config.verbose)
    source_model.save(run_dir / "source_model.dz")

    # The target images are normalized like the source's, which is what the source network knows.
    target = load_image_data("mnist", config.data, classes=config.target_classes, train_per_class=config.per_class,
                             statistics=(source.mean, source.std), seed=config.seed)

    def train_on_target(model, optimizer):
        return fit_classifier(model, target, optimizer, epochs=config.target_epochs, batch_size=config.batch_size,
                              verbose=config.verbose)

    deepzen.seed(config.seed)
    scratch = image_classifier("lenet5", target)
    train_on_target(scratch, deepzen.optimizers.Adam(learning_rate=config.learning_rate))

    deepzen.seed(config.seed)
    trunk = source_model.module
    features = transfer.extract_features(trunk, target.x_train)  # (500, 400): the frozen trunk's feature maps
    extractor = transfer.feature_classifier(features.shape[1], target.num_classes,
                                            hidden=(config.feature_hidden,) if config.feature_hidden else ())
    extractor.compile(optimizer=deepzen.optimizers.Adam(learning_rate=config.learning_rate),
                      loss=classification_loss(), metrics=["accuracy"])
    extractor.fit(features, target.y_train, batch_size=config.batch_size, epochs=config.target_epochs,
                  verbose=config.verbose)

    deepzen.seed(config.seed)
    net = copy.deepcopy(trunk)
    transfer.replace_head(net, target.num_classes)
    if config.new_layers:  # LeNet's F5/F6 encode the source digits; the convolutions transfer
        transfer.reinitialize(net, config.new_layers)
    fine_tuned = Model(net, name="lenet5_fine_tuned")
    history = train_on_target(fine_tuned, transfer.fine_tuning_optimizer(
        net, "adam", learning_rate=config.learning_rate, backbone_factor=config.backbone_factor,
        head=(*config.new_layers, "classifier")))
    metrics = write_report(fine_tuned, target, history, run_dir, title="mnist-transfer (fine-tuned)", extra={
        "source_test_accuracy": accuracy(source_model, source.x_test, source.y_test),
        "scratch_accuracy": accuracy(scratch, target.x_test, target.y_test),
        "feature_extraction_accuracy": accuracy(extractor, transfer.extract_features(trunk, target.x_test),
                                                target.y_test)})
    return {**metrics, "fine_tuning_accuracy": metrics["test_accuracy"]}
