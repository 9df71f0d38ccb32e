import doctest
import json
from collections import Counter

import numpy as np
import pytest
import torch

from deepzen.data import text
from deepzen.data.text import CharTokenizer, Vocab, WordTokenizer, length_buckets, pad_ids
from deepzen.utils import pad_sequences


def test_doctests():
    assert doctest.testmod(text).failed == 0


def test_char_tokenizer():
    assert CharTokenizer()("Hi, É!") == ["H", "i", ",", " ", "É", "!"]
    assert "".join(CharTokenizer(lower=True)("Hi, É!")) == "hi, é!"


def test_word_tokenizer_options():
    sentence = "Hello, World! It's 3.5 times (really)."
    assert WordTokenizer()(sentence) == ["hello", ",", "world", "!", "it's", "3", ".", "5", "times", "(", "really",
                                         ")", "."]
    assert WordTokenizer(lower=False, split_punctuation=False)(sentence) == sentence.split()
    assert WordTokenizer(lower=False)("Größe über") == ["Größe", "über"]


def test_vocab_build_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    texts = [[words[int(j)] for j in rng.zipf(1.5, size=30) % 40] for _ in range(50)]
    vocab = Vocab.build(texts, min_freq=2, max_size=20)
    counts = Counter(w for t in texts for w in t)
    expected = sorted((w for w, n in counts.items() if n >= 2), key=lambda w: (-counts[w], w))[:16]
    assert vocab.tokens == ["<pad>", "<unk>", "<bos>", "<eos>", *expected]
    assert len(vocab) == 20
    assert (vocab.pad_index, vocab.unk_index, vocab.bos_index, vocab.eos_index) == (0, 1, 2, 3)


def test_vocab_encode_decode_and_unknown_tokens():
    vocab = Vocab.build([["a", "b", "b"]])
    assert vocab["b"] == 4 and vocab["a"] == 5
    assert vocab["never-seen"] == vocab.unk_index
    ids = vocab.encode(["b", "zzz", "a"], add_bos=True, add_eos=True)
    assert ids == [2, 4, 1, 5, 3]
    assert vocab.decode(ids) == ["<bos>", "b", "<unk>", "a", "<eos>"]
    assert vocab.decode(torch.tensor(ids), skip_specials=True) == ["b", "a"]
    assert "a" in vocab and "zzz" not in vocab


def test_vocab_without_unk_raises_on_unknown_tokens():
    vocab = Vocab.build([["a"]], specials=["<pad>"], unk_token=None)
    assert vocab.tokens == ["<pad>", "a"]
    with pytest.raises(KeyError, match="not in the vocabulary"):
        vocab["b"]
    with pytest.raises(KeyError, match="<eos>"):
        vocab.encode(["a"], add_eos=True)


def test_vocab_argument_errors():
    with pytest.raises(ValueError, match="distinct"):
        Vocab(["a", "b", "a"], unk_token=None)
    with pytest.raises(ValueError, match="special tokens"):
        Vocab(["a"], unk_token="<unk>")
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build([["a"]], min_freq=0)
    with pytest.raises(ValueError, match="max_size"):
        Vocab.build([["a"]], max_size=2)


def test_vocab_json_round_trip(tmp_path):
    vocab = Vocab.build([["Straße", "café", "café"], ["日本"]])
    vocab.save(tmp_path / "vocab.json")
    json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))  # plain JSON
    loaded = Vocab.load(tmp_path / "vocab.json")
    assert loaded.tokens == vocab.tokens and loaded.specials == vocab.specials
    assert loaded.encode(["café", "??"]) == vocab.encode(["café", "??"])


def reference_pad(sequences, maxlen, padding, truncating, value):
    rows = []
    for s in sequences:
        s = list(s)
        if len(s) > maxlen:
            s = s[len(s) - maxlen:] if truncating == "pre" else s[:maxlen]
        fill = [value] * (maxlen - len(s))
        rows.append(s + fill if padding == "post" else fill + s)
    return rows


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
def test_pad_sequences_matches_a_reference(padding, truncating):
    rng = np.random.default_rng(1)
    sequences = [list(rng.integers(1, 50, rng.integers(0, 9))) for _ in range(20)]
    for maxlen in (None, 0, 3, 12):
        out = pad_sequences(sequences, maxlen, dtype="int64", padding=padding, truncating=truncating, value=-1)
        width = max(map(len, sequences)) if maxlen is None else maxlen
        assert out.dtype == np.int64 and out.shape == (20, width)
        assert out.tolist() == reference_pad(sequences, width, padding, truncating, -1)


def test_pad_ids_pads_at_the_end_into_a_long_tensor_and_accepts_arrays_and_tensors():
    out = pad_ids([np.array([1, 2, 3]), torch.tensor([4])])
    assert out.dtype == torch.long and out.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert pad_ids([[1, 2, 3]], maxlen=2, value=9).tolist() == [[1, 2]]  # cut at the end too
    assert pad_ids([]).shape == (0, 0)
    with pytest.raises(ValueError, match="padding="):
        pad_sequences([[1]], padding="middle")


def test_length_buckets_partition_indices_into_batches_of_similar_length():
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, 60, 1003)
    batches = length_buckets(lengths, 32, seed=7)
    everything = np.concatenate(batches)
    assert sorted(everything.tolist()) == list(range(1003))
    assert sorted(len(b) for b in batches) == [11] + [32] * 31
    # Batches are consecutive runs of the length-sorted order: each covers its own length range.
    sorted_lengths = np.sort(lengths)
    runs = sorted((sorted(lengths[b].tolist()) for b in batches), key=lambda r: (r[0], r[-1]))
    assert np.concatenate(runs).tolist() == sorted_lengths.tolist()
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_padded = sum(len(b) * lengths[b].max() for b in np.array_split(rng.permutation(1003), 32))
    assert padded < 0.6 * random_padded


def test_length_buckets_order_and_seed():
    lengths = [5, 1, 3, 1, 5, 2]
    assert [b.tolist() for b in length_buckets(lengths, 2, shuffle=False)] == [[1, 3], [5, 2], [0, 4]]
    first = [b.tolist() for b in length_buckets(lengths * 50, 4, seed=1)]
    assert first == [b.tolist() for b in length_buckets(lengths * 50, 4, seed=1)]
    assert first != [b.tolist() for b in length_buckets(lengths * 50, 4, seed=2)]
    with pytest.raises(ValueError, match="batch_size"):
        length_buckets(lengths, 0)
