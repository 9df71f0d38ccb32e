"""GroupNormalization and UnitNormalization against their formulas and Keras's defaults."""

import pytest
import torch

from deepzen import config
from deepzen.layers.normalization import GroupNormalization, LayerNormalization, UnitNormalization


def group_norm_reference(x, groups, eps):
    """Per sample and group of channels (axis 1): subtract the mean, divide by sqrt(var + eps)."""
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, -1)
    mean = grouped.mean(-1, keepdim=True)
    var = grouped.var(-1, unbiased=False, keepdim=True)
    return ((grouped - mean) / torch.sqrt(var + eps)).reshape(x.shape)


def test_group_normalization_formula_channels_first_and_last():
    x = torch.randn(3, 6, 4, 5)
    torch.testing.assert_close(GroupNormalization(groups=3)(x), group_norm_reference(x, 3, 1e-3))
    last = GroupNormalization(groups=3, axis=-1)(x.permute(0, 2, 3, 1))
    torch.testing.assert_close(last, group_norm_reference(x, 3, 1e-3).permute(0, 2, 3, 1))
    torch.testing.assert_close(GroupNormalization(groups=-1)(x), group_norm_reference(x, 6, 1e-3))  # instance norm
    assert GroupNormalization().groups == 32  # Keras's default
    with pytest.raises(ValueError, match="divisible by groups"):
        GroupNormalization(groups=4)(x)


def test_group_normalization_axis_follows_the_global():
    try:
        config.set_image_data_format("channels_last")
        assert GroupNormalization().axis == -1
    finally:
        config.set_image_data_format("channels_first")
    assert GroupNormalization().axis == 1


def test_group_of_one_equals_layer_normalization_over_all_axes():
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(GroupNormalization(groups=1, epsilon=1e-5)(x),
                               LayerNormalization(axis=(1, 2), epsilon=1e-5)(x), atol=1e-5, rtol=1e-5)


def test_unit_normalization():
    x = torch.randn(4, 5)
    out = UnitNormalization()(x)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(out, x / x.norm(dim=-1, keepdim=True))
    assert torch.equal(UnitNormalization()(torch.zeros(1, 3)), torch.zeros(1, 3))
    y = torch.randn(2, 3, 4)
    torch.testing.assert_close(UnitNormalization(axis=(1, 2))(y).square().sum((1, 2)), torch.ones(2))
