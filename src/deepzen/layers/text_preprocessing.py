"""Text preprocessing layers: StringLookup and TextVectorization, with ``adapt`` on text (Keras 3's).

They map strings to integer ids (or to multi-hot / count / tf-idf vectors) and so take Python strings
— a list, or a NumPy array of ``str`` — not tensors: use them on the data before ``fit``, or as the
first step of a pipeline. ``adapt`` builds the vocabulary: tokens by descending frequency (ties in
Keras's order, reverse lexical). The vocabulary is part of ``get_config``, so it is saved with a model.

Vocabulary layout, as in Keras: in ``"int"`` mode TextVectorization reserves 0 for padding (``""``)
and 1 for out-of-vocabulary tokens (``"[UNK]"``); StringLookup reserves 0 for ``"[UNK]"`` (and puts
its ``mask_token``, when given, before it). ``max_tokens`` counts those reserved entries.

Example:
    >>> layer = TextVectorization(output_sequence_length=4)
    >>> layer.adapt(["The cat sat.", "The dog sat on the mat!"])
    >>> layer.get_vocabulary()
    ['', '[UNK]', 'the', 'sat', 'on', 'mat', 'dog', 'cat']
    >>> layer(["the cat ran"])
    tensor([[2, 7, 1, 0]])
    >>> StringLookup(vocabulary=["a", "b", "c"])([["a", "c"], ["d", "b"]])
    tensor([[1, 3],
            [0, 2]])
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from deepzen.layers.base import Layer

PUNCTUATION = re.compile(r"[!\"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~']")  # Keras's DEFAULT_STRIP_REGEX
_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")


def _strings(data: Any) -> list:
    """Nested lists (or an array) of strings as nested Python lists; bytes are decoded."""
    if isinstance(data, (str, bytes)):
        return data.decode() if isinstance(data, bytes) else data
    if isinstance(data, torch.Tensor):
        raise TypeError(f"Text layers take strings (a list or a NumPy array of str). Received: a tensor of "
                        f"dtype {data.dtype}")
    if isinstance(data, np.ndarray):
        data = data.tolist()
    return [_strings(item) for item in data]


def _flatten(nested) -> Iterable[str]:
    if isinstance(nested, str):
        yield nested
    else:
        for item in nested:
            yield from _flatten(item)


class IndexLookup(Layer):
    """Shared vocabulary logic of :class:`StringLookup` and :class:`TextVectorization`.

    Subclasses say how a sample becomes tokens (:meth:`tokens_of`) and which entries are reserved.
    """

    def __init__(self, max_tokens: int | None = None, vocabulary: Sequence[str] | None = None,
                 output_mode: str = "int", idf_weights: Sequence[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._build_hook.remove()  # strings, not tensors: nothing to build lazily
        self.built = True
        if output_mode not in _MODES:
            raise ValueError(f"{type(self).__name__} expects output_mode to be one of {_MODES}. "
                             f"Received: output_mode={output_mode!r}")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens <= len(self.reserved(output_mode))):
            raise ValueError(f"{type(self).__name__} expects max_tokens to be an integer > "
                             f"{len(self.reserved(output_mode))} (the reserved entries count). "
                             f"Received: max_tokens={max_tokens!r}")
        self.max_tokens, self.output_mode = max_tokens, output_mode
        self.set_vocabulary(vocabulary or [], idf_weights)

    # -- vocabulary ---------------------------------------------------------------------------------
    def reserved(self, output_mode: str) -> list[str]:
        """The entries before the learned tokens (padding / mask, out-of-vocabulary)."""
        raise NotImplementedError

    def tokens_of(self, sample: Any) -> list[str]:
        """A sample's tokens (for lookups and adapt)."""
        raise NotImplementedError

    def set_vocabulary(self, vocabulary: Sequence[str], idf_weights: Sequence[float] | None = None) -> None:
        """Sets the learned tokens (without the reserved entries), and for ``"tf_idf"`` their idf weights."""
        reserved = self.reserved(self.output_mode)
        tokens = [t for t in vocabulary if t not in reserved]  # a vocabulary from get_vocabulary() is accepted
        if len(set(tokens)) != len(tokens):
            duplicated = sorted(t for t, n in Counter(tokens).items() if n > 1)
            raise ValueError(f"{type(self).__name__}: the vocabulary repeats tokens: {duplicated[:10]}")
        if self.output_mode == "tf_idf" and tokens and idf_weights is None:
            raise ValueError(f"{type(self).__name__}(output_mode='tf_idf') needs idf_weights with a vocabulary "
                             f"(or adapt)")
        self.vocabulary = reserved + tokens
        self.index = {token: i for i, token in enumerate(self.vocabulary)}
        self.oov_index = self.vocabulary.index(self.oov_token)
        weights = list(idf_weights) if idf_weights is not None else None
        if weights is not None and len(weights) == len(tokens):  # the reserved entries get the mean weight
            mean = sum(weights) / max(len(weights), 1)
            weights = [0.0 if t == "" else mean for t in reserved] + weights
        self.idf_weights = None if weights is None else torch.tensor(weights, dtype=torch.get_default_dtype())
        if "_init_arguments" in self.__dict__:  # saved with the model
            self._init_arguments["vocabulary"] = tokens
            self._init_arguments["idf_weights"] = None if weights is None else weights[len(reserved):]

    def get_vocabulary(self) -> list[str]:
        return list(self.vocabulary)

    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    def adapt(self, data: Any, batch_size: int | None = None, steps: int | None = None) -> None:
        """Learns the vocabulary from ``data`` (a list or array of samples): the most frequent tokens first,
        at most ``max_tokens`` entries in all; for ``"tf_idf"`` also each token's idf,
        ``log(1 + documents / (1 + documents containing it))``."""
        counts: Counter = Counter()
        documents: Counter = Counter()
        samples = _strings(data)
        if isinstance(samples, str):
            samples = [samples]
        for sample in samples:
            tokens = self.tokens_of(sample)
            counts.update(tokens)
            documents.update(set(tokens))
        reserved = self.reserved(self.output_mode)
        ranked = sorted(((n, t) for t, n in counts.items() if t not in reserved), reverse=True)
        if self.max_tokens is not None:
            ranked = ranked[:self.max_tokens - len(reserved)]
        tokens = [t for _, t in ranked]
        idf = [math.log(1 + len(samples) / (1 + documents[t])) for t in tokens] if self.output_mode == "tf_idf" \
            else None
        self.set_vocabulary(tokens, idf)

    # -- lookup -------------------------------------------------------------------------------------
    def lookup(self, tokens: list[str]) -> list[int]:
        get, oov = self.index.get, self.oov_index
        return [get(t, oov) for t in tokens]

    def encode(self, ids: list[list[int]]) -> torch.Tensor:
        """Per-sample ids -> ``(N, vocabulary_size)`` one/multi-hot, count or tf-idf vectors."""
        size = self.max_tokens if self.max_tokens is not None and getattr(self, "pad_to_max_tokens", False) \
            else len(self.vocabulary)
        out = torch.zeros(len(ids), size)
        for row, sample in enumerate(ids):
            if sample:
                out[row].index_add_(0, torch.tensor(sample), torch.ones(len(sample)))
        if self.output_mode in ("one_hot", "multi_hot"):
            return (out > 0).to(out.dtype)
        if self.output_mode == "tf_idf":
            weights = torch.zeros(size)
            weights[:len(self.idf_weights)] = self.idf_weights
            return out * weights
        return out


class StringLookup(IndexLookup):
    """Maps strings to integer ids through a vocabulary (given, or learned by :meth:`adapt`).

    Args:
        max_tokens: the largest vocabulary, reserved entries included (default: no limit).
        num_oov_indices: 1 (unknown strings map to ``"[UNK]"``'s id) or 0 (an unknown string is an error).
        mask_token: a string that maps to id 0 (e.g. ``""`` for padding); default none.
        oov_token: the out-of-vocabulary entry (default ``"[UNK]"``).
        vocabulary: the tokens, most frequent first (or a list from :meth:`get_vocabulary`).
        invert: map ids back to strings.
        output_mode: ``"int"`` (ids, the input's shape), or ``"one_hot"`` / ``"multi_hot"`` / ``"count"``
            / ``"tf_idf"`` (one ``vocabulary_size`` vector per sample: the last axis).

    Call arguments:
        strings: a string, a list (or nested lists / a str array) of strings; with ``invert``, ids.
        Returns a ``torch.long`` tensor of ids (float vectors in the other modes); with ``invert``,
        nested lists of strings.
    """

    def __init__(self, max_tokens: int | None = None, num_oov_indices: int = 1, mask_token: str | None = None,
                 oov_token: str = "[UNK]", vocabulary: Sequence[str] | None = None, invert: bool = False,
                 output_mode: str = "int", idf_weights: Sequence[float] | None = None, **kwargs):
        if num_oov_indices not in (0, 1):
            raise ValueError(f"StringLookup supports num_oov_indices 0 or 1. Received: num_oov_indices="
                             f"{num_oov_indices!r}")
        if invert and output_mode != "int":
            raise ValueError(f"StringLookup(invert=True) needs output_mode='int'. Received: output_mode={output_mode!r}")
        self.num_oov_indices, self.mask_token, self.oov_token = num_oov_indices, mask_token, oov_token
        self.invert = invert
        super().__init__(max_tokens, vocabulary, output_mode, idf_weights, **kwargs)

    def reserved(self, output_mode):
        mask = [self.mask_token] if self.mask_token is not None and output_mode == "int" else []
        return mask + [self.oov_token]

    def tokens_of(self, sample):
        return list(_flatten(sample))

    def lookup(self, tokens):
        if self.num_oov_indices == 0:
            unknown = [t for t in tokens if t not in self.index]
            if unknown:
                raise KeyError(f"StringLookup(num_oov_indices=0) received tokens outside its vocabulary: "
                               f"{unknown[:10]}")
        return super().lookup(tokens)

    def forward(self, strings):
        if self.invert:
            ids = strings.tolist() if isinstance(strings, (torch.Tensor, np.ndarray)) else strings
            return self._invert(ids)
        nested = _strings(strings)
        if isinstance(nested, str):
            return torch.tensor(self.lookup([nested])[0])
        if self.output_mode == "int":
            array = np.asarray(nested, dtype=object)
            ids = self.lookup(array.reshape(-1).tolist())
            return torch.tensor(ids, dtype=torch.long).reshape(array.shape)
        samples = nested if nested and not isinstance(nested[0], str) else [[s] for s in nested]
        return self.encode([self.lookup(self.tokens_of(sample)) for sample in samples])

    def _invert(self, ids):
        if isinstance(ids, int):
            return self.vocabulary[ids] if 0 <= ids < len(self.vocabulary) else self.oov_token
        return [self._invert(i) for i in ids]


def _standardizer(standardize: str | Callable | None) -> Callable[[str], str]:
    if callable(standardize):
        return standardize
    steps = {"lower_and_strip_punctuation": (str.lower, lambda s: PUNCTUATION.sub("", s)),
             "lower": (str.lower,), "strip_punctuation": (lambda s: PUNCTUATION.sub("", s),), None: ()}
    if standardize not in steps:
        raise ValueError(f"TextVectorization expects standardize to be one of {list(steps)} or a callable. "
                         f"Received: standardize={standardize!r}")

    def run(text: str) -> str:
        for step in steps[standardize]:
            text = step(text)
        return text

    return run


def _splitter(split: str | Callable | None) -> Callable[[str], list[str]]:
    if callable(split):
        return split
    splits = {"whitespace": str.split, "character": list, None: lambda s: [s]}
    if split not in splits:
        raise ValueError(f"TextVectorization expects split to be one of {list(splits)} or a callable. "
                         f"Received: split={split!r}")
    return splits[split]


class TextVectorization(IndexLookup):
    """Turns raw text into sequences of token ids (or bag-of-words vectors), Keras's TextVectorization.

    Each string is standardized (lowercased, punctuation stripped), split into tokens (words), extended
    with n-grams, and looked up in the vocabulary that :meth:`adapt` learned.

    Args:
        max_tokens: the largest vocabulary, reserved entries included (default: no limit).
        standardize: ``"lower_and_strip_punctuation"`` (default), ``"lower"``, ``"strip_punctuation"``,
            None or a callable ``str -> str``.
        split: ``"whitespace"`` (default), ``"character"``, None or a callable ``str -> list[str]``.
        ngrams: None, an int n (1..n-grams) or a tuple of n-gram sizes; tokens of an n-gram are joined by " ".
        output_mode: ``"int"`` (id sequences), ``"multi_hot"``, ``"count"`` or ``"tf_idf"`` (one vector per text).
        output_sequence_length: ``"int"`` mode: pad with 0 / truncate every sequence to this length
            (default: pad to the longest in the call).
        pad_to_max_tokens: vector modes: output ``max_tokens`` entries even when the vocabulary is smaller.
        vocabulary / idf_weights: a known vocabulary (most frequent first) and, for tf-idf, its weights.

    Call arguments:
        texts: a list (or 1-d str array) of strings. Returns ``(N, length)`` ``torch.long`` ids, or
        ``(N, vocabulary_size)`` floats.
    """

    def __init__(self, max_tokens: int | None = None, standardize: str | Callable | None = "lower_and_strip_punctuation",
                 split: str | Callable | None = "whitespace", ngrams: int | Sequence[int] | None = None,
                 output_mode: str = "int", output_sequence_length: int | None = None, pad_to_max_tokens: bool = False,
                 vocabulary: Sequence[str] | None = None, idf_weights: Sequence[float] | None = None, **kwargs):
        if output_mode == "one_hot":
            raise ValueError("TextVectorization expects output_mode 'int', 'multi_hot', 'count' or 'tf_idf'. "
                             "Received: output_mode='one_hot'")
        if output_sequence_length is not None and output_mode != "int":
            raise ValueError(f"TextVectorization: output_sequence_length applies to output_mode='int' only. "
                             f"Received: output_mode={output_mode!r}")
        if pad_to_max_tokens and max_tokens is None:
            raise ValueError("TextVectorization(pad_to_max_tokens=True) needs max_tokens")
        self._standardize, self._split = _standardizer(standardize), _splitter(split)
        self.ngrams = tuple(range(1, ngrams + 1)) if isinstance(ngrams, int) else tuple(ngrams or (1,))
        self.output_sequence_length, self.pad_to_max_tokens = output_sequence_length, pad_to_max_tokens
        self.oov_token = "[UNK]"
        super().__init__(max_tokens, vocabulary, output_mode, idf_weights, **kwargs)

    def reserved(self, output_mode):
        return ["", "[UNK]"] if output_mode == "int" else ["[UNK]"]

    def tokens_of(self, sample: str) -> list[str]:
        words = self._split(self._standardize(sample))
        if self.ngrams == (1,):
            return words
        return [" ".join(words[i:i + n]) for n in self.ngrams for i in range(len(words) - n + 1)]

    def forward(self, texts):
        texts = _strings(texts)
        if isinstance(texts, str):
            texts = [texts]
        ids = [self.lookup(self.tokens_of(text)) for text in texts]
        if self.output_mode != "int":
            return self.encode(ids)
        length = self.output_sequence_length or max((len(s) for s in ids), default=0)
        out = torch.zeros(len(ids), length, dtype=torch.long)  # 0 = padding
        for row, sample in enumerate(ids):
            sample = sample[:length]
            out[row, :len(sample)] = torch.tensor(sample, dtype=torch.long)
        return out
