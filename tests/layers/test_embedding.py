import pytest
import torch

from deepzen.layers.embedding import Embedding

torch.manual_seed(0)


def test_lookup_returns_rows_of_the_matrix():
    layer = Embedding(20, 3)
    ids = torch.tensor([[4, 0, 19], [7, 7, 1]])
    output = layer(ids)
    assert output.shape == (2, 3, 3) and layer.weight.shape == (20, 3)
    for index in ((0, 0), (0, 2), (1, 1)):
        torch.testing.assert_close(output[index], layer.weight[ids[index]])
    assert layer(torch.tensor([5, 6])).shape == (2, 3)  # any rank of ids


def test_default_initializer_is_keras_uniform():
    layer = Embedding(1000, 16)
    layer(torch.tensor([0]))
    assert layer.weight.abs().max() <= 0.05 and layer.weight.abs().max() > 0.045
    assert abs(float(layer.weight.detach().mean())) < 0.005


def test_mask_zero_marks_padding_and_does_not_freeze_id_zero():
    layer = Embedding(10, 4, mask_zero=True)
    ids = torch.tensor([[0, 0, 3, 5], [2, 9, 0, 0]])
    assert torch.equal(layer.compute_mask(ids), ids != 0)
    layer(ids).sum().backward()
    assert torch.all(layer.weight.grad[0] == 4)  # Keras: id 0 still learns
    assert Embedding(10, 4).compute_mask(ids) is None


def test_padding_idx_is_zero_and_gets_no_gradient():
    layer = Embedding(10, 4, padding_idx=2)
    ids = torch.tensor([[2, 3, 2]])
    output = layer(ids)
    assert torch.all(output[0, 0] == 0) and torch.all(output[0, 2] == 0)
    output.sum().backward()
    assert torch.all(layer.weight.grad[2] == 0) and torch.all(layer.weight.grad[3] == 1)


def test_config_round_trip():
    layer = Embedding(50, 8, mask_zero=True, padding_idx=0, name="words")
    rebuilt = Embedding.from_config(layer.get_config())
    assert (rebuilt.input_dim, rebuilt.output_dim, rebuilt.mask_zero, rebuilt.padding_idx, rebuilt.name) == \
        (50, 8, True, 0, "words")


def test_errors_say_what_was_expected_and_received():
    with pytest.raises(TypeError, match=r"'words' \(Embedding\) expects integer token ids. "
                                        r"Received: dtype=torch.float32"):
        Embedding(10, 4, name="words")(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="input_dim to be a positive integer. Received: input_dim=0"):
        Embedding(0, 4)
    with pytest.raises(ValueError, match=r"padding_idx in \[0, input_dim=10\). Received: padding_idx=10"):
        Embedding(10, 4, padding_idx=10)


def test_regularizer_penalizes_the_matrix():
    layer = Embedding(10, 4, embeddings_regularizer="l2")
    layer(torch.tensor([1]))
    (parameter, penalty), = layer.regularization_terms()
    assert parameter is layer.weight
    torch.testing.assert_close(penalty(parameter), 0.01 * layer.weight.pow(2).sum())
    assert Embedding(10, 4).regularization_terms() == []
