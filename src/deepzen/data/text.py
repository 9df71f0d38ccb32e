"""Text to integer tensors: tokenizers, a vocabulary, padding and length bucketing.

Example:
    >>> tokenize = WordTokenizer()
    >>> tokenize("Don't panic, it's fine!")
    ["don't", 'panic', ',', "it's", 'fine', '!']
    >>> vocab = Vocab.build([tokenize("a b b c c c")], min_freq=2)
    >>> vocab.tokens
    ['<pad>', '<unk>', '<bos>', '<eos>', 'c', 'b']
    >>> vocab.encode(["c", "a"], add_eos=True)
    [4, 1, 3]
    >>> pad_ids([[4, 5], [6]])
    tensor([[4, 5],
            [6, 0]])
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from deepzen.data.paths import PathLike
from deepzen.serializable import register_serializable
from deepzen.utils.sequence_padding import pad_sequences

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
DEFAULT_SPECIALS = (PAD, UNK, BOS, EOS)


class CharTokenizer:
    """Splits text into characters: ``"hi!"`` -> ``["h", "i", "!"]``.

    Args:
        lower: lower-case the text first.
    """

    def __init__(self, lower: bool = False):
        self.lower = lower

    def __call__(self, text: str) -> list[str]:
        return list(text.lower() if self.lower else text)


class WordTokenizer:
    """Splits text into words, by default also splitting punctuation off the words.

    With ``split_punctuation=True`` a token is a run of letters/digits (apostrophes inside a word
    such as "don't" are kept) or a single punctuation character; otherwise tokens are the
    whitespace-separated pieces.

    Args:
        lower: lower-case the text first.
        split_punctuation: make punctuation characters tokens of their own.
    """

    _pattern = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")

    def __init__(self, lower: bool = True, split_punctuation: bool = True):
        self.lower = lower
        self.split_punctuation = split_punctuation

    def __call__(self, text: str) -> list[str]:
        text = text.lower() if self.lower else text
        return self._pattern.findall(text) if self.split_punctuation else text.split()


@register_serializable
class Vocab:
    """A token <-> index table; special tokens come first (by default ``<pad>`` = 0).

    Args:
        tokens: every token, in index order (specials included).
        unk_token: the token unknown tokens map to; ``None`` makes unknown tokens an error.
        specials: which of ``tokens`` are special (skipped by ``decode(..., skip_specials=True)``).

    Attributes:
        tokens: index -> token (a list).
        index: token -> index (a dict).
    """

    def __init__(self, tokens: Sequence[str], *, unk_token: str | None = UNK, specials: Sequence[str] = ()):
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            duplicates = sorted(t for t, n in Counter(self.tokens).items() if n > 1)
            raise ValueError(f"Expected distinct tokens. Received duplicates: {duplicates[:10]}")
        missing = [t for t in (*specials, *([unk_token] if unk_token is not None else [])) if t not in self.index]
        if missing:
            raise ValueError(f"Expected the special tokens {missing} among the tokens.")
        self.unk_token = unk_token
        self.specials = tuple(specials)

    @classmethod
    def build(cls, token_lists: Iterable[Iterable[str]], *, min_freq: int = 1, max_size: int | None = None,
              specials: Sequence[str] = DEFAULT_SPECIALS, unk_token: str | None = UNK) -> "Vocab":
        """Counts tokens and keeps the frequent ones, most frequent first (ties alphabetical).

        Args:
            token_lists: tokenized texts, e.g. ``[tokenize(t) for t in texts]``.
            min_freq: drop tokens seen fewer times.
            max_size: largest vocabulary size, specials included.
            specials: tokens placed first, in this order (default ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``).
            unk_token: the special token unknown tokens map to (``None``: unknown tokens raise).
        """
        if min_freq < 1:
            raise ValueError(f"Expected min_freq >= 1. Received: min_freq={min_freq}")
        if max_size is not None and max_size < len(specials):
            raise ValueError(f"Expected max_size >= the {len(specials)} special tokens. Received: max_size={max_size}")
        counts = Counter(token for tokens in token_lists for token in tokens)
        kept = sorted((t for t, n in counts.items() if n >= min_freq and t not in specials),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max_size - len(specials)]
        return cls([*specials, *kept], unk_token=unk_token, specials=specials)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def __getitem__(self, token: str) -> int:
        """The token's index; an unknown token gives the ``unk_token``'s index."""
        found = self.index.get(token)
        if found is not None:
            return found
        if self.unk_token is None:
            raise KeyError(f"Token {token!r} is not in the vocabulary and it has no unk_token.")
        return self.index[self.unk_token]

    def special_index(self, token: str) -> int:
        """Index of a special token such as ``"<pad>"``; raises if the vocabulary lacks it."""
        if token not in self.index:
            raise KeyError(f"This vocabulary has no {token!r} token. Its specials: {list(self.specials)}")
        return self.index[token]

    @property
    def pad_index(self) -> int:
        return self.special_index(PAD)

    @property
    def unk_index(self) -> int:
        return self.special_index(self.unk_token if self.unk_token is not None else UNK)

    @property
    def bos_index(self) -> int:
        return self.special_index(BOS)

    @property
    def eos_index(self) -> int:
        return self.special_index(EOS)

    def encode(self, tokens: Iterable[str], *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Tokens -> indices, optionally wrapped in ``<bos>`` ... ``<eos>``."""
        ids = [self[token] for token in tokens]
        return ([self.bos_index] if add_bos else []) + ids + ([self.eos_index] if add_eos else [])

    def decode(self, ids: Iterable[int], *, skip_specials: bool = False) -> list[str]:
        """Indices (ints or a 1-d tensor) -> tokens."""
        tokens = [self.tokens[int(i)] for i in ids]
        return [t for t in tokens if t not in self.specials] if skip_specials else tokens

    def get_config(self) -> dict:
        return {"tokens": self.tokens, "unk_token": self.unk_token, "specials": list(self.specials)}

    @classmethod
    def from_config(cls, config: dict) -> "Vocab":
        return cls(config["tokens"], unk_token=config["unk_token"], specials=config["specials"])

    def save(self, path: PathLike) -> None:
        """Writes the vocabulary as JSON (UTF-8)."""
        Path(path).write_text(json.dumps(self.get_config(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: PathLike) -> "Vocab":
        """Reads a vocabulary written by :meth:`save`."""
        return cls.from_config(json.loads(Path(path).read_text(encoding="utf-8")))

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, specials={list(self.specials)})"


def pad_ids(sequences: Sequence[Sequence[int]], maxlen: int | None = None, value: int = 0) -> torch.Tensor:
    """Token-id sequences padded (and cut) at the end into one LongTensor ``(N, maxlen)``: Keras's
    ``pad_sequences`` (:func:`deepzen.utils.pad_sequences`) with ``padding="post", truncating="post"``.

    Args:
        sequences: N sequences of ints (lists, arrays or 1-d tensors).
        maxlen: output length; default the longest sequence.
        value: the padding index.
    """
    return torch.from_numpy(pad_sequences(sequences, maxlen, dtype="int64", padding="post", truncating="post",
                                          value=value))


def length_buckets(lengths: Sequence[int], batch_size: int, *, shuffle: bool = True,
                   seed: int | None = None) -> list[np.ndarray]:
    """Batches of indices whose sequences have similar lengths (less padding per batch).

    Indices are sorted by length (ties in random order when shuffling) and cut into batches of
    ``batch_size`` (the last may be smaller); with ``shuffle`` the batch order is random too.

    Args:
        lengths: length of each of the N sequences.
        batch_size: indices per batch.
        shuffle: randomize ties and batch order (draw a new order every epoch with a new ``seed``).
        seed: seed of the random order.

    Returns:
        list of int64 arrays, together a permutation of ``range(N)``.
    """
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size}")
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    tie_break = rng.random(len(lengths)) if shuffle else np.arange(len(lengths))
    order = np.lexsort((tie_break, lengths))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class BucketedBatches:
    """Re-iterable ``(x, y)`` batches of similar-length sequences, each cut to its longest sequence.

    Sentences vary in length (CoNLL-2003: 1 to 124 tokens); batching them at random pads every
    batch to nearly the longest sentence. Here sequences are grouped by length
    (:func:`deepzen.data.text.length_buckets`, a new random grouping and order every epoch) and
    each batch is sliced to its own longest sequence, so the work per step follows the real
    tokens. Pass an instance to ``Model.fit`` / ``evaluate`` as ``x`` (with no ``y``).

    The tensors stay where they are (move them to the device first); a batch is one
    ``index_select`` per tensor. Lengths are read once, on the host, at construction.

    Args:
        x: a padded (N, T, ...) long tensor, or a tuple of them (e.g. words (N, T) and chars
            (N, T, W)); padding is ``pad_value`` and at the end of each axis (post-padding). Every axis
            after the first is cut to the batch's longest extent along it.
        y: targets: (N,) class ids, or (N, T) tags cut like the first input, or (N, T') target
            sequences padded with ``y_pad_value`` and cut to their own longest extent.
        batch_size: sequences per batch.
        shuffle: draw a new grouping and batch order every epoch (False: shortest batches first).
        seed: seed of the first epoch's order (the next epochs use seed + 1, seed + 2, ...).
        pad_value: the padding id of ``x``.
        y_pad_value: the padding of sequence targets that have lengths of their own (translation's
            ``target_out``); None: ``y`` is cut like the first input.
        by: what groups the sequences: "x" (the first input's lengths) or "y" (the targets' lengths,
            with ``y_pad_value``).
    """

    def __init__(self, x: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor, batch_size: int = 32,
                 *, shuffle: bool = True, seed: int = 0, pad_value: int = 0, y_pad_value: int | None = None,
                 by: str = "x"):
        self.x = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        self.single_input = not isinstance(x, (tuple, list))
        self.y = y
        n = self.x[0].shape[0]
        if any(t.shape[0] != n for t in self.x) or y.shape[0] != n:
            raise ValueError(f"BucketedBatches expects inputs and targets with one number of sequences. Received: "
                             f"x {[tuple(t.shape) for t in self.x]} and y {tuple(y.shape)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BucketedBatches expects batch_size >= 1. Received: batch_size={batch_size!r}")
        if by not in ("x", "y") or by == "y" and y_pad_value is None:
            raise ValueError(f"BucketedBatches expects by='x', or by='y' with a y_pad_value. Received: by={by!r}, "
                             f"y_pad_value={y_pad_value!r}")
        # extents[i][:, a - 1]: how far sequence n reaches along axis a of input i (its unpadded size).
        self.extents = [_extents(t != pad_value) for t in self.x]
        self.y_extents = _extents(y != y_pad_value) if y_pad_value is not None else None
        self.lengths = (self.y_extents if by == "y" else self.extents[0])[:, 0]
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        order = length_buckets(self.lengths, self.batch_size, shuffle=self.shuffle, seed=self.seed + self.epoch)
        self.epoch += 1
        for indices in order:
            index = torch.from_numpy(indices).to(self.x[0].device)
            inputs = tuple(_cut(t, extents[indices].max(0)).index_select(0, index)
                           for t, extents in zip(self.x, self.extents))
            if self.y_extents is not None:
                y = _cut(self.y, self.y_extents[indices].max(0)).index_select(0, index.to(self.y.device))
            else:
                y = self.y.index_select(0, index.to(self.y.device))
                y = y[:, :inputs[0].shape[1]] if y.dim() > 1 else y
            yield inputs[0] if self.single_input else inputs, y


def _extents(present: torch.Tensor) -> np.ndarray:
    """(N, A) for a (N, d_1, ..., d_A) bool tensor: per sample, 1 + the last index along each axis holding a True."""
    extents = []
    for axis in range(1, present.dim()):
        along = present.movedim(axis, -1).reshape(len(present), -1, present.shape[axis]).any(1)  # (N, d_axis)
        positions = torch.arange(1, present.shape[axis] + 1, device=present.device)
        extents.append((along * positions).amax(-1))
    return torch.stack(extents, 1).cpu().numpy()  # host sync: once


def _cut(tensor: torch.Tensor, sizes: np.ndarray) -> torch.Tensor:
    """``tensor[:, :sizes[0], :sizes[1], ...]`` (a view), at least 1 along every axis."""
    return tensor[(slice(None), *(slice(0, max(int(size), 1)) for size in sizes))]
