"""Sentence classifiers: Kim's TextCNN and a BiLSTM with attention pooling.

Both take padded word ids ``(N, T)`` (id 0 = padding, post-padded) and return class logits
``(N, C)``; padding never changes a sentence's logits. Train them with ``deepzen.Model`` and
``sparse_categorical_crossentropy(from_logits=True)``; the recipes ``mr-textcnn``,
``sst2-textcnn`` and ``sst2-bilstm-attention`` (:mod:`deepzen.text.recipes`) run them on the
real datasets.

- :class:`TextCNN` (Kim 2014, "Convolutional Neural Networks for Sentence Classification"):
  embeddings, parallel convolutions of widths 3/4/5 with 100 maps each, ReLU, max-over-time
  pooling, dropout 0.5, a softmax layer whose class weight vectors may be kept at L2 norm <= 3
  (:class:`MaxNormConstraint`). The "CNN-rand" variant: embeddings initialised at random.
- :class:`BiLSTMAttentionClassifier`: embeddings, a bidirectional LSTM, and attention pooling
  (a learned query scores every step, Bahdanau-style, as in Yang et al. 2016 and Zhou et al.
  2016), dropout, a softmax layer.

Example:
    >>> import torch
    >>> ids = torch.tensor([[5, 8, 2, 0, 0], [7, 3, 9, 4, 6]])   # two sentences, 0 = padding
    >>> TextCNN(vocab_size=10, num_classes=2, embedding_dim=16, num_filters=4)(ids).shape
    torch.Size([2, 2])
    >>> BiLSTMAttentionClassifier(vocab_size=10, num_classes=3, embedding_dim=16, units=8)(ids).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from deepzen.layers.attention import AdditiveAttention
from deepzen.layers.base import Layer
from deepzen.layers.conv import Conv1D
from deepzen.layers.core import Dense, Dropout
from deepzen.layers.embedding import Embedding
from deepzen.layers.recurrent import LSTM
from deepzen.training.callbacks import Callback


def _check_positive(owner: str, **values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner} expects {name} to be a positive integer. Received: {name}={value!r}")


def _check_rate(owner: str, name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{owner} expects {name} in [0, 1). Received: {name}={value}")


class TextCNN(Layer):
    """Kim (2014)'s convolutional sentence classifier.

    Each filter of width h slides over the sentence padded with h - 1 zero vectors at both ends
    (Kim's "wide" convolution), so every word is seen by h windows and a one-word sentence still
    has h windows. Windows that lie entirely in the batch's padding are left out of the max, so
    the logits of a sentence do not depend on how much padding its batch has.

    Args:
        vocab_size: number of word ids (id 0 is padding; its vector is zero and not trained).
        num_classes: C.
        embedding_dim: size of the word vectors (Kim: 300).
        filter_sizes: the convolution widths (Kim: 3, 4, 5).
        num_filters: feature maps per width (Kim: 100).
        dropout: dropout rate on the pooled features (Kim: 0.5).
        embeddings_initializer: initializer of the random word vectors (CNN-rand: uniform; Kim
            drew U[-a, a] with the variance of word2vec's vectors, about a = 0.25).

    Call arguments:
        ids: (N, T) long word ids, post-padded with 0. Returns (N, C) logits.

    Sub-layers: ``embedding``, ``convolutions`` (one ``Conv1D`` per width), ``dropout``, ``output``
    (the softmax layer; its ``weight`` is (C, len(filter_sizes) * num_filters)).
    """

    takes_integer_inputs = True  # models keep the input ids as integers

    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int = 300,
                 filter_sizes: Sequence[int] = (3, 4, 5), num_filters: int = 100, dropout: float = 0.5,
                 embeddings_initializer: Any = "random_uniform", **kwargs):
        super().__init__(**kwargs)
        _check_positive("TextCNN", vocab_size=vocab_size, num_classes=num_classes, embedding_dim=embedding_dim,
                        num_filters=num_filters)
        if not filter_sizes:
            raise ValueError("TextCNN expects at least one filter size. Received: filter_sizes=()")
        for width in filter_sizes:
            _check_positive("TextCNN", filter_size=width)
        _check_rate("TextCNN", "dropout", dropout)
        self.filter_sizes = tuple(int(width) for width in filter_sizes)
        # The embedding is registered first: models then know their inputs are token ids.
        self.embedding = Embedding(vocab_size, embedding_dim, embeddings_initializer=embeddings_initializer,
                                   padding_idx=0)
        self.convolutions = nn.ModuleList(Conv1D(num_filters, width, padding=width - 1)
                                          for width in self.filter_sizes)
        self.dropout = Dropout(dropout)
        self.output = Dense(num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != 0).sum(1, keepdim=True)                            # (N, 1)
        x = self.embedding(ids).transpose(1, 2)                              # (N, E, T), padding rows are 0
        pooled = []
        for convolution, width in zip(self.convolutions, self.filter_sizes):
            features = convolution(x)                                        # (N, F, T + width - 1)
            # Window p starts at word p - (width - 1); it holds a real word iff p < length + width - 1.
            positions = torch.arange(features.shape[-1], device=ids.device)
            inside = positions < (lengths + width - 1).clamp_min(1)          # (N, T + width - 1)
            features = features.masked_fill(~inside.unsqueeze(1), float("-inf"))
            pooled.append(features.amax(-1))                                # (N, F): max over time
        features = torch.relu(torch.cat(pooled, dim=1))                      # relu(max) == max(relu)
        return self.output(self.dropout(features))                           # (N, C)


class BiLSTMAttentionClassifier(Layer):
    """Word embeddings -> bidirectional LSTM -> attention pooling -> softmax layer.

    Attention pooling scores every step's BiLSTM output ``h_t`` against a learned query ``q`` with
    the additive score ``v^T tanh(W q + U h_t)`` (a :class:`~deepzen.layers.AdditiveAttention`),
    takes the softmax over the real (unpadded) steps and returns ``sum_t a_t h_t``.

    Args:
        vocab_size: number of word ids (id 0 is padding).
        num_classes: C.
        embedding_dim: size of the word vectors.
        units: LSTM units per direction (the pooled vector has 2 * units features).
        attention_units: hidden size of the attention score (default 2 * units).
        dropout: dropout rate on the embeddings and on the pooled vector.
        embeddings_initializer: initializer of the random word vectors.

    Call arguments:
        ids: (N, T) long word ids, post-padded with 0.
        return_attention_scores: also return the attention weights (N, T) (0 on padding).

    Returns:
        (N, C) logits (and the weights).
    """

    takes_integer_inputs = True

    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int = 300, units: int = 150,
                 attention_units: int | None = None, dropout: float = 0.5,
                 embeddings_initializer: Any = "random_uniform", **kwargs):
        super().__init__(**kwargs)
        _check_positive("BiLSTMAttentionClassifier", vocab_size=vocab_size, num_classes=num_classes,
                        embedding_dim=embedding_dim, units=units)
        _check_rate("BiLSTMAttentionClassifier", "dropout", dropout)
        self.embedding = Embedding(vocab_size, embedding_dim, embeddings_initializer=embeddings_initializer,
                                   padding_idx=0)
        self.dropout = Dropout(dropout)
        self.lstm = LSTM(units, return_sequences=True, bidirectional=True)
        self.attention = AdditiveAttention(attention_units or 2 * units)
        self.query = nn.Parameter(torch.empty(1, 1, 2 * units).uniform_(-0.05, 0.05))
        self.output = Dense(num_classes)

    def forward(self, ids: torch.Tensor, return_attention_scores: bool = False):
        mask = ids != 0                                                      # (N, T)
        x = self.dropout(self.embedding(ids))                                # (N, T, E)
        states = self.lstm(x, lengths=mask.sum(1))                           # (N, T, 2U); host sync: packing
        query = self.query.expand(ids.shape[0], 1, -1)                       # (N, 1, 2U)
        pooled, weights = self.attention(query, states, mask=mask, return_attention_scores=True)
        logits = self.output(self.dropout(pooled.squeeze(1)))                # (N, 2U) -> (N, C)
        return (logits, weights.squeeze(1)) if return_attention_scores else logits


class MaxNormConstraint(Callback):
    """After every training step, rescales each row of a weight to L2 norm at most ``max_norm``.

    Kim (2014) keeps each class's weight vector in the softmax layer at norm <= 3:
    ``MaxNormConstraint(lambda: text_cnn.output.weight, 3.0)``.

    Args:
        weight: a function returning the weight tensor (called at each step, so layers built
            lazily during ``fit`` work); rows are the vectors that are constrained.
        max_norm: the largest allowed L2 norm of a row.
    """

    def __init__(self, weight, max_norm: float = 3.0):
        if max_norm <= 0:
            raise ValueError(f"MaxNormConstraint expects max_norm > 0. Received: max_norm={max_norm}")
        self.weight, self.max_norm = weight, float(max_norm)

    def on_train_batch_end(self, step: int, logs=None) -> None:
        weight = self.weight()
        with torch.no_grad():
            weight.copy_(torch.renorm(weight, p=2, dim=0, maxnorm=self.max_norm))


CLASSIFIERS = {"textcnn": TextCNN, "bilstm-attention": BiLSTMAttentionClassifier}


def text_classifier(name: str, vocab_size: int, num_classes: int, **kwargs) -> Layer:
    """A classifier by name: ``"textcnn"`` or ``"bilstm-attention"`` (kwargs go to its constructor)."""
    if name not in CLASSIFIERS:
        raise ValueError(f"Unknown text classifier {name!r}. Expected one of: {', '.join(CLASSIFIERS)}")
    return CLASSIFIERS[name](vocab_size, num_classes, **kwargs)
