import math

import pytest
import torch
from torch import nn

from deepzen.layers.transformer import (LearnedPositionalEmbedding, PositionalEncoding, TransformerDecoder,
                                        TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer)

torch.manual_seed(0)
DTYPE = torch.float64


def padding(lengths, steps):
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]  # True = real token


@pytest.mark.parametrize("dim", [6, 5])
def test_sinusoidal_encoding_matches_the_formula(dim):
    layer = PositionalEncoding(max_len=50)
    x = torch.randn(2, 7, dim, dtype=DTYPE)
    layer(x)
    expected = torch.zeros(10, dim, dtype=DTYPE)
    for t in range(10):
        for i in range(dim):
            angle = t / 10000 ** (2 * (i // 2) / dim)
            expected[t, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    torch.testing.assert_close(layer(x) - x, expected[:7].expand(2, 7, dim))
    torch.testing.assert_close(layer(x[:, :3], start_index=7) - x[:, :3], expected[7:10].expand(2, 3, dim))
    assert "positions" not in layer.state_dict()  # recomputed, not saved
    mask = padding([7, 3], 7)
    assert layer.compute_mask(x, mask) is mask


def test_positions_beyond_max_len_are_an_error():
    layer = PositionalEncoding(max_len=8, name="pos")
    with pytest.raises(ValueError, match=r"'pos' \(PositionalEncoding\).*max_len=8.*6 steps from start_index=4"):
        layer(torch.zeros(1, 6, 4), start_index=4)
    with pytest.raises(ValueError, match=r"\(batch, steps, features\). Received shape: \(2, 4\)"):
        PositionalEncoding()(torch.zeros(2, 4))


def test_learned_positional_embedding_adds_a_trained_vector_per_position():
    layer = LearnedPositionalEmbedding(max_len=10)
    x = torch.randn(2, 4, 3)
    output = layer(x, start_index=2)
    torch.testing.assert_close(output, x + layer.positions[2:6])
    assert isinstance(layer.positions, nn.Parameter) and layer.positions.shape == (10, 3)
    output.sum().backward()
    assert torch.all(layer.positions.grad[2:6] == 2) and torch.all(layer.positions.grad[:2] == 0)


def copy_attention(ours, theirs):
    with torch.no_grad():
        for role, weight, bias in zip(("query", "key", "value"), theirs.in_proj_weight.chunk(3),
                                      theirs.in_proj_bias.chunk(3)):
            getattr(ours, f"{role}_weight").copy_(weight)
            getattr(ours, f"{role}_bias").copy_(bias)
        ours.output_weight.copy_(theirs.out_proj.weight)
        ours.output_bias.copy_(theirs.out_proj.bias)


def copy_layer(ours, theirs):
    """Copies an nn.TransformerEncoderLayer / nn.TransformerDecoderLayer into a built deepzen layer."""
    copy_attention(ours.self_attention, theirs.self_attn)
    ours.feedforward_in.load_state_dict(theirs.linear1.state_dict())
    ours.feedforward_out.load_state_dict(theirs.linear2.state_dict())
    ours.self_attention_norm.load_state_dict(theirs.norm1.state_dict())
    if isinstance(theirs, nn.TransformerDecoderLayer):
        copy_attention(ours.cross_attention, theirs.multihead_attn)
        ours.cross_attention_norm.load_state_dict(theirs.norm2.state_dict())
        ours.feedforward_norm.load_state_dict(theirs.norm3.state_dict())
    else:
        ours.feedforward_norm.load_state_dict(theirs.norm2.state_dict())


def randomize(module):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.3)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_equals_torch_with_copied_weights(norm_first, activation):
    reference = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, activation=activation, norm_first=norm_first,
                                           batch_first=True, dtype=DTYPE).eval()
    randomize(reference)
    layer = TransformerEncoderLayer(num_heads=2, intermediate_dim=12, activation=activation,
                                    norm_first=norm_first).eval()
    x = torch.randn(3, 5, 8, dtype=DTYPE)
    mask = padding([5, 3, 1], 5)
    layer(x)
    copy_layer(layer, reference)
    expected = reference(x, src_key_padding_mask=~mask)
    output = layer(x, mask=mask)
    torch.testing.assert_close(output[mask], expected[mask])
    torch.testing.assert_close(layer(x), reference(x))


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_torch_with_copied_weights(norm_first):
    reference = nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, norm_first=norm_first, batch_first=True,
                                           dtype=DTYPE).eval()
    randomize(reference)
    layer = TransformerDecoderLayer(num_heads=2, intermediate_dim=16, norm_first=norm_first).eval()
    target, memory = torch.randn(3, 4, 8, dtype=DTYPE), torch.randn(3, 6, 8, dtype=DTYPE)
    target_mask, memory_mask = padding([4, 2, 3], 4), padding([6, 6, 2], 6)
    layer(target, memory)
    copy_layer(layer, reference)
    causal = torch.ones(4, 4, dtype=torch.bool).triu(1)  # True = masked, in torch
    expected = reference(target, memory, tgt_mask=causal, tgt_key_padding_mask=~target_mask,
                         memory_key_padding_mask=~memory_mask)
    output = layer(target, memory, mask=target_mask, memory_mask=memory_mask)
    torch.testing.assert_close(output[target_mask], expected[target_mask])


def test_pre_and_post_norm_differ_with_the_same_weights():
    x = torch.randn(2, 5, 8)
    post = TransformerEncoderLayer(num_heads=2, norm_first=False).eval()
    pre = TransformerEncoderLayer(num_heads=2, norm_first=True).eval()
    post(x), pre(x)
    pre.load_state_dict(post.state_dict())
    randomize(pre)
    post.load_state_dict(pre.state_dict())
    assert not torch.allclose(pre(x), post(x))
    norm = post.feedforward_norm  # post-norm ends with it: undoing its affine map leaves zero-mean rows

    def undo_affine(output):
        return ((output - norm.bias) / norm.weight).mean(-1)

    torch.testing.assert_close(undo_affine(post(x)), torch.zeros(2, 5), atol=1e-5, rtol=0)
    assert not torch.allclose(undo_affine(pre(x)), torch.zeros(2, 5), atol=1e-5)


def perturbation_keeps_earlier_steps(run, x):
    output = run(x)
    for t in range(x.shape[1] - 1):
        perturbed = x.clone()
        perturbed[:, t + 1:] += torch.randn_like(perturbed[:, t + 1:])
        changed = run(perturbed)
        torch.testing.assert_close(changed[:, :t + 1], output[:, :t + 1])
        assert not torch.allclose(changed[:, t + 1:], output[:, t + 1:])


def test_decoder_is_causal():
    decoder = TransformerDecoder(2, num_heads=2, dropout=0.0).eval()
    memory = torch.randn(2, 7, 8)
    perturbation_keeps_earlier_steps(lambda target: decoder(target, memory), torch.randn(2, 5, 8))
    encoder = TransformerEncoder(2, num_heads=2, dropout=0.0).eval()
    x = torch.randn(2, 5, 8)
    perturbed = x.clone()
    perturbed[:, -1] += 1.0
    assert not torch.allclose(encoder(x)[:, 0], encoder(perturbed)[:, 0])  # an encoder sees the whole sequence


def test_encoder_layer_with_causal_mask_is_a_decoder_only_block():
    block = TransformerEncoderLayer(num_heads=2, use_causal_mask=True, dropout=0.0)
    perturbation_keeps_earlier_steps(block, torch.randn(2, 5, 8))


def test_padded_tokens_do_not_change_real_outputs():
    encoder = TransformerEncoder(2, num_heads=2, norm_first=True).eval()
    x, mask = torch.randn(3, 6, 8), padding([6, 2, 4], 6)
    output = encoder(x, mask=mask)
    perturbed = x + torch.randn_like(x) * (~mask)[..., None]
    torch.testing.assert_close(encoder(perturbed, mask=mask)[mask], output[mask])
    assert not torch.allclose(encoder(perturbed)[mask], encoder(x)[mask])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("with_memory", [True, False])
def test_incremental_decoding_with_cache_equals_full_decoding(norm_first, with_memory):
    decoder = TransformerDecoder(3, num_heads=2, norm_first=norm_first).eval()
    target = torch.randn(2, 6, 8, dtype=DTYPE)
    memory = torch.randn(2, 5, 8, dtype=DTYPE) if with_memory else None
    memory_mask = padding([5, 3], 5) if with_memory else None
    full = decoder(target, memory, memory_mask=memory_mask)
    cache = {}
    steps = [decoder(target[:, :2], memory, memory_mask=memory_mask, cache=cache)]  # a prompt, then one step at a time
    steps += [decoder(target[:, t:t + 1], memory, memory_mask=memory_mask, cache=cache) for t in range(2, 6)]
    torch.testing.assert_close(torch.cat(steps, 1), full)
    assert set(cache) == {0, 1, 2} and cache[0]["self_attention"]["key"].shape == (2, 2, 6, 4)


def test_stacks_shapes_and_final_norm():
    x = torch.randn(2, 5, 12)
    for norm_first in (False, True):
        encoder = TransformerEncoder(3, num_heads=3, intermediate_dim=20, norm_first=norm_first)
        assert encoder(x).shape == (2, 5, 12) and len(encoder.layers) == 3
        assert (encoder.final_norm is not None) == norm_first
    decoder = TransformerDecoder(2, num_heads=4)
    assert decoder(torch.randn(2, 3, 12), torch.randn(2, 7, 10)).shape == (2, 3, 12)
    assert decoder.layers[0].cross_attention.key_weight.shape == (12, 10)
    assert decoder.layers[0].feedforward_in.weight.shape == (48, 12)  # default 4 * d_model
    rebuilt = TransformerDecoder.from_config(decoder.get_config())
    assert len(rebuilt.layers) == 2 and rebuilt.layers[1].use_causal_mask


def test_dropout_acts_only_while_training():
    layer = TransformerEncoderLayer(num_heads=2, dropout=0.3)
    x = torch.randn(2, 5, 8)
    assert not torch.allclose(layer.train()(x), layer(x))
    torch.testing.assert_close(layer.eval()(x), layer(x))


def test_errors_name_the_layer_and_what_was_received():
    with pytest.raises(ValueError, match=r"'block' \(TransformerEncoderLayer\).*divisible by num_heads. "
                                         r"Received: d_model=10, num_heads=3"):
        TransformerEncoderLayer(num_heads=3, name="block")(torch.randn(2, 4, 10))
    with pytest.raises(ValueError, match=r"\(TransformerDecoderLayer\) expects inputs of shape \(batch, steps, "
                                         r"features\). Received shape: \(2, 8\)"):
        TransformerDecoderLayer(num_heads=2)(torch.randn(2, 8))
    with pytest.raises(ValueError, match="num_layers.*0"):
        TransformerEncoder(0, num_heads=2)
    with pytest.raises(ValueError, match="Unknown activation"):
        TransformerEncoderLayer(num_heads=2, activation="nope")
