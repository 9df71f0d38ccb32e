"""``GAN``: a generator and a discriminator trained adversarially with Keras's compile / fit verbs.

``GAN`` is a :class:`~deepzen.models.Model` whose ``train_step`` updates the discriminator once, then
the generator once (Goodfellow et al. 2014, with k = 1 as in DCGAN; Keras's GAN example):

1. z ~ N(0, I), fake = G(z);
2. discriminator: binary cross-entropy of D(real) against the label 1 - label_smoothing and of
   D(fake) against 0, summed; one optimizer step;
3. generator: the non-saturating loss -log D(G(z)) (cross-entropy of D(fake) against 1, never
   smoothed), through the discriminator just updated; one optimizer step.

``Model.fit`` runs it, so a GAN gets the progress bar, callbacks, ``TrainingCheckpoint`` (both
optimizers, the averaged generator, the epoch's running statistics: exact resume, also inside an
epoch) and the run folders of ``deepzen train``.

Label smoothing is one-sided (Salimans et al. 2016): only the real labels are softened, since
softening the fake ones would reward the generator for samples that match neither distribution.

With ``generator_average`` the GAN also keeps an exponential moving average of the generator's
weights, updated after every generator step, and generates from it (Karras et al. 2018; Yazici et
al. 2019): the live generator keeps cycling between the modes it favours, and the average over
that cycle draws the data's modes more evenly.

The training step does no host sync: the step's statistics go into four ``Mean`` metrics on the
device, and the engine reads them about once a second (to check they are finite) and at the end of
each epoch.

Example:
    >>> import torch
    >>> from deepzen.generative import build_dcgan
    >>> gan = build_dcgan((1, 28, 28), latent_dim=8, base_filters=4)
    >>> gan.compile(label_smoothing=0.1)
    >>> history = gan.fit(torch.rand(64, 1, 28, 28) * 2 - 1, epochs=1, batch_size=32, verbose=0)
    >>> sorted(history.history)
    ['d_fake', 'd_loss', 'd_real', 'g_loss']
    >>> tuple(gan.generate(5).shape)
    (5, 1, 28, 28)
"""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepzen.data.arrays import ArrayData
from deepzen.metrics import Mean
from deepzen.optimizers import clip_gradients
from deepzen.training import distributed
from deepzen.training.callbacks import Callback, History
from deepzen.training.engine import channels_last_inputs
from deepzen.training.model import InputSpec, Model
from deepzen.serializable import register_serializable
from deepzen.training.serialization import module_config, module_from_config

LOG_NAMES = ("d_loss", "g_loss", "d_real", "d_fake")  # d_real = mean D(x), d_fake = mean D(G(z))
GENERATE_BATCH_SIZE = 256
FIT_BATCH_SIZE = 64


def default_optimizer():
    """The DCGAN paper's optimizer for both networks: Adam with learning rate 2e-4 and beta_1 = 0.5."""
    from deepzen.optimizers import Adam

    return Adam(learning_rate=2e-4, beta_1=0.5)


@register_serializable
class GAN(Model):
    """A generator G and a discriminator D with ``compile``, ``fit`` and ``generate``.

    Args:
        generator: maps (N, latent_dim) noise to (N, C, H, W) images in [-1, 1] (tanh output).
        discriminator: maps (N, C, H, W) images to (N, 1) logits.
        latent_dim: size of the noise vector; read from the generator when it declares its input
            shape (a ``Sequential`` starting with ``Input((latent_dim,))``).
        generator_average: in [0, 1): the decay of an exponential moving average of the generator's
            weights, kept as ``averaged_generator`` and used by :meth:`generate` (0: none; 0.999
            averages over about the last 1,000 steps). Its batch-norm statistics are the live
            generator's.
        name: a display name.

    Both networks are built at construction (one probe forward pass), so their parameters exist.
    Calling the GAN, ``gan(z)``, is ``generator(z)``, the live generator.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, *, latent_dim: int | None = None,
                 generator_average: float = 0.0, name: str | None = None):
        super().__init__(name=name)
        for arg, value in (("generator", generator), ("discriminator", discriminator)):
            if not isinstance(value, nn.Module):
                raise TypeError(f"GAN expects {arg} to be a torch.nn.Module. Received: {type(value).__name__}")
        declared = generator.declared_input_shape() if isinstance(generator, Model) else None
        if latent_dim is None and declared is not None and len(declared) == 1:
            latent_dim = declared[0]
        if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or latent_dim < 1:
            raise ValueError(f"GAN expects latent_dim, a positive integer, given or declared by the generator's "
                             f"input shape. Received: latent_dim={latent_dim!r}, generator input shape={declared}")
        if (not isinstance(generator_average, (int, float)) or isinstance(generator_average, bool)
                or not 0.0 <= generator_average < 1.0):
            raise ValueError(f"GAN expects generator_average, the moving average's decay, in [0, 1) (0: none). "
                             f"Received: generator_average={generator_average!r}")
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim = latent_dim
        self.generator_average = float(generator_average)
        parameter = next(generator.parameters(), None)  # a generator built already may live on a GPU
        noise = torch.zeros(2, latent_dim, device=parameter.device if parameter is not None else None)
        images = _probe(generator, noise)  # (2, C, H, W)
        if images.dim() != 4:
            raise ValueError(f"GAN expects the generator to produce (N, C, H, W) images. "
                             f"Received: output shape {tuple(images.shape)}")
        logits = _probe(discriminator, images)
        if tuple(logits.shape) != (2, 1):
            raise ValueError(f"GAN expects the discriminator to return (N, 1) logits. "
                             f"Received: output shape {tuple(logits.shape)} for images of shape {tuple(images.shape)}")
        self.image_shape = tuple(images.shape[1:])
        self.averaged_generator = None
        if self.generator_average:
            self.averaged_generator = copy.deepcopy(generator).requires_grad_(False).eval()
        self.input_spec = InputSpec((latent_dim,), torch.float32)
        self.generator_optimizer = self.discriminator_optimizer = None
        self.label_smoothing = 0.0
        self.trackers = [Mean(name) for name in LOG_NAMES]  # the epoch means fit's logs show

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)  # (N, latent_dim) -> (N, C, H, W)

    def declared_input_shape(self):
        return (self.latent_dim,)

    # -- compile -------------------------------------------------------------------------------------
    def compile(self, generator_optimizer: Any = None, discriminator_optimizer: Any = None,
                label_smoothing: float = 0.0, device: Any = None) -> None:
        """Configures training: ``Model.compile`` without a loss or an optimizer of its own (the step
        computes its losses and steps the two optimizers below, :attr:`optimizers`).

        Args:
            generator_optimizer / discriminator_optimizer: names ("adam"), ``deepzen.optimizers``
                specs, or ``torch.optim.Optimizer`` instances built on that network's parameters;
                default ``Adam(learning_rate=2e-4, beta_1=0.5)`` for each (the DCGAN paper's).
            label_smoothing: in [0, 1): the discriminator's target for real images is
                ``1 - label_smoothing`` (fake targets stay 0, the generator's targets stay 1).
            device: where to train; default cuda, then mps, then cpu.
        """
        if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"GAN.compile expects label_smoothing in [0, 1). "
                             f"Received: label_smoothing={label_smoothing!r}")
        super().compile(optimizer=None, loss=None, device=device)
        self.label_smoothing = float(label_smoothing)
        self.generator_optimizer, self._generator_clipping = _build_optimizer(
            generator_optimizer, self.generator, "generator_optimizer")
        self.discriminator_optimizer, self._discriminator_clipping = _build_optimizer(
            discriminator_optimizer, self.discriminator, "discriminator_optimizer")
        self.compile_config = {"label_smoothing": self.label_smoothing}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.generator_optimizer is None:
            return {}
        return {"generator_optimizer": self.generator_optimizer,
                "discriminator_optimizer": self.discriminator_optimizer}

    @property
    def metrics(self) -> list[Mean]:
        """The step's statistics, averaged over the epoch (fit resets them at each epoch's start)."""
        return self.trackers

    # -- losses --------------------------------------------------------------------------------------
    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of (N, 1) real logits against ``1 - label_smoothing`` plus fake logits against 0."""
        real_targets = torch.full_like(real_logits, 1.0 - self.label_smoothing)
        return (F.binary_cross_entropy_with_logits(real_logits, real_targets)
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """The non-saturating loss ``-log D(G(z))``: cross-entropy of (N, 1) fake logits against 1."""
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))

    # -- the step ------------------------------------------------------------------------------------
    def train_step(self, data: Any) -> dict[str, torch.Tensor]:
        """One discriminator and one generator update on a batch of real images: ``fit`` calls it.

        Args:
            data: (N, C, H, W) real images, uint8 pixels 0..255 or floats in [-1, 1] (or ``(images,)``).

        Returns:
            ``{"d_loss", "g_loss", "d_real", "d_fake"}``: the epoch's running means so far, as device
            tensors (no host sync).
        """
        real = data[0] if isinstance(data, (tuple, list)) else data
        real = to_tanh_range(real) if real.dtype == torch.uint8 else real  # (N, C, H, W) in [-1, 1]
        if self.engine is not None and self.engine.channels_last:
            real = channels_last_inputs(real)  # the layout the convolution weights train in
        statistics = self.adversarial_step(real)
        for tracker, value in zip(self.trackers, statistics.unbind()):
            tracker.update_state(value)
        return {tracker.name: tracker.result() for tracker in self.trackers}

    def adversarial_step(self, real: torch.Tensor) -> torch.Tensor:
        """One discriminator and one generator update on a batch of (N, C, H, W) real images in [-1, 1].

        Returns:
            (4,) device tensor: discriminator loss, generator loss, mean D(x), mean D(G(z)) (the
            last two are probabilities, measured before the discriminator's update).
        """
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)
        fake = self.generator(z)  # (N, C, H, W)

        real_logits = self.discriminator(real)  # (N, 1)
        fake_logits = self.discriminator(fake.detach())  # no generator gradients in D's step
        d_loss = self.discriminator_loss(real_logits, fake_logits)
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        _step(self.discriminator_optimizer, self.discriminator, self._discriminator_clipping)

        with _frozen(self.discriminator):  # gradients flow through D to G without computing D's own
            g_loss = self.generator_loss(self.discriminator(fake))
        self.generator_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        _step(self.generator_optimizer, self.generator, self._generator_clipping)
        if self.averaged_generator is not None:
            self._update_average()
        return torch.stack([d_loss.detach(), g_loss.detach(), torch.sigmoid(real_logits.detach()).mean(),
                            torch.sigmoid(fake_logits.detach()).mean()])

    @torch.no_grad()
    def _update_average(self) -> None:
        """averaged <- decay * averaged + (1 - decay) * live, in one fused kernel; buffers are copied."""
        averaged = list(self.averaged_generator.parameters())
        torch._foreach_lerp_(averaged, [p.detach() for p in self.generator.parameters()], 1.0 - self.generator_average)
        for mine, live in zip(self.averaged_generator.buffers(), self.generator.buffers()):
            mine.copy_(live)

    def train(self, mode: bool = True) -> "GAN":
        super().train(mode)
        if self.averaged_generator is not None:
            self.averaged_generator.eval()  # only ever sampled from; its statistics are copied in
        return self

    # -- fit -----------------------------------------------------------------------------------------
    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: list[Callback] | None = None, shuffle: bool = True,
            initial_epoch: int = 0, steps_per_epoch: int | None = None, **kwargs: Any) -> History:
        """``Model.fit`` on real images: trains ``epochs`` epochs of ``len(x) // batch_size`` steps.

        Args:
            x: real images (N, C, H, W), or (N, H, W) for one channel: uint8 pixels 0..255 (kept so on
                the device and scaled to [-1, 1] batch by batch) or floats already in [-1, 1].
            y: must be None (a GAN learns from the images alone).
            batch_size: real images per step, at least 2 (default 64); an incomplete last batch is
                dropped (batch norm needs full batches).
            epochs, verbose, callbacks, shuffle, initial_epoch, and ``steps_per_epoch``: as in
                :meth:`Model.fit`. Every callback event fires but ``on_after_backward`` (a step has
                two backward passes); :class:`~deepzen.callbacks.TrainingCheckpoint` resumes exactly.

        Returns:
            The History: per epoch the means of ``d_loss``, ``g_loss``, ``d_real`` (D(x)) and
            ``d_fake`` (D(G(z))).
        """
        self._compiled_engine()
        if distributed.active():
            raise NotImplementedError("GAN.fit does not train under torchrun yet: its step calls the generator and "
                                      "the discriminator directly, so their gradients would not be averaged over "
                                      "the processes. Train it in one process")
        if y is not None:
            raise ValueError("GAN.fit learns from real images alone: pass fit(x), without y")
        for name in ("validation_data", "validation_split"):
            if kwargs.get(name):
                raise ValueError(f"GAN.fit has no validation: a GAN has no loss to evaluate on held-out "
                                 f"images. Received: {name}=...; measure samples with a callback (SampleQuality)")
        batch_size = FIT_BATCH_SIZE if batch_size is None else batch_size
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 2:
            raise ValueError(f"GAN.fit expects batch_size to be an integer >= 2 (batch norm). "
                             f"Received: batch_size={batch_size!r}")
        if x is not None and not isinstance(x, ArrayData) and len(x) < batch_size:
            raise ValueError(f"GAN.fit needs at least one full batch. Received: {len(x)} images for "
                             f"batch_size={batch_size}")
        return super().fit(x, batch_size=int(batch_size), epochs=epochs, verbose=verbose, callbacks=callbacks,
                           shuffle=shuffle, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch, **kwargs)

    def _as_data(self, x: Any, y: Any = None, sample_weight: Any = None, call: str = "fit") -> ArrayData:
        """Training data (``fit``, ``train_on_batch``): the real images, checked once and moved to the device in
        their dtype, in full batches. ``predict`` takes noise, as the GAN's forward does."""
        if call not in ("fit", "train_on_batch"):
            return super()._as_data(x, y, sample_weight, call)
        if x is None:
            raise ValueError(f"{call}: x, the real images, is required")
        images = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        if images.dim() == 3 and self.image_shape[0] == 1:
            images = images.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"{self.name} expects images of shape (N, {', '.join(map(str, self.image_shape))}) "
                             f"(the generator's output). Received: x.shape={tuple(images.shape)}")
        images = images.to(self.device)
        if images.dtype != torch.uint8:
            if not images.is_floating_point():
                raise ValueError(f"GAN.fit expects uint8 pixels (0..255) or float images in [-1, 1]. "
                                 f"Received: dtype {images.dtype}")
            low, high = torch.aminmax(images)
            low, high = float(low), float(high)  # host sync: once per fit
            if not (low >= -1.0 - 1e-6 and high <= 1.0 + 1e-6):  # also catches NaN
                raise ValueError(f"GAN.fit expects float images scaled to [-1, 1] (the generator's tanh range). "
                                 f"Received: values in [{low:.4g}, {high:.4g}]; pass uint8 pixels or rescale")
            images = images.float()
        return ArrayData(images, device=self.device, keep_input_dtypes=True, drop_remainder=True)

    def build_for(self, sample: Any) -> None:
        """Nothing to build: both networks were built at construction. (``fit`` probes a model with a batch
        of its data; a GAN's data are real images, the discriminator's input, not the GAN's noise.)"""
        return None

    # -- sampling ------------------------------------------------------------------------------------
    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, latent_dim) standard normal noise on the model's device (``generator`` seeds it)."""
        if generator is not None and generator.device != self.device:
            return torch.randn(n, self.latent_dim, generator=generator, device=generator.device).to(self.device)
        return torch.randn(n, self.latent_dim, generator=generator, device=self.device)

    @torch.no_grad()
    def generate(self, n: int | None = None, noise: torch.Tensor | None = None,
                 batch_size: int = GENERATE_BATCH_SIZE) -> torch.Tensor:
        """Images from the generator in evaluation mode (batch norm uses its moving statistics); from the
        averaged generator when the GAN keeps one.

        Args:
            n: how many images, from fresh noise (give ``n`` or ``noise``).
            noise: (n, latent_dim) noise to generate from (e.g. a fixed batch to watch training).
            batch_size: images per forward pass.

        Returns:
            (n, C, H, W) float tensor in [-1, 1] on the model's device.
        """
        if (n is None) == (noise is None):
            raise ValueError(f"GAN.generate expects n or noise, not both nor neither. Received: n={n!r}, "
                             f"noise={'a tensor' if noise is not None else None}")
        if noise is None:
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"GAN.generate expects n to be a positive integer. Received: n={n!r}")
            noise = self.sample_noise(n)
        elif noise.dim() != 2 or noise.shape[1] != self.latent_dim:
            raise ValueError(f"GAN.generate expects noise of shape (n, {self.latent_dim}). "
                             f"Received: noise.shape={tuple(noise.shape)}")
        generator = self.averaged_generator if self.averaged_generator is not None else self.generator
        was_training = generator.training
        generator.eval()
        try:
            noise = noise.to(self.device)
            return torch.cat([generator(chunk) for chunk in noise.split(batch_size)])
        finally:
            generator.train(was_training)

    def summary_images(self, num_images: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
        """What the TensorBoard callback draws with ``write_images=True``: ``{"samples": (num_images, C, H, W)}``
        in [0, 1], from the same seeded noise every time, so the grids of successive epochs compare."""
        noise = self.sample_noise(num_images, torch.Generator().manual_seed(seed))
        return {"samples": (self.generate(noise=noise) + 1) / 2}

    # -- files ---------------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "latent_dim": self.latent_dim, "generator_average": self.generator_average,
                "generator": module_config(self.generator), "discriminator": module_config(self.discriminator)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "GAN":
        return cls(module_from_config(config["generator"]), module_from_config(config["discriminator"]),
                   latent_dim=config["latent_dim"], generator_average=config.get("generator_average", 0.0),
                   name=config.get("name"))


class SampleGrid(Callback):
    """Saves a PNG grid of the generator's images for one fixed batch of noise after every epoch.

    The same noise every epoch shows how the generator's mapping evolves; the files are
    ``<directory>/epoch_001.png``, ``epoch_002.png``, ... Under torchrun only rank 0 draws and writes them.

    Args:
        directory: folder for the PNG files (created).
        num_images: images per grid.
        nrow: images per row.
        seed: seeds the fixed noise.
    """

    def __init__(self, directory: str | os.PathLike, num_images: int = 64, nrow: int = 8, seed: int = 0):
        if not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"SampleGrid expects num_images to be a positive integer. Received: {num_images!r}")
        self.directory, self.num_images, self.nrow, self.seed = Path(directory), num_images, nrow, seed
        self.noise: torch.Tensor | None = None
        self.paths: list[Path] = []

    def on_train_begin(self, logs=None):
        if self.noise is None:  # kept across fits, so resumed training draws the same images
            self.noise = self.model.sample_noise(self.num_images, torch.Generator().manual_seed(self.seed))

    def on_epoch_end(self, epoch, logs=None):
        if not distributed.is_rank_zero():
            return
        from deepzen.vision.augment import save_grid

        images = self.model.generate(noise=self.noise)  # (num_images, C, H, W) in [-1, 1]
        self.paths.append(save_grid(images, self.directory / f"epoch_{epoch + 1:03d}.png", nrow=self.nrow,
                                    value_range=(-1.0, 1.0)))


def to_tanh_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0..255 -> float32 in [-1, 1], the range of the generator's tanh output."""
    return pixels.float() / 127.5 - 1.0


def _probe(module: nn.Module, sample: torch.Tensor) -> torch.Tensor:
    """Builds ``module``'s lazy layers with a forward pass in evaluation mode and returns the output."""
    if isinstance(module, Model):
        return module.build_for(sample)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return module(sample)
    finally:
        module.train(was_training)


def _build_optimizer(spec: Any, network: nn.Module, arg: str) -> tuple[torch.optim.Optimizer, tuple | None]:
    """A torch optimizer over ``network``'s parameters and the spec's clipping settings (or None)."""
    from deepzen import optimizers

    if isinstance(spec, torch.optim.Optimizer):
        owned = {id(p) for p in network.parameters()}
        if not all(id(p) in owned for group in spec.param_groups for p in group["params"]):
            raise ValueError(f"GAN.compile: {arg} was built on parameters that are not all the "
                             f"{arg.split('_')[0]}'s. Pass a spec (e.g. 'adam') or build it on that network")
        return spec, None
    spec = optimizers.get(default_optimizer() if spec is None else spec)
    clipping = (spec.clipnorm, spec.clipvalue, spec.global_clipnorm)
    return spec.build([p for p in network.parameters() if p.requires_grad]), \
        clipping if any(c is not None for c in clipping) else None


def _step(optimizer: torch.optim.Optimizer, network: nn.Module, clipping: tuple | None) -> None:
    if clipping is not None:
        clip_gradients(network.parameters(), *clipping)
    optimizer.step()


@contextlib.contextmanager
def _frozen(network: nn.Module):
    """Turns off ``requires_grad`` of ``network``'s parameters inside the block (inputs still get gradients)."""
    parameters = [p for p in network.parameters() if p.requires_grad]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in parameters:
            parameter.requires_grad_(True)
