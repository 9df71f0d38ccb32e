"""Batched augmentation against exact references: mirrors, windows, rot90, shifted images, a loop sampler."""

import doctest
import itertools
import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepzen.vision import augment as augment_module
from deepzen.vision.augment import (Augment, Normalize, RandomCrop, RandomFlip, RandomRotation, RandomTranslation,
                                    RandomZoom, augmentation_grid, save_grid)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mode, candidates", [
    ("horizontal", lambda x: [x, x.flip(-1)]),
    ("vertical", lambda x: [x, x.flip(-2)]),
    ("horizontal_and_vertical", lambda x: [x, x.flip(-1), x.flip(-2), x.flip(-2, -1)]),
])
def test_flips_are_exact_mirrors_and_each_option_occurs(mode, candidates):
    x = torch.rand(64, 3, 5, 7)
    out = RandomFlip(mode)(x, seeded())
    chosen = []
    for image, options in zip(out, zip(*candidates(x))):
        matches = [k for k, option in enumerate(options) if torch.equal(image, option)]
        assert matches, "an output image is not a mirror of its input"
        chosen.append(matches[0])
    assert set(chosen) == set(range(len(candidates(x[:1]))))


@pytest.mark.parametrize("size, padding, padding_mode", [((6, 7), (2, 3), "constant"), (4, 1, "reflect")])
def test_crop_with_padding_yields_shifted_windows_of_the_padded_image(size, padding, padding_mode):
    x = torch.rand(32, 2, 6, 7)
    crop = RandomCrop(size, padding=padding, padding_mode=padding_mode)
    out = crop(x, seeded())
    (vertical, horizontal), (height, width) = crop.padding, crop.size
    padded = F.pad(x, (horizontal, horizontal, vertical, vertical), mode=padding_mode)
    offsets = set()
    for image, source in zip(out, padded):
        windows = itertools.product(range(source.shape[1] - height + 1), range(source.shape[2] - width + 1))
        found = [(top, left) for top, left in windows
                 if torch.equal(image, source[:, top:top + height, left:left + width])]
        assert found, "an output image is not a window of its padded input"
        offsets.add(found[0])
    assert len(offsets) > 5  # the windows move


def test_rotation_by_a_quarter_turn_is_rot90_counter_clockwise():
    x = torch.rand(4, 3, 6, 6)
    turn_left = RandomRotation((0.25, 0.25), fill_mode="constant")(x)
    turn_right = RandomRotation((-0.25, -0.25), fill_mode="constant")(x)
    torch.testing.assert_close(turn_left, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(turn_right, torch.rot90(x, -1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_half_turn_of_a_non_square_image_flips_both_axes():
    x = torch.rand(2, 1, 4, 7)
    torch.testing.assert_close(RandomRotation((0.5, 0.5))(x), x.flip(2, 3), atol=1e-5, rtol=0)


def shifted(x, down, right):
    """x moved by whole pixels, zeros where nothing moved in."""
    out = torch.zeros_like(x)
    height, width = x.shape[2:]
    out[:, :, max(down, 0):height + min(down, 0), max(right, 0):width + min(right, 0)] = \
        x[:, :, max(-down, 0):height - max(down, 0), max(-right, 0):width - max(right, 0)]
    return out


def test_translation_moves_the_image_down_and_right_for_positive_factors():
    x = torch.rand(3, 2, 8, 12)
    out = RandomTranslation((0.25, 0.25), (-0.25, -0.25), fill_mode="constant")(x)  # 2 px down, 3 px left
    torch.testing.assert_close(out, shifted(x, 2, -3), atol=1e-5, rtol=0)


def sample_loop(image, matrix):
    """Bilinear resampling with zeros outside, one output pixel at a time (the documented geometry)."""
    channels, height, width = image.shape
    out = np.zeros_like(image)
    for i, j in itertools.product(range(height), range(width)):
        u, v, _ = matrix @ np.array([j + 0.5 - width / 2, i + 0.5 - height / 2, 1.0])
        px, py = u + width / 2 - 0.5, v + height / 2 - 0.5
        x0, y0 = math.floor(px), math.floor(py)
        for (yy, wy), (xx, wx) in itertools.product(((y0, 1 - (py - y0)), (y0 + 1, py - y0)),
                                                    ((x0, 1 - (px - x0)), (x0 + 1, px - x0))):
            if 0 <= yy < height and 0 <= xx < width:
                out[:, i, j] += wy * wx * image[:, yy, xx]
    return out


def test_zoom_resamples_at_one_plus_factor_times_the_spacing():
    x = torch.rand(2, 2, 6, 9, dtype=torch.float64)
    out = RandomZoom((0.25, 0.25), (-0.5, -0.5), fill_mode="constant")(x)
    matrix = np.diag([0.5, 1.25, 1.0])  # x spacing 1 - 0.5, y spacing 1 + 0.25
    for image, result in zip(x.numpy(), out.numpy()):
        np.testing.assert_allclose(result, sample_loop(image, matrix), atol=1e-12)


def test_positive_zoom_zooms_out():
    square = torch.zeros(1, 1, 16, 16)
    square[..., 4:12, 4:12] = 1.0
    out = RandomZoom((1.0, 1.0), fill_mode="constant")(square)
    assert float(out.sum()) == pytest.approx(16.0)  # an 8x8 square shrinks to 4x4


def test_pipeline_fuses_affine_transforms_in_their_order():
    x = torch.rand(2, 1, 8, 8)
    augment = Augment(RandomRotation((0.25, 0.25), fill_mode="constant"),
                      RandomTranslation((0.25, 0.25), (0.0, 0.0), fill_mode="constant"), seed=0)
    expected = shifted(torch.rot90(x, 1, dims=(2, 3)), 2, 0)  # turned first, then moved 2 px down
    torch.testing.assert_close(augment(x), expected, atol=1e-5, rtol=0)


def full_pipeline(seed):
    return Augment(RandomCrop(16, padding=2), RandomFlip("horizontal"), RandomRotation(0.1), RandomZoom(0.1),
                   RandomTranslation(0.1, 0.1), Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), seed=seed)


def test_eval_mode_is_the_identity_except_normalize():
    x = torch.rand(4, 3, 16, 16)
    augment = full_pipeline(0).eval()
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    torch.testing.assert_close(augment(x), (x - mean) / std)
    geometric = Augment(*list(augment.transforms)[:-1]).eval()
    assert torch.equal(geometric(x), x)
    assert torch.equal(RandomCrop(12, padding=4).eval()(x), x[:, :, 2:14, 2:14])  # central window


def test_same_seed_same_output_different_seed_different_output():
    x = torch.rand(8, 3, 16, 16)
    first, again, other = full_pipeline(0)(x), full_pipeline(0)(x), full_pipeline(1)(x)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    pipeline = full_pipeline(0)
    assert not torch.allclose(pipeline(x), pipeline(x))  # the generator moves on between batches


def test_unseeded_pipeline_follows_torch_manual_seed():
    x = torch.rand(8, 3, 16, 16)
    torch.manual_seed(3)
    first = full_pipeline(None)(x)
    torch.manual_seed(3)
    assert torch.equal(full_pipeline(None)(x), first)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_device_are_kept(dtype):
    x = torch.rand(5, 3, 16, 16, dtype=dtype)
    augment = full_pipeline(0)
    out = augment(x)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert augment.generator(x.device).device == x.device
    assert RandomCrop((8, 12))(x).shape == (5, 3, 8, 12)


def test_normalize_matches_the_formula():
    x = torch.rand(4, 2, 3, 3, dtype=torch.float64)
    normalize = Normalize((0.1, -0.2), (2.0, 0.5))
    expected = torch.stack([(x[:, 0] - 0.1) / 2.0, (x[:, 1] + 0.2) / 0.5], dim=1)
    torch.testing.assert_close(normalize(x), expected)
    torch.testing.assert_close(normalize.inverse(normalize(x)), x)


@pytest.mark.parametrize("make, error, message", [
    (lambda: RandomFlip("diagonal"), ValueError, r"RandomFlip expects mode .* Received: mode='diagonal'"),
    (lambda: RandomRotation((0.2, 0.1)), ValueError, r"RandomRotation expects factor with low <= high"),
    (lambda: RandomZoom(1.5), ValueError, r"RandomZoom expects height_factor .* low > -1"),
    (lambda: RandomTranslation(0.1, 0.1, fill_mode="wrap"), ValueError, r"fill_mode .* Received: fill_mode='wrap'"),
    (lambda: RandomCrop(0), ValueError, r"RandomCrop expects a positive size"),
    (lambda: Normalize(0.5, 0.0), ValueError, r"Normalize expects std > 0"),
    (lambda: Augment(torch.nn.ReLU()), TypeError, r"Augment expects .* Received: ReLU"),
])
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"Augment expects a float batch of images \(N, C, H, W\). Received: a 3-d"):
        full_pipeline(0)(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match=r"RandomFlip expects a float batch .* torch.uint8"):
        RandomFlip()(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"RandomCrop\(size=\(20, 20\), padding=\(1, 1\)\) needs padded images"):
        RandomCrop(20, padding=1)(torch.rand(1, 1, 16, 16))


def test_save_grid_writes_the_images_as_tiles(tmp_path):
    from matplotlib import image as mpimg

    x = torch.rand(5, 3, 4, 6)
    path = save_grid(x, tmp_path / "grid.png", nrow=3)
    pixels = mpimg.imread(path)  # (2 * 6 + 2, 3 * 8 + 2, 4) RGBA in [0, 1]
    assert pixels.shape == (14, 26, 4)
    top, left = 2 + 6, 2 + 8  # the fifth image: second row, second column
    np.testing.assert_allclose(pixels[top:top + 4, left:left + 6, :3], x[4].permute(1, 2, 0).numpy(), atol=1 / 255)
    np.testing.assert_array_equal(pixels[top:top + 4, 2 * 8 + 2:2 * 8 + 8, :3], 1.0)  # blank tile after the last


def test_augmentation_grid_shows_originals_then_samples(tmp_path):
    from matplotlib import image as mpimg

    x = torch.rand(3, 1, 8, 8)
    augment = Augment(RandomFlip(), RandomRotation(0.1), Normalize(0.5, 0.2), seed=0).eval()
    path = augmentation_grid(augment, x, tmp_path / "samples.png", samples=2)
    pixels = mpimg.imread(path)  # grey saved as RGBA
    assert pixels.shape[:2] == (3 * 10 + 2, 3 * 10 + 2)
    np.testing.assert_allclose(pixels[2:10, 2:10, 0], x[0, 0].numpy(), atol=1 / 255)  # first row: the originals
    augmented = pixels[12:20, 2:10, 0]  # Normalize undone: back in [0, 1], not (x - 0.5) / 0.2
    assert augmented.min() >= 0.0 and not np.allclose(augmented, 1.0) and not np.allclose(augmented, 0.0)
    assert not augment.training  # the mode is restored


def test_time_to_augment_a_cifar_sized_batch(capsys):
    x = torch.rand(128, 3, 32, 32)
    augment = Augment(RandomCrop(32, padding=4), RandomFlip("horizontal"), RandomRotation(0.05), RandomZoom(0.1),
                      RandomTranslation(0.1, 0.1), Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)), seed=0)
    augment(x)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        augment(x)
        times.append(time.perf_counter() - start)
    with capsys.disabled():
        print(f"\naugment 128x3x32x32 (crop, flip, rotation+zoom+translation, normalize): "
              f"median {sorted(times)[2] * 1e3:.1f} ms on {torch.get_num_threads()} threads")


def test_docstring_examples_run():
    assert doctest.testmod(augment_module).failed == 0
