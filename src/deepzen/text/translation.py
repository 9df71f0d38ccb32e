"""Sequence-to-sequence translation: an RNN encoder-decoder with attention and a Transformer.

Both models are :class:`deepzen.Model` subclasses trained with teacher forcing: the decoder reads
the target shifted right (``<bos> y_1 ... y_{n-1}``) and predicts ``y_1 ... y_n <eos>``::

    model = TransformerTranslator(len(source_tokenizer), len(target_tokenizer),
                                  source_tokenizer=source_tokenizer, target_tokenizer=target_tokenizer)
    model.compile(optimizer="adam", loss=deepzen.losses.get("sparse_categorical_crossentropy",
                                                          from_logits=True))   # ignore_index=-100
    model.fit(ParallelBatches(*teacher_forcing_tensors(source_ids, target_ids)), epochs=10)
    model.translate(["A man rides a bike."], beam_size=5, length_penalty=0.6)

``model(source, target_in)`` maps (N, S) source ids and (N, T) decoder inputs to (N, T, V) logits.
Decoding runs through :mod:`deepzen.text.decoding` (greedy search, or beam search with GNMT's
length penalty) with each model's incremental ``step``: the RNN carries its hidden state, the
Transformer caches its self-attention keys and values. Ids follow :class:`deepzen.data.text.Vocab`
and :class:`deepzen.text.subword.SubwordTokenizer`: ``<pad>`` = 0, ``<bos>`` = 2, ``<eos>`` = 3.

Both models are registered architectures: ``deepzen.training.serialization.load_model(path)`` (and
``deepzen serve`` / ``export``) rebuilds them from a file written by ``model.save(path)``. The
tokenizers are not part of the file: give them to the loaded model (``model.source_tokenizer = ...``)
before calling :meth:`Seq2Seq.translate`.

Scores: :func:`corpus_bleu` is sacrebleu's corpus BLEU on detokenized text.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from deepzen import initializers
from deepzen.data.text import BucketedBatches, pad_ids
from deepzen.layers import (GRU, LSTM, AdditiveAttention, Attention, Dense, Dropout, Embedding, PositionalEncoding,
                            TransformerDecoder, TransformerEncoder)
from deepzen.text.decoding import beam_search, greedy_search
from deepzen.training.model import Model
from deepzen.serializable import register_serializable

IGNORE_INDEX = -100  # target positions the loss skips (sparse_categorical_crossentropy's default)


class TextTokenizer(Protocol):
    """What :meth:`Seq2Seq.translate` needs from a tokenizer (e.g. :class:`~deepzen.text.subword.SubwordTokenizer`)."""

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


# -- data ------------------------------------------------------------------------------------------------
def teacher_forcing_tensors(source_ids: Sequence[Sequence[int]], target_ids: Sequence[Sequence[int]],
                            bos_index: int = 2, eos_index: int = 3,
                            pad_index: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pads parallel id sequences into the three tensors of teacher-forced training.

    Args:
        source_ids: N source sequences (no bos/eos needed).
        target_ids: N target sequences (without bos/eos).

    Returns:
        source (N, S) padded with ``pad_index``; target_in (N, T) = ``<bos> y`` padded with
        ``pad_index``; target_out (N, T) = ``y <eos>`` padded with ``IGNORE_INDEX`` (-100).
    """
    if len(source_ids) != len(target_ids):
        raise ValueError(f"Expected one target per source sequence. Received: {len(source_ids)} sources, "
                         f"{len(target_ids)} targets")
    source = pad_ids(source_ids, value=pad_index)
    target_in = pad_ids([[bos_index, *ids] for ids in target_ids], value=pad_index)
    target_out = pad_ids([[*ids, eos_index] for ids in target_ids], value=IGNORE_INDEX)
    return source, target_in, target_out


class ParallelBatches(BucketedBatches):
    """Re-iterable ``((source, target_in), target_out)`` batches of similar-length sentence pairs: the
    length-bucketed batcher (:class:`deepzen.data.text.BucketedBatches`) grouping pairs by target length.

    Each tensor is cut to the batch's longest sequence, so a step costs what its real tokens cost; a new
    grouping and batch order every epoch. Pass an instance to ``Model.fit`` / ``evaluate`` as ``x``.

    Args:
        source, target_in, target_out: the tensors of :func:`teacher_forcing_tensors`.
        batch_size: pairs per batch.
        shuffle: a new random grouping every epoch (False: shortest batches first, always the same).
        seed: seed of the first epoch (then seed + 1, seed + 2, ...).
        pad_index: the padding id of ``source`` and ``target_in``.
    """

    def __init__(self, source: torch.Tensor, target_in: torch.Tensor, target_out: torch.Tensor,
                 batch_size: int = 64, *, shuffle: bool = True, seed: int = 0, pad_index: int = 0):
        super().__init__((source, target_in), target_out, batch_size, shuffle=shuffle, seed=seed,
                         pad_value=pad_index, y_pad_value=IGNORE_INDEX, by="y")


# -- the shared interface ----------------------------------------------------------------------------------
class Seq2Seq(Model):
    """Base of the translators: teacher-forced ``forward``, incremental ``step``, ``generate``, ``translate``.

    Subclasses implement :meth:`encode` (source -> decoder state, batch first), :meth:`decode`
    (all target steps at once, for training) and :meth:`step` (one step, for search). They store
    their other constructor arguments in :attr:`hyperparameters`, so that :meth:`get_config` /
    :meth:`from_config` round-trip the model (``save`` / ``load_model``) — all but the tokenizers.

    Args:
        source_vocab_size, target_vocab_size: sizes of the id spaces.
        source_tokenizer, target_tokenizer: text <-> ids (needed by :meth:`translate` only).
        pad_index, bos_index, eos_index: the special target ids (the source uses ``pad_index``).
    """

    def __init__(self, source_vocab_size: int, target_vocab_size: int, *,
                 source_tokenizer: TextTokenizer | None = None, target_tokenizer: TextTokenizer | None = None,
                 pad_index: int = 0, bos_index: int = 2, eos_index: int = 3, name: str | None = None):
        super().__init__(name=name)
        for argument, value in (("source_vocab_size", source_vocab_size), ("target_vocab_size", target_vocab_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__} expects {argument} to be a positive integer. "
                                 f"Received: {argument}={value!r}")
        self.source_vocab_size, self.target_vocab_size = source_vocab_size, target_vocab_size
        self.source_tokenizer, self.target_tokenizer = source_tokenizer, target_tokenizer
        self.pad_index, self.bos_index, self.eos_index = pad_index, bos_index, eos_index
        self.hyperparameters: dict[str, Any] = {}

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON-ready data, without the tokenizers."""
        return {"source_vocab_size": self.source_vocab_size, "target_vocab_size": self.target_vocab_size,
                **self.hyperparameters, "pad_index": self.pad_index, "bos_index": self.bos_index,
                "eos_index": self.eos_index, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Seq2Seq":
        return cls(**config)

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """(N, S) source ids and (N, T) decoder inputs -> (N, T, target_vocab_size) logits."""
        return self.decode(target_in, self.encode(source))

    def encode(self, source: torch.Tensor) -> dict[str, Any]:
        """(N, S) source ids -> the decoder's initial state (a dict of batch-first tensors)."""
        raise NotImplementedError

    def decode(self, target_in: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        """(N, T) decoder inputs and the encoder's state -> (N, T, V) logits, all steps at once."""
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The decoding step function: (B, t) tokens so far -> (B, V) next-token log-probs, new state."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, source: torch.Tensor, beam_size: int = 1, length_penalty: float = 0.6,
                 max_len: int | None = None) -> torch.Tensor:
        """Translates a batch of id sequences.

        Args:
            source: (N, S) padded source ids.
            beam_size: 1 for greedy search, more for beam search.
            length_penalty: GNMT's alpha for beam search (ignored by greedy search).
            max_len: longest output in tokens: one for all, or one per row; default ``1.5 * S + 10`` for
                each row with S its own source length (padding left out), so that a sentence's output
                does not depend on the sentences it is batched with.

        Returns:
            (N, L) long target ids, each row ended by ``eos_index`` (unless cut at ``max_len``) and
            padded after it with ``pad_index``.
        """
        was_training = self.training
        self.eval()
        try:
            state = self.encode(source)
            start = torch.full((source.shape[0],), self.bos_index, dtype=torch.long, device=source.device)
            if max_len is None:
                max_len = (source != self.pad_index).sum(dim=1) * 3 // 2 + 10              # (N,) 1.5 * S + 10
            if beam_size == 1:
                tokens, _ = greedy_search(self.step, start, max_len, self.eos_index, state=state,
                                          pad_id=self.pad_index)
            else:
                tokens, _ = beam_search(self.step, start, beam_size, max_len, self.eos_index,
                                        length_penalty=length_penalty, state=state, pad_id=self.pad_index)
                tokens = tokens[:, 0]                                       # (N, L) the best hypothesis
        finally:
            self.train(was_training)
        return tokens

    def translate(self, sentences: Sequence[str], beam_size: int = 1, length_penalty: float = 0.6,
                  batch_size: int = 64, max_len: int | None = None) -> list[str]:
        """Translates raw sentences with the model's tokenizers.

        Sentences are sorted by length and decoded ``batch_size`` at a time (less padding), then
        returned in the given order.

        Args:
            sentences: source sentences (raw text).
            beam_size: 1 for greedy search, more for beam search.
            length_penalty: GNMT's alpha for beam search.
            batch_size: sentences decoded together.
            max_len: longest output in tokens (default ``1.5 * source length + 10``, for each sentence).

        Returns:
            The translations, detokenized by the target tokenizer.
        """
        if self.source_tokenizer is None or self.target_tokenizer is None:
            raise ValueError(f"{type(self).__name__}.translate needs the tokenizers: construct the model with "
                             f"source_tokenizer= and target_tokenizer=, or call generate() on ids")
        ids = [self.source_tokenizer.encode(sentence) for sentence in sentences]
        order = np.argsort([len(sequence) for sequence in ids], kind="stable")
        translations: list[str] = [""] * len(ids)
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            source = pad_ids([ids[i] or [self.pad_index] for i in chosen], value=self.pad_index)
            output = self.generate(source.to(self.device), beam_size, length_penalty, max_len).cpu()
            for row, i in zip(output.tolist(), chosen):
                # the output ends at eos, or at the padding after a row its max_len cut
                end = min((row.index(token) for token in (self.eos_index, self.pad_index) if token in row),
                          default=len(row))
                translations[i] = self.target_tokenizer.decode(row[:end])
        return translations


# -- the RNN encoder-decoder with attention -----------------------------------------------------------
_CELLS = {"gru": GRU, "lstm": LSTM}
_SCORES = ("bahdanau", "luong")


@register_serializable
class RNNTranslator(Seq2Seq):
    """A bidirectional GRU/LSTM encoder and a GRU/LSTM decoder with global attention.

    The decoder follows Luong et al. (2015): its RNN runs over the target, every output ``h_t``
    attends to the encoder outputs, and ``h~_t = tanh(W [c_t; h_t])`` predicts the next token. The
    score is Bahdanau et al.'s additive ``v^T tanh(W h_t + U s_j)`` or Luong's "general"
    ``h_t^T W s_j``. (Bahdanau's decoder feeds the context into the RNN input, which forces a
    Python loop over time steps; attending on top of the RNN keeps training on the fused
    ``nn.GRU``/``nn.LSTM`` kernels over the whole target at once.) The encoder's last forward and
    backward states, through a tanh layer, start every decoder layer.

    Args:
        source_vocab_size, target_vocab_size: id space sizes.
        embedding_dim: size of the token embeddings.
        units: hidden size of the decoder and of each encoder direction.
        cell: "gru" or "lstm".
        attention: "bahdanau" (additive) or "luong" (general).
        num_layers: stacked RNN layers in the encoder and in the decoder.
        dropout: on the embeddings, between stacked layers and before the output layer.
        **kwargs: tokenizers and special ids, see :class:`Seq2Seq`.

    Example:
        >>> import torch
        >>> model = RNNTranslator(20, 30, embedding_dim=8, units=16)
        >>> model(torch.randint(4, 20, (2, 7)), torch.randint(4, 30, (2, 5))).shape
        torch.Size([2, 5, 30])
    """

    def __init__(self, source_vocab_size: int, target_vocab_size: int, embedding_dim: int = 256, units: int = 256,
                 cell: str = "gru", attention: str = "bahdanau", num_layers: int = 1, dropout: float = 0.3,
                 **kwargs):
        super().__init__(source_vocab_size, target_vocab_size, **kwargs)
        if cell not in _CELLS:
            raise ValueError(f"RNNTranslator expects cell in {tuple(_CELLS)}. Received: cell={cell!r}")
        if attention not in _SCORES:
            raise ValueError(f"RNNTranslator expects attention in {_SCORES}. Received: attention={attention!r}")
        self.hyperparameters = {"embedding_dim": embedding_dim, "units": units, "cell": cell, "attention": attention,
                                "num_layers": num_layers, "dropout": dropout}
        self.cell, self.num_layers, self.units = cell, num_layers, units
        rnn_dropout = dropout if num_layers > 1 else 0.0
        self.source_embedding = Embedding(source_vocab_size, embedding_dim)
        self.target_embedding = Embedding(target_vocab_size, embedding_dim)
        self.dropout = Dropout(dropout)
        self.encoder = _CELLS[cell](units, num_layers=num_layers, dropout=rnn_dropout, bidirectional=True,
                                    return_sequences=True, return_state=True)
        self.bridge = Dense(units, activation="tanh")
        self.decoder = _CELLS[cell](units, num_layers=num_layers, dropout=rnn_dropout, return_sequences=True,
                                    return_state=True)
        self.attention = AdditiveAttention(units) if attention == "bahdanau" else Attention(score_mode="general")
        self.attentional = Dense(units, activation="tanh")
        self.output_layer = Dense(target_vocab_size)

    def encode(self, source):
        lengths = (source != self.pad_index).sum(1)                                    # (N,)
        memory, h, *rest = self.encoder(self.dropout(self.source_embedding(source)), lengths=lengths)
        # h: (2 * layers, N, units), forward and backward of each layer: the top layer's two -> (N, 2 * units)
        last = torch.cat((h[-2], h[-1]), dim=-1)
        start = self.bridge(last).unsqueeze(1).expand(-1, self.num_layers, -1).contiguous()  # (N, layers, units)
        hidden = (start, torch.zeros_like(start)) if self.cell == "lstm" else (start,)
        return {"hidden": hidden, "memory": memory, "memory_mask": source != self.pad_index}

    def _decode(self, target_in, state):
        """(N, T) inputs -> (N, T, V) logits and the new hidden states (batch first)."""
        initial = tuple(h.transpose(0, 1) for h in state["hidden"])                   # (layers, N, units) each
        x = self.dropout(self.target_embedding(target_in))                             # (N, T, E)
        output, *hidden = self.decoder(x, initial_state=initial if len(initial) > 1 else initial[0])
        hidden = tuple(h.unsqueeze(0) if h.dim() == 2 else h for h in hidden)          # (layers, N, units)
        context = self.attention(output, state["memory"], mask=state["memory_mask"])   # (N, T, 2 * units)
        attentional = self.attentional(torch.cat((context, output), dim=-1))          # (N, T, units)
        logits = self.output_layer(self.dropout(attentional))                          # (N, T, V)
        return logits, tuple(h.transpose(0, 1) for h in hidden)

    def decode(self, target_in, state):
        return self._decode(target_in, state)[0]

    def step(self, tokens, state):
        logits, hidden = self._decode(tokens[:, -1:], state)
        return torch.log_softmax(logits[:, -1], dim=-1), {**state, "hidden": hidden}


# -- the Transformer -----------------------------------------------------------------------------------------
@register_serializable
class TransformerTranslator(Seq2Seq):
    """The Transformer of Vaswani et al. (2017): encoder and decoder stacks, sinusoidal positions.

    Token embeddings (scaled by sqrt(d_model)) plus sinusoidal position encodings feed a
    :class:`~deepzen.layers.TransformerEncoder` and a causal :class:`~deepzen.layers.TransformerDecoder`
    that attends to the encoder output; a linear layer gives the logits. Pre-norm
    (``norm_first=True``) trains stably without a long warm-up, which suits short training runs.

    Args:
        source_vocab_size, target_vocab_size: id space sizes.
        d_model: width of the model.
        num_heads: attention heads.
        num_encoder_layers, num_decoder_layers: stack depths.
        intermediate_dim: hidden size of the feed-forward networks (default 4 * d_model).
        dropout: on the embeddings, attention weights, feed-forward hidden layer and sublayer outputs.
        norm_first: pre-norm (True) or the paper's post-norm.
        max_len: longest source or target sequence.
        **kwargs: tokenizers and special ids, see :class:`Seq2Seq`.

    Example:
        >>> import torch
        >>> model = TransformerTranslator(20, 30, d_model=16, num_heads=2, num_encoder_layers=1,
        ...                               num_decoder_layers=1)
        >>> model(torch.randint(4, 20, (2, 7)), torch.randint(4, 30, (2, 5))).shape
        torch.Size([2, 5, 30])
    """

    def __init__(self, source_vocab_size: int, target_vocab_size: int, d_model: int = 256, num_heads: int = 4,
                 num_encoder_layers: int = 3, num_decoder_layers: int = 3, intermediate_dim: int | None = None,
                 dropout: float = 0.1, norm_first: bool = True, max_len: int = 512, **kwargs):
        super().__init__(source_vocab_size, target_vocab_size, **kwargs)
        self.hyperparameters = {"d_model": d_model, "num_heads": num_heads, "num_encoder_layers": num_encoder_layers,
                                "num_decoder_layers": num_decoder_layers, "intermediate_dim": intermediate_dim,
                                "dropout": dropout, "norm_first": norm_first, "max_len": max_len}
        self.d_model = d_model
        embedding_init = initializers.RandomNormal(stddev=d_model ** -0.5)  # times sqrt(d_model): unit variance
        self.source_embedding = Embedding(source_vocab_size, d_model, embeddings_initializer=embedding_init)
        self.target_embedding = Embedding(target_vocab_size, d_model, embeddings_initializer=embedding_init)
        self.positions = PositionalEncoding(max_len, dropout=dropout)
        stack = {"num_heads": num_heads, "intermediate_dim": intermediate_dim, "dropout": dropout,
                 "norm_first": norm_first}
        self.encoder = TransformerEncoder(num_encoder_layers, **stack)
        self.decoder = TransformerDecoder(num_decoder_layers, **stack)
        self.output_layer = Dense(target_vocab_size)

    def _embed(self, embedding, ids, start_index=0):
        return self.positions(embedding(ids) * math.sqrt(self.d_model), start_index=start_index)  # (N, T, d)

    def encode(self, source):
        mask = source != self.pad_index                                                 # (N, S)
        memory = self.encoder(self._embed(self.source_embedding, source), mask=mask)   # (N, S, d)
        return {"memory": memory, "memory_mask": mask, "cache": {}}

    def decode(self, target_in, state):
        x = self._embed(self.target_embedding, target_in)                               # (N, T, d)
        x = self.decoder(x, state["memory"], memory_mask=state["memory_mask"])
        return self.output_layer(x)                                                     # (N, T, V)

    def step(self, tokens, state):
        position = tokens.shape[1] - 1
        cache = state["cache"]  # keys/values of the earlier steps, filled in place by the decoder
        x = self._embed(self.target_embedding, tokens[:, -1:], start_index=position)   # (B, 1, d)
        x = self.decoder(x, state["memory"], memory_mask=state["memory_mask"], cache=cache)
        return torch.log_softmax(self.output_layer(x)[:, -1], dim=-1), state


# -- scoring ---------------------------------------------------------------------------------------------
def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "13a",
                lowercase: bool = False) -> float:
    """Corpus BLEU (Papineni et al. 2002) by sacrebleu, on detokenized text, one reference per sentence.

    Args:
        hypotheses: system outputs.
        references: the reference translations, aligned with ``hypotheses``.
        tokenize: sacrebleu's tokenizer ("13a" is its default and WMT's standard; "intl", "none", ...).
        lowercase: case-insensitive BLEU.

    Returns:
        BLEU in [0, 100].
    """
    try:
        import sacrebleu
    except ImportError as error:
        raise ImportError("corpus_bleu needs the sacrebleu package: pip install sacrebleu") from error
    if len(hypotheses) != len(references):
        raise ValueError(f"Expected one reference per hypothesis. Received: {len(hypotheses)} hypotheses, "
                         f"{len(references)} references")
    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize,
                                 lowercase=lowercase).score
