"""StringLookup and TextVectorization against Keras's documented examples and vocabulary layout."""

import doctest
import math

import numpy as np
import pytest
import torch

from deepzen.layers import text_preprocessing
from deepzen.layers.text_preprocessing import StringLookup, TextVectorization


def test_docstrings_run():
    result = doctest.testmod(text_preprocessing)
    assert result.attempted > 0 and result.failed == 0


def test_string_lookup_keras_examples():
    vocab = ["a", "b", "c", "d"]
    data = [["a", "c", "d"], ["d", "z", "b"]]
    layer = StringLookup(vocabulary=vocab)
    assert layer(data).tolist() == [[1, 3, 4], [4, 0, 2]]  # Keras docs: unknown "z" -> 0 ("[UNK]")
    assert layer.get_vocabulary() == ["[UNK]", "a", "b", "c", "d"]
    masked = StringLookup(vocabulary=vocab, mask_token="")
    assert masked([["a", ""], ["z", "d"]]).tolist() == [[2, 0], [1, 5]]
    inverse = StringLookup(vocabulary=vocab, invert=True)
    assert inverse(torch.tensor([[1, 3, 4], [4, 0, 2]])) == [["a", "c", "d"], ["d", "[UNK]", "b"]]
    multi = StringLookup(vocabulary=vocab, output_mode="multi_hot")
    torch.testing.assert_close(multi(data), torch.tensor([[0.0, 1, 0, 1, 1], [1, 0, 1, 0, 1]]))
    count = StringLookup(vocabulary=vocab, output_mode="count")
    torch.testing.assert_close(count([["a", "c", "d", "d"], ["d", "z", "b", "z"]]),
                               torch.tensor([[0.0, 1, 0, 1, 2], [2, 0, 1, 0, 1]]))


def test_string_lookup_adapt_orders_by_frequency_and_limits_size():
    layer = StringLookup(max_tokens=3)
    layer.adapt(np.array([["c", "a", "c"], ["b", "c", "a"]]))
    assert layer.get_vocabulary() == ["[UNK]", "c", "a"]
    assert layer(["a", "b"]).tolist() == [2, 0]
    with pytest.raises(KeyError, match="outside its vocabulary"):
        StringLookup(vocabulary=["a"], num_oov_indices=0)(["b"])


def test_text_vectorization_int_mode_pads_and_truncates():
    layer = TextVectorization(max_tokens=5, output_sequence_length=3)
    layer.adapt(["foo bar", "bar baz", "baz bada boom"])
    vocabulary = layer.get_vocabulary()
    assert vocabulary[:2] == ["", "[UNK]"] and len(vocabulary) == 5
    assert set(vocabulary[2:4]) == {"bar", "baz"}  # the two tokens seen twice come first
    out = layer(["foo qux bar", "Bar!"])
    assert out.shape == (2, 3) and out.dtype == torch.long
    assert out[1].tolist() == [vocabulary.index("bar"), 0, 0]  # lowercased, punctuation stripped, padded
    assert out[0, 1].item() == 1  # "qux": out of vocabulary
    long = TextVectorization(vocabulary=["a"])(["a a a a", "a"])
    assert long.tolist() == [[2, 2, 2, 2], [2, 0, 0, 0]]  # no output_sequence_length: the longest in the call


def test_text_vectorization_ngrams_and_bag_of_words_modes():
    layer = TextVectorization(ngrams=2, output_mode="multi_hot")
    layer.adapt(["the cat sat", "the cat"])
    vocabulary = layer.get_vocabulary()
    assert vocabulary[0] == "[UNK]" and "the cat" in vocabulary and "cat sat" in vocabulary
    out = layer(["the cat", "dog"])
    assert out.shape == (2, len(vocabulary))
    assert out[0, vocabulary.index("the cat")] == 1 and out[1, 0] == 1  # "dog" -> [UNK]

    tfidf = TextVectorization(output_mode="tf_idf")
    documents = ["a a b", "a c", "a"]
    tfidf.adapt(documents)
    vocabulary = tfidf.get_vocabulary()
    weights = tfidf(["a a b"])[0]
    idf_a = math.log(1 + 3 / (1 + 3))
    idf_b = math.log(1 + 3 / (1 + 1))
    assert weights[vocabulary.index("a")].item() == pytest.approx(2 * idf_a, rel=1e-6)
    assert weights[vocabulary.index("b")].item() == pytest.approx(idf_b, rel=1e-6)
    padded = TextVectorization(max_tokens=10, output_mode="count", pad_to_max_tokens=True, vocabulary=["x"])
    assert padded(["x x"]).tolist() == [[0.0, 2.0] + [0.0] * 8]


def test_vocabulary_is_saved_in_the_config():
    layer = TextVectorization(output_sequence_length=4)
    layer.adapt(["one two two", "three"])
    rebuilt = TextVectorization.from_config(layer.get_config())
    assert rebuilt.get_vocabulary() == layer.get_vocabulary()
    assert torch.equal(rebuilt(["two three four"]), layer(["two three four"]))
    tfidf = TextVectorization(output_mode="tf_idf")
    tfidf.adapt(["a b", "a"])
    torch.testing.assert_close(TextVectorization.from_config(tfidf.get_config())(["a b"]), tfidf(["a b"]))


def test_bad_inputs():
    with pytest.raises(TypeError, match="take strings"):
        StringLookup(vocabulary=["a"])(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="output_mode"):
        TextVectorization(output_mode="binary")
    with pytest.raises(ValueError, match="repeats tokens"):
        StringLookup(vocabulary=["a", "a"])
