"""Measures of a generator's samples that need no download: the Fréchet distance between real and
generated images in a classifier's feature space, and mode coverage (which classes a classifier
sees in the samples).

The Fréchet distance (Dowson & Landau 1982) between two Gaussians fitted to feature sets a and b is

    d^2 = |mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)),

the measure behind FID (Heusel et al. 2017), which uses Inception-v3 features of ImageNet images.
For MNIST deepzen uses the penultimate layer (F6, 84 features) of a LeNet-5 trained on MNIST, so
the numbers are comparable between runs that use the same classifier, not with published FIDs.

``Tr (C_a C_b)^(1/2)`` is computed without a general matrix square root: with ``S = C_a^(1/2)``
(an eigen-decomposition of the symmetric C_a), ``C_a C_b`` has the eigenvalues of the symmetric
positive semi-definite ``S C_b S``, so the trace is the sum of their square roots — in float64
torch, exact up to rounding and never complex (scipy's ``sqrtm`` route needs a discarded
imaginary part).

Example:
    >>> import torch
    >>> a = torch.randn(5000, 3, dtype=torch.float64)
    >>> round(frechet_distance(a, a + 2.0), 6)   # a shift by (2, 2, 2): |mu_a - mu_b|^2 = 12
    12.0
"""

from __future__ import annotations

import torch
from torch import nn

from deepzen.training.callbacks import Callback

INFERENCE_BATCH_SIZE = 500


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of (N, D) features, in float64 (unbiased, N - 1).

    Example:
        >>> mean, cov = feature_statistics(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
        >>> mean.tolist(), cov.tolist()
        ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """
    features = torch.as_tensor(features)
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"feature_statistics expects (N, D) features with N >= 2. "
                         f"Received: shape {tuple(features.shape)}")
    features = features.to(torch.float64)
    return features.mean(dim=0), torch.cov(features.T).reshape(features.shape[1], features.shape[1])


def frechet_distance_from_statistics(mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor,
                                     cov_b: torch.Tensor) -> float:
    """The squared Fréchet distance between N(mean_a, cov_a) and N(mean_b, cov_b).

    Args:
        mean_a, mean_b: (D,) means.
        cov_a, cov_b: (D, D) symmetric positive semi-definite covariances.
    """
    mean_a, cov_a, mean_b, cov_b = (torch.as_tensor(t, dtype=torch.float64) for t in (mean_a, cov_a, mean_b, cov_b))
    size = mean_a.shape[0]
    if mean_b.shape != (size,) or cov_a.shape != (size, size) or cov_b.shape != (size, size):
        raise ValueError(f"frechet_distance_from_statistics expects means (D,) and covariances (D, D) of one D. "
                         f"Received: {tuple(mean_a.shape)}, {tuple(cov_a.shape)}, {tuple(mean_b.shape)}, "
                         f"{tuple(cov_b.shape)}")
    eigenvalues, eigenvectors = torch.linalg.eigh(cov_a)
    root_a = (eigenvectors * eigenvalues.clamp_min(0.0).sqrt()) @ eigenvectors.T  # C_a^(1/2)
    middle = root_a @ cov_b @ root_a  # same eigenvalues as C_a C_b
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0.0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2.0 * trace_root
    return float(distance.clamp_min(0.0))  # host sync: a single number per call


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """The squared Fréchet distance between Gaussians fitted to (N_a, D) and (N_b, D) features.

    Identical feature sets give 0 (up to rounding). The estimate is biased upwards for small N,
    so compare distances computed from equally many samples.
    """
    return frechet_distance_from_statistics(*feature_statistics(features_a), *feature_statistics(features_b))


@torch.no_grad()
def classifier_outputs(classifier: nn.Module, images: torch.Tensor,
                       batch_size: int = INFERENCE_BATCH_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate-layer features and predicted labels of a model-zoo classifier, in evaluation mode.

    Args:
        classifier: a :class:`~deepzen.vision.models.ImageClassifier` (e.g. ``create("lenet5")``),
            or a ``deepzen.Model`` wrapping one.
        images: (N, C, H, W) images, scaled as the classifier was trained.
        batch_size: images per forward pass.

    Returns:
        ``(features, labels)``: (N, num_features) float features (``forward_head(..., pre_logits=True)``,
        F6's 84 for LeNet-5) and (N,) int64 argmax labels, on the classifier's device.
    """
    from deepzen.training.model import Model

    network = classifier.module if isinstance(classifier, Model) and classifier.module is not None else classifier
    if not (hasattr(network, "forward_features") and hasattr(network, "forward_head")):
        raise TypeError(f"classifier_outputs expects a model-zoo classifier with forward_features and "
                        f"forward_head (deepzen.vision.models). Received: {type(network).__name__}")
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    features, labels = [], []
    try:
        for chunk in torch.as_tensor(images).split(batch_size):
            hidden = network.forward_head(network.forward_features(chunk.to(device, torch.float32)),
                                          pre_logits=True)  # (B, num_features)
            features.append(hidden)
            labels.append(network.classifier(hidden).argmax(dim=-1))  # (B,)
    finally:
        network.train(was_training)
    return torch.cat(features), torch.cat(labels)


def mode_coverage(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The fraction of samples given each class: (num_classes,) float64, summing to 1.

    A generator that covers every mode of a 10-class set has all ten fractions well above 0 (the
    MNIST benchmark asks for at least 5% each).

    Example:
        >>> mode_coverage(torch.tensor([0, 2, 2, 1]), num_classes=4).tolist()
        [0.25, 0.25, 0.5, 0.0]
    """
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.numel() == 0 or labels.is_floating_point():
        raise ValueError(f"mode_coverage expects a non-empty tensor of integer class labels. "
                         f"Received: {labels.numel()} values of dtype {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())  # host sync: once per call
    if low < 0 or high >= num_classes:
        raise ValueError(f"mode_coverage expects labels in [0, {num_classes}). Received: labels in [{low}, {high}]")
    return torch.bincount(labels, minlength=num_classes).to(torch.float64) / labels.numel()


class SampleQuality(Callback):
    """Measures a GAN's samples after every epoch and adds the numbers to the epoch logs (and History).

    Adds ``fd``, the Fréchet distance between the classifier features of ``num_samples`` generated
    images and the reference statistics, and ``min_class_fraction``, the share of the rarest class
    among the classifier's labels of those images. The noise is the same every epoch.

    Args:
        classifier: a model-zoo classifier, as for :func:`classifier_outputs`.
        reference: ``(mean, cov)`` of real images' features, from :func:`feature_statistics`.
        num_samples: images generated per measurement.
        num_classes: the classifier's classes.
        seed: seeds the noise.
    """

    def __init__(self, classifier: nn.Module, reference: tuple[torch.Tensor, torch.Tensor], num_samples: int,
                 num_classes: int, seed: int = 0):
        if not isinstance(num_samples, int) or num_samples < 2:
            raise ValueError(f"SampleQuality expects num_samples to be an integer >= 2. "
                             f"Received: num_samples={num_samples!r}")
        self.classifier, self.reference = classifier, reference
        self.num_samples, self.num_classes, self.seed = num_samples, num_classes, seed
        self.noise: torch.Tensor | None = None

    def on_train_begin(self, logs=None):
        if self.noise is None:
            self.noise = self.model.sample_noise(self.num_samples, torch.Generator().manual_seed(self.seed))

    def on_epoch_end(self, epoch, logs=None):
        features, labels = classifier_outputs(self.classifier, self.model.generate(noise=self.noise))
        logs["fd"] = frechet_distance_from_statistics(*feature_statistics(features), *self.reference)
        logs["min_class_fraction"] = float(mode_coverage(labels, self.num_classes).min())
