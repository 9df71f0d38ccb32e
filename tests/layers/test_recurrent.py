import pytest
import torch
from torch import nn

from deepzen.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN

torch.manual_seed(0)
DTYPE = torch.float64
KINDS = [SimpleRNN, LSTM, GRU]
TORCH_MODULES = {SimpleRNN: nn.RNN, LSTM: nn.LSTM, GRU: nn.GRU}


def cell_step(layer, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of the Keras / PyTorch cell equations, written out."""
    gx, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    if isinstance(layer, LSTM):
        i, f, g, o = (gx + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if isinstance(layer, GRU):
        rx, zx, nx = gx.chunk(3, dim=-1)
        rh, zh, nh = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(rx + rh), torch.sigmoid(zx + zh)
        n = torch.tanh(nx + r * nh)  # reset_after=True
        return (1 - z) * n + z * h, c
    activation = torch.tanh if layer.activation == "tanh" else torch.relu
    return activation(gx + gh), c


def reference(layer, x, h0=None, c0=None):
    """Python loop over steps, layers and directions. Returns top outputs (N, T, D*u) and final (h, c)
    stacked as (layers * directions, N, u)."""
    rnn, units = layer.rnn, layer.units
    inputs, final_h, final_c = x, [], []
    for depth in range(layer.num_layers):
        outputs = []
        for direction, suffix in enumerate(["", "_reverse"][:layer.num_directions]):
            params = [getattr(rnn, f"{name}_l{depth}{suffix}")
                      for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            index = depth * layer.num_directions + direction
            h = torch.zeros(x.shape[0], units, dtype=x.dtype) if h0 is None else h0[index]
            c = torch.zeros(x.shape[0], units, dtype=x.dtype) if c0 is None else c0[index]
            sequence = inputs.flip(1) if direction else inputs
            steps = []
            for t in range(x.shape[1]):
                h, c = cell_step(layer, sequence[:, t], h, c, *params)
                steps.append(h)
            out = torch.stack(steps, 1)
            outputs.append(out.flip(1) if direction else out)
            final_h.append(h)
            final_c.append(c)
        inputs = torch.cat(outputs, -1)
    return inputs, torch.stack(final_h), torch.stack(final_c)


def run_all(layer, x, **kwargs):
    """(outputs, h, c-or-None) with states as (L * D, N, u)."""
    result = layer(x, **kwargs)
    output, states = result[0], result[1:]
    states = tuple(s if s.dim() == 3 else s.unsqueeze(0) for s in states)
    return output, states[0], states[1] if len(states) > 1 else None


def make(kind, units=4, **kwargs):
    extra = {"activation": kwargs.pop("activation")} if "activation" in kwargs else {}
    return kind(units, **extra, **kwargs)


@pytest.mark.parametrize("kind,options", [(SimpleRNN, {}), (SimpleRNN, {"activation": "relu"}), (LSTM, {}), (GRU, {})])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (1, True), (2, True)])
def test_matches_written_out_cell_equations(kind, options, num_layers, bidirectional):
    layer = make(kind, num_layers=num_layers, bidirectional=bidirectional, return_sequences=True,
                 return_state=True, **options)
    x = torch.randn(3, 5, 2, dtype=DTYPE)
    output, h, c = run_all(layer, x)
    expected_output, expected_h, expected_c = reference(layer, x)
    torch.testing.assert_close(output, expected_output)
    torch.testing.assert_close(h, expected_h)
    if kind is LSTM:
        torch.testing.assert_close(c, expected_c)


@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch_module_with_copied_weights(kind):
    reference_module = TORCH_MODULES[kind](3, 4, num_layers=2, batch_first=True, bidirectional=True, dtype=DTYPE)
    layer = kind(4, num_layers=2, bidirectional=True, return_sequences=True, return_state=True)
    x = torch.randn(2, 6, 3, dtype=DTYPE)
    layer.build_for(x)
    layer.rnn.load_state_dict(reference_module.state_dict())
    expected_output, expected_state = reference_module(x)
    output, *states = layer(x)
    torch.testing.assert_close(output, expected_output)
    for actual, expected in zip(states, expected_state if kind is LSTM else (expected_state,)):
        torch.testing.assert_close(actual, expected)


def padded_batch(lengths, steps=6, features=3, pre_padding=False):
    x = torch.randn(len(lengths), steps, features, dtype=DTYPE)  # padded steps hold noise, not zeros
    mask = torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]
    if pre_padding:
        mask = mask.flip(1)
    return x, mask


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("how", ["lengths", "mask", "pre_padding_mask"])
def test_padded_batch_gives_each_sequence_its_unpadded_result(kind, bidirectional, how):
    lengths = [6, 2, 4, 1]
    x, mask = padded_batch(lengths, pre_padding=how == "pre_padding_mask")
    layer = kind(4, bidirectional=bidirectional, return_sequences=True, return_state=True)
    call = {"lengths": torch.tensor(lengths)} if how == "lengths" else {"mask": mask}
    output, h, c = run_all(layer, x, **call)
    last_layer = kind(4, bidirectional=bidirectional, return_state=True)
    last_layer.build_for(x)
    last_layer.load_state_dict(layer.state_dict())
    last, *_ = last_layer(x, **call)
    for i, length in enumerate(lengths):
        alone = x[i:i + 1][mask[i:i + 1]].reshape(1, length, -1)
        alone_output, alone_h, alone_c = run_all(layer, alone)
        torch.testing.assert_close(output[i][mask[i]], alone_output[0])
        assert torch.all(output[i][~mask[i]] == 0)
        torch.testing.assert_close(h[:, i], alone_h[:, 0])
        if kind is LSTM:
            torch.testing.assert_close(c[:, i], alone_c[:, 0])
        torch.testing.assert_close(last[i], last_layer(alone)[0][0])


def test_padded_steps_get_no_gradient():
    x, mask = padded_batch([5, 2, 3], pre_padding=True)
    x.requires_grad_(True)
    LSTM(4, bidirectional=True)(x, mask=mask).sum().backward()
    assert torch.all(x.grad[~mask] == 0)
    assert torch.all(x.grad[mask].abs().sum(-1) > 0)


def test_go_backwards_reads_reversed_sequences():
    x, mask = padded_batch([6, 3, 4])
    layer = GRU(4, go_backwards=True, return_sequences=True, return_state=True)
    output, h = layer(x)
    forward_layer = GRU(4, return_sequences=True, return_state=True)
    forward_layer.build_for(x)
    forward_layer.load_state_dict(layer.state_dict())
    expected_output, expected_h = forward_layer(x.flip(1))
    torch.testing.assert_close(output, expected_output)  # Keras: outputs in processing order
    torch.testing.assert_close(h, expected_h)
    for call in ({"mask": mask}, {"lengths": mask.sum(1)}):
        _, h_masked = layer(x, **call)
        for i, length in enumerate(mask.sum(1).tolist()):
            _, alone_h = forward_layer(x[i:i + 1, :length].flip(1))
            torch.testing.assert_close(h_masked[i], alone_h[0])
    assert torch.equal(layer.compute_mask(x, mask), mask.flip(1))


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
def test_bidirectional_merge_modes(merge_mode):
    x = torch.randn(2, 5, 3, dtype=DTYPE)
    layer = LSTM(4, bidirectional=True, merge_mode=merge_mode, return_sequences=True)
    output = layer(x)
    last_layer = LSTM(4, bidirectional=True, merge_mode=merge_mode)
    last_layer.build_for(x)
    last_layer.load_state_dict(layer.state_dict())
    last = last_layer(x)
    # The two directions, each run as a one-directional layer with the matching weights.
    directions = []
    for suffix in ("", "_reverse"):
        single = LSTM(4, return_sequences=True)
        single.build_for(x)
        single.rnn.load_state_dict({name: getattr(layer.rnn, name + suffix) for name in
                                    ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")})
        directions.append(single(x.flip(1)).flip(1) if suffix else single(x))
    forward, backward = directions
    merged = {"concat": torch.cat((forward, backward), -1), "sum": forward + backward,
              "mul": forward * backward, "ave": (forward + backward) / 2}[merge_mode]
    assert output.shape == (2, 5, 8 if merge_mode == "concat" else 4)
    torch.testing.assert_close(output, merged)
    last_merged = {"concat": torch.cat((forward[:, -1], backward[:, 0]), -1), "sum": forward[:, -1] + backward[:, 0],
                   "mul": forward[:, -1] * backward[:, 0], "ave": (forward[:, -1] + backward[:, 0]) / 2}[merge_mode]
    torch.testing.assert_close(last, last_merged)


def test_bidirectional_wrapper_equals_the_shortcut():
    x = torch.randn(2, 5, 3)
    wrapped = Bidirectional(GRU(4, return_sequences=True), merge_mode="ave")
    shortcut = GRU(4, return_sequences=True, bidirectional=True, merge_mode="ave")
    shortcut.build_for(x)
    wrapped.build_for(x)
    wrapped.layer.build_for(x)
    wrapped.layer.load_state_dict(shortcut.state_dict())
    torch.testing.assert_close(wrapped(x), shortcut(x))
    rebuilt = Bidirectional.from_config(wrapped.get_config())
    assert rebuilt.layer.bidirectional and rebuilt.layer.merge_mode == "ave" and rebuilt(x).shape == (2, 5, 4)


def test_bidirectional_wrapper_rejects_built_or_non_recurrent_layers():
    built = LSTM(4)
    built(torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match="unbuilt"):
        Bidirectional(built)
    with pytest.raises(TypeError, match="SimpleRNN, LSTM or GRU"):
        Bidirectional(nn.Linear(2, 2))


def test_stacked_layers_equal_chained_layers():
    x = torch.randn(2, 5, 3, dtype=DTYPE)
    stacked = LSTM(4, num_layers=2, return_state=True)
    output, h, c = stacked(x)
    first, second = LSTM(4, return_sequences=True, return_state=True), LSTM(4, return_state=True)
    for depth, single in enumerate((first, second)):
        single.build_for(x if depth == 0 else torch.zeros(1, 1, 4, dtype=DTYPE))
        single.rnn.load_state_dict({name + "0": getattr(stacked.rnn, f"{name}{depth}") for name in
                                    ("weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l")})
    hidden, h1, c1 = first(x)
    expected, h2, c2 = second(hidden)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(h, torch.stack((h1, h2)))
    torch.testing.assert_close(c, torch.stack((c1, c2)))
    assert h.shape == (2, 2, 4)


@pytest.mark.parametrize("kind", KINDS)
def test_return_state_is_the_final_output(kind):
    x = torch.randn(3, 5, 2)
    output, *states = kind(4, return_state=True)(x)
    assert len(states) == (2 if kind is LSTM else 1)
    assert all(s.shape == (3, 4) for s in states)
    torch.testing.assert_close(output, states[0])


@pytest.mark.parametrize("kind", KINDS)
def test_initial_state(kind):
    x = torch.randn(3, 5, 2, dtype=DTYPE)
    layer = kind(4, return_sequences=True, return_state=True)
    initial = [torch.randn(3, 4, dtype=DTYPE) for _ in range(2 if kind is LSTM else 1)]
    output, h, c = run_all(layer, x, initial_state=initial if kind is LSTM else initial[0])
    expected_output, expected_h, expected_c = reference(layer, x, *[s.unsqueeze(0) for s in initial])
    torch.testing.assert_close(output, expected_output)
    torch.testing.assert_close(h, expected_h)
    zero_start, _, _ = run_all(layer, x)
    assert not torch.allclose(zero_start, output)
    with pytest.raises(ValueError, match=r"initial_state \(h, c\).*Received: 1"):
        LSTM(4)(x, initial_state=initial[0])


def test_keras_initializers_and_forget_bias():
    layer = LSTM(5, num_layers=2, bidirectional=True)
    layer(torch.randn(2, 3, 4))
    for name, parameter in layer.rnn.named_parameters():
        if name.startswith("bias_ih"):
            expected = torch.zeros(20)
            expected[5:10] = 1.0  # the forget gate, set once (not in bias_hh)
            assert torch.equal(parameter.detach(), expected)
        elif name.startswith("bias_hh"):
            assert torch.all(parameter == 0)
        elif name.startswith("weight_hh"):  # (4 * units, units) with orthonormal columns
            torch.testing.assert_close(parameter.T @ parameter, torch.eye(5), atol=1e-5, rtol=0)
        else:  # glorot_uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out))
            limit = (6 / sum(parameter.shape)) ** 0.5
            assert parameter.abs().max() <= limit and parameter.abs().max() > 0.5 * limit
    no_forget = LSTM(5, unit_forget_bias=False)
    no_forget(torch.randn(2, 3, 4))
    assert torch.all(no_forget.rnn.bias_ih_l0 == 0)


def test_mask_propagation():
    x, mask = padded_batch([3, 6])
    assert torch.equal(GRU(4, return_sequences=True).compute_mask(x, mask), mask)
    assert GRU(4).compute_mask(x, mask) is None


def test_config_round_trip():
    layer = SimpleRNN(6, activation="relu", return_sequences=True, num_layers=2, dropout=0.1)
    rebuilt = SimpleRNN.from_config(layer.get_config())
    assert (rebuilt.units, rebuilt.activation, rebuilt.num_layers, rebuilt.dropout) == (6, "relu", 2, 0.1)


def test_errors_name_the_layer_and_what_was_received():
    with pytest.raises(ValueError, match=r"'encoder' \(LSTM\).*\(batch, timesteps, features\).*\(4, 3\)"):
        LSTM(4, name="encoder")(torch.randn(4, 3))
    with pytest.raises(ValueError, match="num_layers > 1.*dropout=0.2"):
        GRU(4, dropout=0.2)
    with pytest.raises(ValueError, match="merge_mode.*'max'"):
        LSTM(4, bidirectional=True, merge_mode="max")
    with pytest.raises(ValueError, match="activation 'tanh' or 'relu'.*'sigmoid'"):
        SimpleRNN(4, activation="sigmoid")
    with pytest.raises(ValueError, match="units.*0"):
        GRU(0)


def test_dropout_between_layers_follows_eval_set_before_the_first_call():
    layer = LSTM(8, num_layers=2, dropout=0.5, return_sequences=True).eval()
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    assert not torch.allclose(layer(x), layer(x))


def test_initial_state_with_a_padded_batch():
    x, mask = padded_batch([6, 2, 4], pre_padding=True)
    layer = LSTM(4, return_state=True)
    initial = (torch.randn(3, 4, dtype=DTYPE), torch.randn(3, 4, dtype=DTYPE))
    _, h, c = layer(x, mask=mask, initial_state=initial)
    for i, length in enumerate([6, 2, 4]):
        _, alone_h, alone_c = layer(x[i:i + 1, -length:], initial_state=(initial[0][i:i + 1], initial[1][i:i + 1]))
        torch.testing.assert_close(h[i], alone_h[0])
        torch.testing.assert_close(c[i], alone_c[0])


def test_sequential_passes_the_embedding_mask_to_the_recurrent_layer():
    from deepzen.layers.embedding import Embedding
    from deepzen.models import Sequential

    model = Sequential([Embedding(20, 6, mask_zero=True), GRU(5, return_sequences=True), LSTM(3)])
    padded = torch.tensor([[0, 0, 7, 3, 9], [4, 1, 2, 8, 5]])
    torch.testing.assert_close(model(padded)[0], model(torch.tensor([[7, 3, 9]]))[0])
