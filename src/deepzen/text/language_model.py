"""Character language models: a stacked LSTM and a small decoder-only Transformer (GPT-style).

Both are :class:`deepzen.Model` subclasses mapping (N, T) token ids to (N, T, V) next-token
logits, trained with ``sparse_categorical_crossentropy(from_logits=True)`` on windows of a text
stream, and both generate text from a prompt through :func:`deepzen.text.decoding.sample`::

    text = load_tinyshakespeare()
    vocab = char_vocab(text)
    ids = torch.tensor(vocab.encode(text))
    model = CharLSTM(vocab)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=2e-3),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    model.fit(TextWindows(ids, seq_len=128, batch_size=64, steps=500), epochs=4)
    print(model.generate("ROMEO:", length=200, temperature=0.8))

Losses are in nats per character (natural log); bits per character = nats / ln 2. Both models
are registered architectures: ``model.save(path)`` stores the vocabulary in the config, so
``deepzen.training.serialization.load_model(path)`` (and ``deepzen serve`` / ``export``) rebuilds
them from the file alone.
"""

from __future__ import annotations

from typing import Any

import torch

from deepzen.data.text import CharTokenizer, Vocab
from deepzen.layers import (LSTM, Dense, Dropout, Embedding, LearnedPositionalEmbedding, TransformerDecoder)
from deepzen.text.decoding import greedy_search, sample
from deepzen.training import distributed
from deepzen.training.model import Model
from deepzen.serializable import register_serializable


def char_vocab(text: str) -> Vocab:
    """The characters of ``text``, most frequent first, with no special tokens (unknown ones raise)."""
    return Vocab.build([text], specials=(), unk_token=None)


class TextWindows:
    """Re-iterable random ``(x, y)`` training windows of a token stream: y is x shifted by one.

    Each batch holds ``batch_size`` windows of ``seq_len`` tokens starting at random offsets
    (drawn on the stream's device, no per-sample Python), as in char-rnn and nanoGPT. An "epoch"
    is ``steps`` batches. Pass an instance to ``Model.fit`` as ``x``.

    Under torchrun ``batch_size`` is the global batch, as for arrays (see
    :mod:`deepzen.training.distributed`): every process draws the same seeded global batch and keeps
    its slice of the windows, so the processes together train on the windows one process would.

    Args:
        ids: (L,) long token stream.
        seq_len: tokens per window.
        batch_size: windows per (global) batch.
        steps: batches per epoch.
        seed: seed of the offsets (the stream continues across epochs).
    """

    def __init__(self, ids: torch.Tensor, seq_len: int, batch_size: int, steps: int, seed: int = 0):
        if ids.dim() != 1 or ids.numel() <= seq_len + 1:
            raise ValueError(f"TextWindows expects a 1-d stream longer than seq_len + 1 = {seq_len + 1}. "
                             f"Received: shape {tuple(ids.shape)}")
        self.ids, self.seq_len, self.batch_size, self.steps = ids, seq_len, batch_size, steps
        self.generator = torch.Generator(device=ids.device).manual_seed(seed)
        self.offsets = torch.arange(seq_len + 1, device=ids.device)                  # (T + 1,)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        rank, world = distributed.rank(), distributed.world_size()
        if self.batch_size < world:
            raise ValueError(f"TextWindows' batch_size is the global batch, split over {world} processes; it must "
                             f"be at least {world}. Received: batch_size={self.batch_size}")
        for _ in range(self.steps):
            starts = torch.randint(0, self.ids.numel() - self.seq_len - 1, (self.batch_size, 1),
                                   generator=self.generator, device=self.ids.device)  # (B, 1), the same on every rank
            starts = torch.tensor_split(starts, world)[rank]                           # (~B / world, 1)
            windows = self.ids[starts + self.offsets]                                  # (b, T + 1)
            yield windows[:, :-1], windows[:, 1:]


def consecutive_windows(ids: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping (x, y) windows covering a stream, for evaluation: (L - 1) // seq_len of each (., seq_len)."""
    count = (ids.numel() - 1) // seq_len
    if count < 1:
        raise ValueError(f"consecutive_windows expects a stream longer than seq_len + 1 = {seq_len + 1}. "
                         f"Received: {ids.numel()} tokens")
    x = ids[:count * seq_len].reshape(count, seq_len)
    y = ids[1:count * seq_len + 1].reshape(count, seq_len)
    return x, y


class LanguageModel(Model):
    """Base of the language models: text generation around an incremental ``step``.

    Subclasses implement ``forward(ids (N, T)) -> logits (N, T, V)`` and :meth:`step`, the
    decoding step function of :mod:`deepzen.text.decoding`.

    Subclasses store their other constructor arguments in :attr:`hyperparameters`, so that
    :meth:`get_config` / :meth:`from_config` round-trip the model (``save`` / ``load_model``).

    Args:
        vocab: the token table; :meth:`generate` reads prompts as characters through it.
    """

    def __init__(self, vocab: Vocab, *, name: str | None = None):
        super().__init__(name=name)
        if len(vocab) < 2:
            raise ValueError(f"{type(self).__name__} expects a vocabulary of at least 2 tokens. Received: {vocab!r}")
        self.vocab = vocab
        self.tokenize = CharTokenizer()
        self.hyperparameters: dict[str, Any] = {}

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON-ready data, the vocabulary included."""
        return {"vocab": self.vocab.get_config(), **self.hyperparameters, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LanguageModel":
        arguments = dict(config)
        return cls(Vocab.from_config(arguments.pop("vocab")), **arguments)

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """(B, t) tokens so far and the state (None at first) -> (B, V) next-token log-probs, new state."""
        raise NotImplementedError

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """A prompt -> (1, t) ids on the model's device; characters outside the vocabulary raise."""
        unknown = sorted({char for char in self.tokenize(prompt) if char not in self.vocab})
        if unknown:
            raise ValueError(f"The prompt has characters the model's vocabulary lacks: {unknown}")
        if not prompt:
            raise ValueError("Expected a non-empty prompt (the model needs a first character to condition on)")
        return torch.tensor([self.vocab.encode(self.tokenize(prompt))], device=self.device)

    @torch.no_grad()
    def generate_ids(self, prompt_ids: torch.Tensor, length: int, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Continues (B, t) prompt ids by ``length`` tokens: (B, length) ids.

        ``temperature=0`` takes the most probable token each time (greedy search); otherwise tokens
        are drawn as in :func:`deepzen.text.decoding.sample` (temperature, top-k, top-p).
        """
        was_training = self.training
        self.eval()
        try:
            if temperature == 0:
                return greedy_search(self.step, prompt_ids, length)[0]
            return sample(self.step, prompt_ids, length, temperature=temperature, top_k=top_k, top_p=top_p,
                          generator=generator)[0]
        finally:
            self.train(was_training)

    def generate(self, prompt: str, length: int = 200, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None) -> str:
        """The prompt followed by ``length`` generated characters.

        Args:
            prompt: the text to continue (characters of the vocabulary).
            length: characters to generate.
            temperature: < 1 is more conservative, > 1 more random; 0 is greedy.
            top_k / top_p: sample only among the k most probable / the nucleus of mass p.
            seed: seeds a private generator, so the same seed gives the same text.
        """
        ids = self.encode_prompt(prompt)
        generator = None if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        generated = self.generate_ids(ids, length, temperature, top_k, top_p, generator)   # (1, length)
        return prompt + "".join(self.vocab.decode(generated[0]))


@register_serializable
class CharLSTM(LanguageModel):
    """A character-level LSTM language model (char-rnn): embedding -> stacked LSTM -> softmax.

    Args:
        vocab: the characters.
        embedding_dim: size of the character embeddings.
        units: LSTM hidden size.
        num_layers: stacked LSTM layers (in one fused kernel).
        dropout: on the embeddings, between the LSTM layers and before the output layer.

    Call arguments:
        ids: (N, T) character ids. Returns (N, T, V) logits.

    Example:
        >>> import torch
        >>> model = CharLSTM(char_vocab("hello world"), embedding_dim=8, units=16)
        >>> model(torch.zeros(2, 5, dtype=torch.long)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, vocab: Vocab, embedding_dim: int = 64, units: int = 512, num_layers: int = 2,
                 dropout: float = 0.2, *, name: str | None = None):
        super().__init__(vocab, name=name)
        self.hyperparameters = {"embedding_dim": embedding_dim, "units": units, "num_layers": num_layers,
                                "dropout": dropout}
        self.embedding = Embedding(len(vocab), embedding_dim)
        self.dropout = Dropout(dropout)
        self.lstm = LSTM(units, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0,
                         return_sequences=True, return_state=True)
        self.output_layer = Dense(len(vocab))

    def _run(self, ids: torch.Tensor, state: tuple[torch.Tensor, ...] | None):
        output, *new_state = self.lstm(self.dropout(self.embedding(ids)), initial_state=state)  # (N, T, units)
        return self.output_layer(self.dropout(output)), new_state                            # (N, T, V)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self._run(ids, None)[0]

    def step(self, tokens, state):
        # The state holds (h, c) batch first, (B, layers, units), so beam search can reorder rows;
        # the first call reads the whole prompt, later calls only the newest token.
        if state is None:
            logits, (h, c) = self._run(tokens, None)
        else:
            logits, (h, c) = self._run(tokens[:, -1:], tuple(s.transpose(0, 1) for s in state))
        h, c = (s.unsqueeze(0) if s.dim() == 2 else s for s in (h, c))                # (layers, B, units)
        return torch.log_softmax(logits[:, -1], dim=-1), (h.transpose(0, 1), c.transpose(0, 1))


@register_serializable
class TransformerLM(LanguageModel):
    """A decoder-only Transformer language model (GPT): causal self-attention over a context window.

    Token embeddings plus learned position embeddings go through pre-norm causal
    :class:`~deepzen.layers.TransformerDecoder` layers (no cross-attention) and a final LayerNorm;
    a linear layer gives the logits. Generation caches the keys and values of earlier steps;
    past ``context`` tokens it re-reads the last ``context`` tokens at each step (a sliding window).

    Args:
        vocab: the tokens.
        context: the longest sequence the model attends over (the number of learned positions).
        d_model: width of the model.
        num_heads: attention heads.
        num_layers: Transformer blocks.
        intermediate_dim: feed-forward hidden size (default 4 * d_model).
        dropout: on embeddings, attention weights and sublayer outputs.

    Call arguments:
        ids: (N, T) token ids, T <= context. Returns (N, T, V) logits.

    Example:
        >>> import torch
        >>> model = TransformerLM(char_vocab("hello world"), context=16, d_model=16, num_heads=2, num_layers=1)
        >>> model(torch.zeros(2, 5, dtype=torch.long)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, vocab: Vocab, context: int = 256, d_model: int = 256, num_heads: int = 4, num_layers: int = 4,
                 intermediate_dim: int | None = None, dropout: float = 0.1, *, name: str | None = None):
        super().__init__(vocab, name=name)
        self.hyperparameters = {"context": context, "d_model": d_model, "num_heads": num_heads,
                                "num_layers": num_layers, "intermediate_dim": intermediate_dim, "dropout": dropout}
        self.context = context
        self.embedding = Embedding(len(vocab), d_model, embeddings_initializer="random_normal")
        self.positions = LearnedPositionalEmbedding(context, dropout=dropout,
                                                    embeddings_initializer="random_normal")
        self.blocks = TransformerDecoder(num_layers, num_heads, intermediate_dim, dropout=dropout, norm_first=True,
                                         activation="gelu")
        self.output_layer = Dense(len(vocab))

    def _run(self, ids: torch.Tensor, start_index: int = 0, cache: dict | None = None) -> torch.Tensor:
        x = self.positions(self.embedding(ids), start_index=start_index)             # (N, T, d)
        return self.output_layer(self.blocks(x, cache=cache))                          # (N, T, V)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self._run(ids)

    def step(self, tokens, state):
        # The state is the decoder's key/value cache (batch first), filled in place; None past the
        # context window, where every step re-reads the last `context` tokens.
        length = tokens.shape[1]
        if length > self.context:
            return torch.log_softmax(self._run(tokens[:, -self.context:])[:, -1], dim=-1), None
        if state is None:
            state = {}
            logits = self._run(tokens, 0, state)
        else:
            logits = self._run(tokens[:, -1:], length - 1, state)
        return torch.log_softmax(logits[:, -1], dim=-1), state
