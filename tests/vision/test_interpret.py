"""Interpretation of classifiers: hand-computed Grad-CAM and saliency on tiny networks, a brute-force
top-losses sort and occlusion window, and attributions of a small CNN trained on real MNIST digits that
must point at the digit's pixels rather than the background."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deepzen
from deepzen.data.images import load_mnist
from deepzen.models import Model
from deepzen.text.classification import BiLSTMAttentionClassifier, TextCNN
from deepzen.vision import interpret

pytestmark = pytest.mark.usefixtures("one_thread")

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@pytest.fixture(scope="module")
def digits(real_dataset):
    """A small CNN (three convolutions, global average pooling) trained for a few seconds on 3,000 MNIST
    digits; 32 test digits with their ink masks."""
    x_train, y_train, x_test, y_test = load_mnist(real_dataset("mnist"))
    normalize = lambda images: ((images[:, None] / 255.0 - MNIST_MEAN) / MNIST_STD).astype(np.float32)  # noqa: E731
    picked = np.random.default_rng(0).choice(len(x_train), 3000, replace=False)
    deepzen.seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # (N, 8, 14, 14)
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # (N, 16, 7, 7)
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),                    # (N, 32, 7, 7)
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    model = Model(net)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=3e-3), metrics=["accuracy"],
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    model.fit(normalize(x_train[picked]), y_train[picked], batch_size=64, epochs=8, verbose=0)
    x, y = normalize(x_test[:200]), y_test[:200]
    accuracy = (interpret.predict_logits(model, x).argmax(-1).numpy() == y).mean()
    assert accuracy > 0.8, f"the fixture's CNN should classify most digits; test accuracy {accuracy:.2f}"
    ink = x_test[:32] > 127                                                          # (32, 28, 28) the digit
    # Background: pixels at least 4 pixels away from any ink (the hole of a 0 is not background).
    near = F.max_pool2d(torch.as_tensor(ink[:, None]).float(), 9, 1, 4)[:, 0].numpy() > 0
    return {"model": model, "net": net, "x": x, "y": y, "ink": ink, "background": ~near}


def _digit_vs_background(heat, digits):
    """(mean heat on the ink / mean heat on the background, fraction of images where the ink is hotter)."""
    on_ink = np.array([h[m].mean() for h, m in zip(heat, digits["ink"])])
    on_background = np.array([h[m].mean() for h, m in zip(heat, digits["background"])])
    return on_ink.mean() / on_background.mean(), float(np.mean(on_ink > on_background))


# -- on the trained digit classifier -----------------------------------------------------------------
def test_grad_cam_weighs_the_digit_more_than_the_background(digits):
    heat = interpret.grad_cam(digits["model"], digits["x"][:32], target=digits["y"][:32])
    assert heat.shape == (32, 28, 28) and (heat >= 0).all()
    ratio, share = _digit_vs_background(heat, digits)
    assert ratio > 1.5 and share >= 0.65, (ratio, share)


def test_saliency_weighs_the_digit_more_than_the_background(digits):
    heat = interpret.saliency_map(digits["model"], digits["x"][:32], target=digits["y"][:32])
    assert heat.shape == (32, 28, 28) and (heat >= 0).all()
    ratio, share = _digit_vs_background(heat, digits)
    assert ratio > 2.0 and share >= 0.9, (ratio, share)


def test_occluding_the_digit_lowers_the_true_class_more_than_occluding_background(digits):
    drop = interpret.occlusion_sensitivity(digits["model"], digits["x"][:32], target=digits["y"][:32],
                                           window=5, stride=2)
    assert drop.shape == (32, 28, 28)
    on_ink = np.array([h[m].mean() for h, m in zip(drop, digits["ink"])])
    on_background = np.array([h[m].mean() for h, m in zip(drop, digits["background"])])
    assert on_ink.mean() > 0.05 and abs(on_background.mean()) < 0.02, (on_ink.mean(), on_background.mean())
    assert np.mean(on_ink > on_background) >= 0.9


def test_occlusion_matches_a_direct_computation_where_one_window_covers_a_pixel(digits):
    net, image, label = digits["net"].eval(), digits["x"][5], int(digits["y"][5])
    drop = interpret.occlusion_sensitivity(net, image, target=label, window=6, stride=4, baseline=-1.0)
    occluded = image.copy()
    occluded[:, :6, :6] = -1.0  # the first window is the only one covering pixel (0, 0)
    with torch.no_grad():
        p = torch.softmax(net(torch.as_tensor(np.stack([image, occluded]))), -1)[:, label]
    assert drop[0, 0, 0] == pytest.approx(float(p[0] - p[1]), abs=1e-6)


def test_top_losses_agree_with_a_brute_force_sort(digits):
    found = interpret.top_losses(digits["model"], digits["x"], digits["y"], k=10)
    net = digits["net"].eval()
    losses = []
    for index in range(len(digits["y"])):
        with torch.no_grad():
            logits = net(torch.as_tensor(digits["x"][index:index + 1]))[0].double().tolist()
        log_sum = math.log(sum(math.exp(v) for v in logits))
        losses.append((-(logits[int(digits["y"][index])] - log_sum), index))
    expected = sorted(losses, key=lambda pair: -pair[0])[:10]
    np.testing.assert_array_equal(found.indices, [index for _, index in expected])
    np.testing.assert_allclose(found.losses, [loss for loss, _ in expected], rtol=1e-4)
    np.testing.assert_array_equal(found.y_true, digits["y"][found.indices])
    np.testing.assert_allclose(found.true_probability, np.exp(-found.losses), rtol=1e-4)
    assert (found.y_pred != found.y_true).all()  # the largest losses are mistakes
    assert (found.confidence >= found.true_probability).all()


def test_interpret_images_writes_every_png(digits, tmp_path):
    written = interpret.interpret_images(digits["model"], digits["x"][:4], tmp_path, labels=digits["y"][:4],
                                         test_x=digits["x"], test_y=digits["y"], k=6,
                                         show=lambda batch: batch * MNIST_STD + MNIST_MEAN)
    names = {path.name for path in written}
    assert names == {"saliency.png", "grad_cam.png", "occlusion.png", "filters.png", "feature_maps.png",
                     "top_losses.png", "confusion_matrix.png"}
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


# -- against hand computations on tiny networks --------------------------------------------------------
def _tiny_cam_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(3, 4))


def test_grad_cam_equals_the_hand_computation_on_a_tiny_network():
    net = _tiny_cam_net()
    images = torch.randn(5, 2, 6, 6)
    targets = np.array([0, 1, 2, 3, 1])
    cam = interpret.grad_cam(net, images, target=targets, upsample=False)  # last conv: net[0]
    A = F.conv2d(images, net[0].weight, net[0].bias).detach().numpy()              # (5, 3, 4, 4), before the ReLU
    W = net[4].weight.detach().numpy()                                     # (4, 3)
    positions = A.shape[2] * A.shape[3]
    for n, c in enumerate(targets):
        # score = sum_k W[c, k] mean_ij relu(A_k); d score / d A_k(i, j) = W[c, k] / 16 where A_k(i, j) > 0.
        alpha = W[c] / positions * (A[n] > 0).reshape(3, -1).sum(1) / positions
        expected = np.maximum((alpha[:, None, None] * A[n]).sum(0), 0)
        np.testing.assert_allclose(cam[n], expected, rtol=1e-5, atol=1e-7)
    # On the ReLU's output Grad-CAM is Zhou et al.'s class activation map: relu(sum_k W[c, k] relu(A_k)) / 16.
    cam = interpret.grad_cam(net, images, target=targets, layer="1", upsample=False)
    for n, c in enumerate(targets):
        expected = np.maximum((W[c][:, None, None] * np.maximum(A[n], 0)).sum(0), 0) / positions
        np.testing.assert_allclose(cam[n], expected, rtol=1e-5, atol=1e-7)
    upsampled = interpret.grad_cam(net, images, target=targets)
    assert upsampled.shape == (5, 6, 6)


def test_grad_cam_defaults_to_the_predicted_class():
    net = _tiny_cam_net()
    images = torch.randn(3, 2, 6, 6)
    predicted = net(images).argmax(-1).detach().numpy()
    np.testing.assert_allclose(interpret.grad_cam(net, images), interpret.grad_cam(net, images, target=predicted))


def test_saliency_of_a_linear_classifier_is_its_largest_absolute_weight_per_pixel():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 6))
    images = torch.randn(2, 3, 4, 5)
    heat = interpret.saliency_map(net, images, target=[4, 1])
    W = net[1].weight.detach().numpy().reshape(6, 3, 4, 5)
    np.testing.assert_allclose(heat[0], np.abs(W[4]).max(0), rtol=1e-6)
    np.testing.assert_allclose(heat[1], np.abs(W[1]).max(0), rtol=1e-6)


def test_bad_arguments_are_named():
    net = _tiny_cam_net()
    images = torch.randn(2, 2, 6, 6)
    with pytest.raises(ValueError, match=r"convolutions: 0\). Received: layer='conv9'"):
        interpret.grad_cam(net, images, layer="conv9")
    with pytest.raises(ValueError, match=r"target.*\[0, 4\)"):
        interpret.saliency_map(net, images, target=[0, 7])
    with pytest.raises(ValueError, match="window"):
        interpret.occlusion_sensitivity(net, images, window=9)
    with pytest.raises(ValueError, match="no 2-D convolution"):
        interpret.grad_cam(nn.Sequential(nn.Flatten(), nn.Linear(72, 3)), images)
    with pytest.raises(ValueError, match="one label per example"):
        interpret.top_losses(net, images, [0, 1, 2])
    with pytest.raises(ValueError, match=r"images \(N, C, H, W\)"):
        interpret.saliency_map(net, torch.randn(6, 6))


def test_channels_last_models_are_refused():
    from deepzen.layers import Conv2D, Flatten, Dense
    from deepzen.models import Sequential

    model = Sequential([Conv2D(2, 3, data_format="channels_last"), Flatten(), Dense(3)])
    images = torch.randn(2, 6, 6, 1)
    model.predict(images.numpy())  # builds the layers
    with pytest.raises(ValueError, match="channels-first model.*data_format='channels_last'"):
        interpret.grad_cam(model, images)
    with pytest.raises(ValueError, match="channels-first"):
        interpret.saliency_map(model, images)


def test_saliency_and_grad_cam_work_inside_no_grad():
    net = _tiny_cam_net()
    images = torch.randn(2, 2, 6, 6)
    with torch.no_grad():
        assert interpret.saliency_map(net, images).shape == (2, 6, 6)
        assert interpret.grad_cam(net, images).shape == (2, 6, 6)


def test_plot_filters_shows_one_panel_per_kernel(tmp_path):
    net = _tiny_cam_net()
    figure = interpret.plot_filters(net, tmp_path / "filters.png")
    assert len(figure.axes) == 3 and (tmp_path / "filters.png").is_file()
    np.testing.assert_allclose(figure.axes[1].images[0].get_array(), net[0].weight[1].mean(0).detach().numpy())


# -- text --------------------------------------------------------------------------------------------------
def test_attention_weights_of_the_attention_classifier(tmp_path):
    torch.manual_seed(0)
    model = BiLSTMAttentionClassifier(vocab_size=12, num_classes=2, embedding_dim=8, units=4, dropout=0.0)
    ids = torch.tensor([[3, 5, 7, 0, 0], [1, 2, 3, 4, 5]])
    weights = interpret.attention_weights(model, ids)
    assert weights.shape == (2, 5)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-5)
    assert (weights[0, 3:] == 0).all()
    _, expected = model.eval()(ids, return_attention_scores=True)
    np.testing.assert_allclose(weights, expected.detach().numpy())
    figure = interpret.plot_attention([["a", "fine", "film"], list("abcde")], weights, tmp_path / "attention.png")
    assert len(figure.axes) == 2 and (tmp_path / "attention.png").is_file()
    with pytest.raises(ValueError, match="return_attention_scores"):
        interpret.attention_weights(TextCNN(vocab_size=12, num_classes=2, embedding_dim=8, num_filters=2), ids)
