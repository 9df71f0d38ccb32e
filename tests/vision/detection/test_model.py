"""The SSD model: output layout against its anchors, decoding and NMS in detect, config round trip, bad input."""

import pytest
import torch

from deepzen.vision.detection.boxes import encode
from deepzen.vision.detection.model import SSD, postprocess


def tiny(**options):
    return SSD(num_classes=3, in_channels=1, image_size=(64, 64), width=4, pyramid_channels=8, **options)


def test_output_has_one_row_per_anchor():
    model = tiny(aspect_ratios=(1.0, 0.5))
    out = model(torch.rand(2, 1, 64, 64))
    cells = 8 * 8 + 4 * 4 + 2 * 2
    assert model.anchors.shape == (cells * 4, 4) and out.shape == (2, cells * 4, 4 + 1 + 3)
    assert (out[..., 4:].argmax(-1) == 0).all()  # initialized to predict the background everywhere


def test_postprocess_decodes_scores_and_suppresses():
    anchors = torch.tensor([[0.0, 0, 20, 20], [2, 2, 22, 22], [40, 40, 60, 60], [0, 40, 20, 60]])
    boxes = torch.tensor([[1.0, 1, 21, 21], [1, 1, 21, 21], [40, 40, 60, 60], [0, 40, 20, 60]])
    logits = torch.tensor([[0.0, 5, 0], [0, 4, 0], [0, 0, 3], [6, 0, 0]])  # the last anchor is background
    predictions = torch.cat([encode(boxes, anchors), logits], dim=1)[None]
    result = postprocess(predictions, anchors, (64, 64), score_threshold=0.5, iou_threshold=0.5)[0]
    assert result["labels"].tolist() == [0, 1]  # the duplicate of the first box is suppressed
    torch.testing.assert_close(result["boxes"], boxes[[0, 2]])
    expected = torch.tensor([logits[0].softmax(0)[1], logits[2].softmax(0)[2]])
    torch.testing.assert_close(result["scores"], expected)


def test_detect_limits_and_sorts():
    torch.manual_seed(0)
    model = tiny()
    torch.nn.init.normal_(model.class_head.weight, std=0.5)
    found = model.detect(torch.rand(3, 1, 64, 64), score_threshold=0.0, max_detections=7)
    assert len(found) == 3 and model.training  # detect restores the mode
    for result in found:
        assert len(result["boxes"]) == 7
        assert (result["scores"][:-1] >= result["scores"][1:]).all()
        assert (result["boxes"] >= 0).all() and (result["boxes"] <= 64).all()


def test_config_round_trip_and_same_outputs():
    model = tiny(aspect_ratios=(1.0,), mean=(0.4,), std=(0.2,)).eval()
    again = SSD.from_config(model.get_config()).eval()
    again.load_state_dict(model.state_dict())
    x = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(again(x), model(x))


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ValueError, match="image_size=\\(height, width\\), each at least 32"):
        SSD(num_classes=2, image_size=(16, 16))
    with pytest.raises(ValueError, match="num_classes to be a positive integer"):
        SSD(num_classes=0)
    with pytest.raises(ValueError, match="built for 64x64 images. Received: images of shape \\(1, 1, 32, 32\\)"):
        tiny()(torch.rand(1, 1, 32, 32))
