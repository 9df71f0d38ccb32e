"""Generative adversarial networks: DCGAN's generator and discriminator, the GAN trainer, and the
measures of sample quality (Fréchet distance in a classifier's feature space, mode coverage).

Example:
    >>> from deepzen.generative import SampleGrid, build_dcgan
    >>> gan = build_dcgan((1, 28, 28), latent_dim=100)
    >>> gan.compile(label_smoothing=0.1)      # Adam(2e-4, beta_1=0.5) for both networks
    >>> # gan.fit(x_train_uint8, epochs=5, batch_size=128, callbacks=[SampleGrid("samples")])
    >>> # images = gan.generate(64)          # (64, 1, 28, 28) in [-1, 1]
"""

from deepzen.generative.dcgan import build_dcgan, dcgan_discriminator, dcgan_generator, upsampling_plan
from deepzen.generative.metrics import (SampleQuality, classifier_outputs, feature_statistics, frechet_distance,
                                        frechet_distance_from_statistics, mode_coverage)
from deepzen.generative.trainer import GAN, SampleGrid

__all__ = ["GAN", "SampleGrid", "SampleQuality", "build_dcgan", "classifier_outputs", "dcgan_discriminator",
           "dcgan_generator", "feature_statistics", "frechet_distance", "frechet_distance_from_statistics",
           "mode_coverage", "upsampling_plan"]
