import math

import pytest
import torch
from torch import nn

from deepzen.layers.attention import (AdditiveAttention, Attention, LuongAttention, MultiHeadAttention,
                                      ScaledDotProductAttention)
from deepzen.serializable import serializable_class

torch.manual_seed(0)
DTYPE = torch.float64


def masked_softmax(scores, keep):
    if keep is not None:
        scores = scores.masked_fill(~keep, -math.inf)
    return scores.softmax(-1)


def key_padding(lengths, steps):
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]  # (N, Tv), True = real


def test_additive_attention_matches_bahdanau_formula():
    query, value, key = (torch.randn(2, 3, 4, dtype=DTYPE), torch.randn(2, 5, 6, dtype=DTYPE),
                         torch.randn(2, 5, 3, dtype=DTYPE))
    mask = key_padding([5, 2], 5)
    layer = AdditiveAttention(units=7)
    output, weights = layer(query, value, key, mask=mask, return_attention_scores=True)
    W, U, v = layer.query_weight, layer.key_weight, layer.score_weight
    scores = torch.zeros(2, 3, 5, dtype=DTYPE)
    for n in range(2):
        for i in range(3):
            for j in range(5):
                scores[n, i, j] = v @ torch.tanh(W @ query[n, i] + U @ key[n, j])
    expected_weights = masked_softmax(scores, mask[:, None, :])
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(output, expected_weights @ value)
    assert output.shape == (2, 3, 6)


@pytest.mark.parametrize("score_mode", ["dot", "general"])
@pytest.mark.parametrize("use_scale", [False, True])
def test_luong_attention_matches_formula(score_mode, use_scale):
    query, value = torch.randn(2, 3, 4, dtype=DTYPE), torch.randn(2, 5, 4, dtype=DTYPE)
    mask = key_padding([3, 5], 5)
    layer = Attention(score_mode=score_mode, use_scale=use_scale)
    fused = layer(query, value, mask=mask)
    if use_scale:
        with torch.no_grad():
            layer.scale.fill_(0.5)
        fused = layer(query, value, mask=mask)
    output, weights = layer(query, value, mask=mask, return_attention_scores=True)
    projected = query @ layer.weight.T if score_mode == "general" else query  # score = (W q) . k, W (Dk, Dq)
    scores = projected @ value.transpose(1, 2) * (0.5 if use_scale else 1.0)
    expected_weights = masked_softmax(scores, mask[:, None, :])
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(output, expected_weights @ value)
    torch.testing.assert_close(fused, output)  # the fused path computes the same thing


def test_scaled_dot_product_attention_matches_formula():
    query, key, value = (torch.randn(2, 4, 8, dtype=DTYPE), torch.randn(2, 6, 8, dtype=DTYPE),
                         torch.randn(2, 6, 3, dtype=DTYPE))
    mask = key_padding([6, 4], 6)
    layer = ScaledDotProductAttention()
    output, weights = layer(query, value, key, mask=mask, return_attention_scores=True)
    expected_weights = masked_softmax(query @ key.transpose(1, 2) / math.sqrt(8), mask[:, None, :])
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(output, expected_weights @ value)
    torch.testing.assert_close(layer(query, value, key, mask=mask), output)
    assert list(layer.parameters()) == []
    assert serializable_class("LuongAttention") is LuongAttention is Attention


def manual_multi_head(layer, query, key, value, keep):
    """Per-head loop with the layer's weights; keep is (N, Tq, Tv) or None."""
    q = query @ layer.query_weight.T + layer.query_bias
    k = key @ layer.key_weight.T + layer.key_bias
    v = value @ layer.value_weight.T + layer.value_bias
    heads, weights = [], []
    for h in range(layer.num_heads):
        part = slice(h * layer.key_dim, (h + 1) * layer.key_dim)
        values = slice(h * layer.value_dim, (h + 1) * layer.value_dim)
        w = masked_softmax(q[..., part] @ k[..., part].transpose(1, 2) / math.sqrt(layer.key_dim), keep)
        heads.append(w @ v[..., values])
        weights.append(w)
    return torch.cat(heads, -1) @ layer.output_weight.T + layer.output_bias, torch.stack(weights, 1)


@pytest.mark.parametrize("return_attention_scores", [False, True])
def test_multi_head_attention_matches_per_head_computation(return_attention_scores):
    query, key, value = (torch.randn(2, 3, 6, dtype=DTYPE), torch.randn(2, 5, 4, dtype=DTYPE),
                         torch.randn(2, 5, 7, dtype=DTYPE))
    mask = key_padding([5, 3], 5)
    layer = MultiHeadAttention(num_heads=3, key_dim=2, value_dim=5)
    result = layer(query, value, key, mask=mask, return_attention_scores=return_attention_scores)
    expected_output, expected_weights = manual_multi_head(layer, query, key, value, mask[:, None, :])
    output = result[0] if return_attention_scores else result
    assert output.shape == (2, 3, 6) and layer.value_weight.shape == (15, 7)
    torch.testing.assert_close(output, expected_output)
    if return_attention_scores:
        torch.testing.assert_close(result[1], expected_weights)


@pytest.mark.parametrize("self_attention", [True, False])
def test_multi_head_attention_equals_torch_with_copied_weights(self_attention):
    embed, heads = 8, 2
    reference = nn.MultiheadAttention(embed, heads, batch_first=True, dtype=DTYPE)
    nn.init.normal_(reference.in_proj_bias)
    nn.init.normal_(reference.out_proj.bias)
    query = torch.randn(3, 4, embed, dtype=DTYPE)
    value = query if self_attention else torch.randn(3, 6, embed, dtype=DTYPE)
    mask = key_padding([value.shape[1], 2, 3], value.shape[1])
    layer = MultiHeadAttention(num_heads=heads, key_dim=embed // heads)
    layer(query, value)
    with torch.no_grad():
        for role, weight, bias in zip(("query", "key", "value"), reference.in_proj_weight.chunk(3),
                                      reference.in_proj_bias.chunk(3)):
            getattr(layer, f"{role}_weight").copy_(weight)
            getattr(layer, f"{role}_bias").copy_(bias)
        layer.output_weight.copy_(reference.out_proj.weight)
        layer.output_bias.copy_(reference.out_proj.bias)
    causal = self_attention
    torch_mask = torch.ones(4, 4, dtype=torch.bool).triu(1) if causal else None  # True = masked, in torch
    expected, expected_weights = reference(query, value, value, key_padding_mask=~mask, attn_mask=torch_mask,
                                           average_attn_weights=False)
    output, weights = layer(query, value, mask=mask, use_causal_mask=causal, return_attention_scores=True)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(layer(query, value, mask=mask, use_causal_mask=causal), expected)


LAYER_FACTORIES = {
    "additive": lambda: AdditiveAttention(use_causal_mask=True),
    "dot": lambda: Attention(use_causal_mask=True),
    "general": lambda: Attention(score_mode="general", use_causal_mask=True),
    "scaled": lambda: ScaledDotProductAttention(use_causal_mask=True),
    "multi_head": lambda: MultiHeadAttention(num_heads=2, key_dim=3, use_causal_mask=True),
}


@pytest.mark.parametrize("kind", LAYER_FACTORIES)
@pytest.mark.parametrize("return_attention_scores", [False, True])
def test_causal_mask_hides_later_steps(kind, return_attention_scores):
    layer = LAYER_FACTORIES[kind]()
    x = torch.randn(2, 6, 4, dtype=DTYPE)

    def run(inputs):
        result = layer(inputs, return_attention_scores=return_attention_scores)
        return result[0] if return_attention_scores else result

    output = run(x)
    for t in range(5):
        perturbed = x.clone()
        perturbed[:, t + 1:] += torch.randn_like(perturbed[:, t + 1:])
        changed = run(perturbed)
        torch.testing.assert_close(changed[:, :t + 1], output[:, :t + 1])
        assert not torch.allclose(changed[:, t + 1:], output[:, t + 1:])
    unmasked = layer(x, use_causal_mask=False)
    assert not torch.allclose(unmasked[:, 0], output[:, 0])


@pytest.mark.parametrize("kind", LAYER_FACTORIES)
def test_padding_mask_hides_padded_keys(kind):
    layer = LAYER_FACTORIES[kind]()
    query, value = torch.randn(3, 4, 4, dtype=DTYPE), torch.randn(3, 5, 4, dtype=DTYPE)
    mask = key_padding([5, 2, 3], 5)
    output = layer(query, value, mask=mask, use_causal_mask=False)
    perturbed = value + torch.randn_like(value) * (~mask)[..., None]
    torch.testing.assert_close(layer(query, perturbed, mask=mask, use_causal_mask=False), output)
    unmasked = layer(query, value, use_causal_mask=False)
    assert not torch.allclose(layer(query, perturbed, use_causal_mask=False), unmasked)


@pytest.mark.parametrize("kind", LAYER_FACTORIES)
def test_a_query_with_no_key_left_gets_zero_weights(kind):
    layer = LAYER_FACTORIES[kind]()
    query, value = torch.randn(1, 2, 4), torch.randn(1, 3, 4)
    attention_mask = torch.tensor([[True, False, True], [False, False, False]])
    output, weights = layer(query, value, attention_mask=attention_mask, use_causal_mask=False,
                            return_attention_scores=True)
    fused = layer(query, value, attention_mask=attention_mask, use_causal_mask=False)
    assert torch.all(weights[..., 1, :] == 0) and torch.all(weights[..., 0, 1] == 0)
    torch.testing.assert_close(fused, output)
    assert not torch.isnan(output).any()


@pytest.mark.parametrize("kind", ["additive", "general", "multi_head"])
@pytest.mark.parametrize("return_attention_scores", [False, True])
def test_gradcheck(kind, return_attention_scores):
    layer = LAYER_FACTORIES[kind]()
    query, value = torch.randn(2, 3, 4, dtype=DTYPE), torch.randn(2, 4, 4, dtype=DTYPE)
    mask = key_padding([4, 2], 4)
    layer(query, value)
    params = dict(layer.named_parameters())

    def functional(q, v, *values):
        result = torch.func.functional_call(layer, dict(zip(params, values)), (q, v),
                                            {"mask": mask, "use_causal_mask": False,
                                             "return_attention_scores": return_attention_scores})
        return result[0] if return_attention_scores else result

    inputs = (query.requires_grad_(), value.requires_grad_(), *[p.detach().requires_grad_() for p in params.values()])
    assert torch.autograd.gradcheck(functional, inputs, fast_mode=True)


def test_dropout_acts_only_while_training():
    layer = MultiHeadAttention(num_heads=2, key_dim=2, dropout=0.5)
    x = torch.randn(2, 5, 4)
    layer.train()
    assert not torch.allclose(layer(x), layer(x))
    _, weights = layer(x, return_attention_scores=True)  # the weights before dropout
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))


def test_cache_decodes_one_step_at_a_time():
    layer = MultiHeadAttention(num_heads=2, key_dim=3, use_causal_mask=True)
    x = torch.randn(2, 5, 6, dtype=DTYPE)
    full = layer(x)
    cache = {}
    steps = [layer(x[:, :2], cache=cache)] + [layer(x[:, t:t + 1], cache=cache) for t in range(2, 5)]
    torch.testing.assert_close(torch.cat(steps, 1), full)
    assert cache["key"].shape == (2, 2, 5, 3)


def test_mask_passes_through_and_config_round_trips():
    mask = key_padding([2, 3], 3)
    assert MultiHeadAttention(2, 4).compute_mask(torch.zeros(2, 3, 8), mask) is mask
    layer = MultiHeadAttention(4, 8, value_dim=6, dropout=0.1, use_bias=False, use_causal_mask=True)
    rebuilt = MultiHeadAttention.from_config(layer.get_config())
    assert (rebuilt.num_heads, rebuilt.key_dim, rebuilt.value_dim, rebuilt.dropout, rebuilt.use_bias,
            rebuilt.use_causal_mask) == (4, 8, 6, 0.1, False, True)
    built = rebuilt(torch.randn(1, 2, 5))
    assert built.shape == (1, 2, 5) and rebuilt.query_bias is None


def test_errors_name_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match=r"'attn' \(MultiHeadAttention\) expects query of shape "
                                         r"\(batch, steps, features\)\. Received: query shape \(2, 4\)"):
        MultiHeadAttention(2, 2, name="attn")(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"value shape \(2, 5, 4\), key shape \(2, 6, 4\)"):
        AdditiveAttention()(torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="score_mode='dot'.*query features 4, key features 3"):
        Attention()(torch.randn(2, 3, 4), torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="score_mode 'dot' or 'general'. Received: score_mode='concat'"):
        Attention(score_mode="concat")
    with pytest.raises(ValueError, match="num_heads.*0"):
        MultiHeadAttention(0, 4)
