"""Sequence labeling: the BiLSTM-CRF tagger of Lample et al. (2016), and the same network with softmax.

``SequenceTagger`` reads a sentence as word ids ``(N, T)`` and the characters of every word
``(N, T, W)``; each word is represented by its word vector joined to a character-level feature
(a character BiLSTM's final states, as in Lample et al. 2016, or a character CNN with max
pooling, as in Ma & Hovy 2016); a word-level BiLSTM reads the sentence and a dense layer gives
each word's tag scores ("emissions", (N, T, K)). With ``crf=True`` a linear-chain
:class:`~deepzen.layers.CRF` scores whole tag sequences: training minimises its negative
log-likelihood and :meth:`SequenceTagger.predict` decodes with Viterbi. With ``crf=False`` each
word's tag is trained with softmax cross-entropy and predicted by argmax, independently.

``TaggingVocabulary`` turns tokenized sentences into those tensors and predicted ids back into
tags; :func:`evaluate_entities` scores predictions with entity-level F1 as conlleval defines it.

Example:
    >>> sentences = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    >>> tags = [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]]
    >>> vocabulary = TaggingVocabulary.build(sentences, tags)
    >>> (words, chars), tag_ids = vocabulary.encode(sentences, tags)
    >>> words.shape, chars.shape, tag_ids.shape
    (torch.Size([2, 4]), torch.Size([2, 4, 9]), torch.Size([2, 4]))
    >>> tagger = SequenceTagger(len(vocabulary.words), len(vocabulary.chars), len(vocabulary.tags),
    ...                         word_dim=8, char_dim=4, char_units=3, units=5)
    >>> tagger(words, chars).shape                                               # emissions
    torch.Size([2, 4, 5])
    >>> tagger.predict((words, chars)).shape                                     # Viterbi tag ids
    torch.Size([2, 4])
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from deepzen.data.arrays import ArrayData, leaves, map_structure
from deepzen.data.text import PAD, UNK, Vocab
from deepzen.data.text_datasets import entity_f1
from deepzen.layers.conv import Conv1D
from deepzen.layers.core import Dense, Dropout
from deepzen.layers.crf import CRF, PAD_TAG, CRFLoss, allowed_transitions
from deepzen.layers.embedding import Embedding
from deepzen.layers.recurrent import LSTM
from deepzen.training.callbacks import Callback
from deepzen.training.model import INFERENCE_BATCH_SIZE, Model
from deepzen.serializable import register_serializable

CHAR_ENCODERS = ("lstm", "cnn", "none")
_DIGIT = re.compile(r"\d")


# -- text <-> tensors ---------------------------------------------------------------------------------
@register_serializable
class TaggingVocabulary:
    """The word, character and tag vocabularies of a tagger, and the encoding of sentences.

    Word ids come from normalised tokens (digits replaced by 0, optionally lower-cased, as Lample
    et al. did); character ids from the tokens as written, so capitalisation reaches the model
    through the characters. Both vocabularies have ``<pad>`` = 0 and ``<unk>`` = 1. Words are
    sorted by frequency, so the words seen once in training (the "singletons") are the ids from
    ``singleton_start`` on; :class:`SequenceTagger` can replace them by ``<unk>`` while training,
    which teaches the unknown-word vector.

    Args:
        words / chars / tags: the three :class:`~deepzen.data.text.Vocab` objects (``tags`` without
            specials: tag id i is ``tags.tokens[i]``).
        singleton_start: first word id of the singletons (``len(words)`` if there are none).
        lower: lower-case tokens before looking up words.
        zero_digits: replace every digit by 0 before looking up words.
        max_word_length: characters kept per word (longer words are cut; 20 keeps all but a few
            dozen CoNLL-2003 tokens whole and bounds the character tensor).
    """

    def __init__(self, words: Vocab, chars: Vocab, tags: Vocab, *, singleton_start: int | None = None,
                 lower: bool = False, zero_digits: bool = True, max_word_length: int = 20):
        if max_word_length < 1:
            raise ValueError(f"TaggingVocabulary expects max_word_length >= 1. Received: {max_word_length}")
        self.words, self.chars, self.tags = words, chars, tags
        self.singleton_start = len(words) if singleton_start is None else int(singleton_start)
        self.lower, self.zero_digits, self.max_word_length = lower, zero_digits, int(max_word_length)

    @classmethod
    def build(cls, sentences: Sequence[Sequence[str]], tag_seqs: Sequence[Sequence[str]], *, min_freq: int = 1,
              lower: bool = False, zero_digits: bool = True, max_word_length: int = 20) -> "TaggingVocabulary":
        """Vocabularies of the training sentences: every word seen ``min_freq`` times, every character, every tag."""
        word_lists = [[normalize_word(token, lower, zero_digits) for token in sentence] for sentence in sentences]
        words = Vocab.build(word_lists, min_freq=min_freq, specials=(PAD, UNK))
        counts = Counter(word for words_ in word_lists for word in words_)
        singleton_start = next((i for i, word in enumerate(words.tokens)
                                if i >= len(words.specials) and counts[word] == 1), len(words))
        chars = Vocab.build((token for sentence in sentences for token in sentence), specials=(PAD, UNK))
        tag_names = sorted({tag for tags in tag_seqs for tag in tags}, key=lambda tag: (tag != "O", tag))
        return cls(words, chars, Vocab(tag_names, unk_token=None), singleton_start=singleton_start, lower=lower,
                   zero_digits=zero_digits, max_word_length=max_word_length)

    def normalize(self, token: str) -> str:
        """The form of ``token`` that is looked up in the word vocabulary."""
        return normalize_word(token, self.lower, self.zero_digits)

    def tag_index(self, tag: str) -> int:
        if tag not in self.tags:
            raise ValueError(f"Tag {tag!r} is not among the tagger's tags {self.tags.tokens}. Build the vocabulary "
                             f"from data in the same tagging scheme (IOB1, BIO or IOBES)")
        return self.tags.index[tag]

    def encode(self, sentences: Sequence[Sequence[str]], tag_seqs: Sequence[Sequence[str]] | None = None):
        """Sentences (and tags) -> padded id tensors.

        Returns:
            ``((words, chars), tags)``: words (N, T) long, 0 on padding; chars (N, T, W) long with
            W = the longest (cut) word, 0 on padding; tags (N, T) long, -100 on padding (None
            without ``tag_seqs``). T is the longest sentence.
        """
        steps = max((len(sentence) for sentence in sentences), default=0)
        width = min(self.max_word_length, max((len(t) for s in sentences for t in s), default=0))
        words = np.zeros((len(sentences), steps), dtype=np.int64)
        chars = np.zeros((len(sentences), steps, max(width, 1)), dtype=np.int64)
        for i, sentence in enumerate(sentences):
            words[i, :len(sentence)] = [self.words[self.normalize(token)] for token in sentence]
            for j, token in enumerate(sentence):
                chars[i, j, :min(len(token), width)] = [self.chars[c] for c in token[:width]]
        tags = None
        if tag_seqs is not None:
            if len(tag_seqs) != len(sentences) or any(len(s) != len(t) for s, t in zip(sentences, tag_seqs)):
                raise ValueError("TaggingVocabulary.encode expects one tag per token of every sentence")
            tags = np.full((len(sentences), steps), PAD_TAG, dtype=np.int64)
            for i, sequence in enumerate(tag_seqs):
                tags[i, :len(sequence)] = [self.tag_index(tag) for tag in sequence]
            tags = torch.from_numpy(tags)
        return (torch.from_numpy(words), torch.from_numpy(chars)), tags

    def decode(self, tag_ids: Any) -> list[list[str]]:
        """Tag ids (N, T) with -100 on padding (what :meth:`SequenceTagger.predict` returns) -> tag lists."""
        rows = tag_ids.tolist() if hasattr(tag_ids, "tolist") else tag_ids
        return [[self.tags.tokens[i] for i in row if i != PAD_TAG] for row in rows]

    def get_config(self) -> dict:
        return {"words": self.words.get_config(), "chars": self.chars.get_config(), "tags": self.tags.get_config(),
                "singleton_start": self.singleton_start, "lower": self.lower, "zero_digits": self.zero_digits,
                "max_word_length": self.max_word_length}

    @classmethod
    def from_config(cls, config: dict) -> "TaggingVocabulary":
        vocabs = {key: Vocab.from_config(config[key]) for key in ("words", "chars", "tags")}
        return cls(**vocabs, **{key: config[key] for key in ("singleton_start", "lower", "zero_digits",
                                                                 "max_word_length")})


def normalize_word(token: str, lower: bool = False, zero_digits: bool = True) -> str:
    """``"Sept.1996"`` -> ``"Sept.0000"`` (and lower-cased with ``lower``): the form looked up as a word."""
    token = _DIGIT.sub("0", token) if zero_digits else token
    return token.lower() if lower else token


# -- the network ----------------------------------------------------------------------------------------
@register_serializable
class SequenceTagger(Model):
    """BiLSTM(-CRF) tagger with character-level word features (Lample et al. 2016).

    word vector (word_dim) ++ character feature -> dropout -> BiLSTM (units per direction)
    -> dropout -> Dense(num_tags) = emissions -> CRF (or per-word softmax).

    Args:
        num_words / num_chars / num_tags: vocabulary sizes (ids 0 are padding for words and chars).
        word_dim: word vector size (Lample: 100).
        char_encoder: "lstm" (a character BiLSTM; its two final states are the feature), "cnn"
            (a convolution over the characters with max pooling, Ma & Hovy 2016) or "none".
        char_dim: character vector size (Lample: 25; Ma & Hovy: 30).
        char_units: character LSTM units per direction (Lample: 25) or CNN filters (Ma & Hovy: 30).
        char_kernel_size: width of the character convolution.
        units: word LSTM units per direction (Lample: 100).
        dropout: dropout rate on the BiLSTM's inputs and outputs (Lample: 0.5 on the inputs).
        crf: score tag sequences with a CRF (True) or tags independently with softmax (False).
        tags / scheme: tag names in id order and their scheme ("BIO", "IOB1", "IOBES"); when both
            are given the CRF forbids the transitions the scheme does not allow.
        singleton_start / singleton_unk_rate / unk_index: while training, word ids >= ``singleton_start``
            (see :class:`TaggingVocabulary`) are replaced by ``unk_index`` with this probability
            (Lample: 0.5); None turns it off.

    Call arguments:
        words: (N, T) long word ids, post-padded with 0.
        chars: (N, T, W) long character ids, 0 on padding (omit with ``char_encoder="none"``).

    Returns:
        emissions (N, T, num_tags); :meth:`predict` and :meth:`decode` give tag ids.

    ``compile`` defaults the loss to the CRF's negative log-likelihood (:class:`~deepzen.layers.CRFLoss`)
    or to softmax cross-entropy, both with -100 marking padding in the targets.
    """

    takes_integer_inputs = True

    def __init__(self, num_words: int, num_chars: int, num_tags: int, *, word_dim: int = 100,
                 char_encoder: str = "lstm", char_dim: int = 25, char_units: int = 25, char_kernel_size: int = 3,
                 units: int = 100, dropout: float = 0.5, crf: bool = True, tags: Sequence[str] | None = None,
                 scheme: str | None = None, singleton_start: int | None = None, singleton_unk_rate: float = 0.5,
                 unk_index: int = 1, name: str | None = None):
        super().__init__(name=name)
        for argument, value in (("num_words", num_words), ("num_chars", num_chars), ("num_tags", num_tags),
                                ("word_dim", word_dim), ("char_dim", char_dim), ("char_units", char_units),
                                ("char_kernel_size", char_kernel_size), ("units", units)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SequenceTagger expects {argument} to be a positive integer. "
                                 f"Received: {argument}={value!r}")
        if char_encoder not in CHAR_ENCODERS:
            raise ValueError(f"SequenceTagger expects char_encoder in {CHAR_ENCODERS}. "
                             f"Received: char_encoder={char_encoder!r}")
        if not 0.0 <= dropout < 1.0 or not 0.0 <= singleton_unk_rate <= 1.0:
            raise ValueError(f"SequenceTagger expects dropout in [0, 1) and singleton_unk_rate in [0, 1]. "
                             f"Received: dropout={dropout}, singleton_unk_rate={singleton_unk_rate}")
        if (tags is None) != (scheme is None) or (tags is not None and len(tags) != num_tags):
            raise ValueError(f"SequenceTagger expects both tags (num_tags={num_tags} names) and scheme, or "
                             f"neither. Received: tags={tags!r}, scheme={scheme!r}")
        self._config = {"num_words": num_words, "num_chars": num_chars, "num_tags": num_tags, "word_dim": word_dim,
                        "char_encoder": char_encoder, "char_dim": char_dim, "char_units": char_units,
                        "char_kernel_size": char_kernel_size, "units": units, "dropout": dropout, "crf": crf,
                        "tags": list(tags) if tags is not None else None, "scheme": scheme,
                        "singleton_start": singleton_start, "singleton_unk_rate": singleton_unk_rate,
                        "unk_index": unk_index, "name": name}
        self.char_encoder = char_encoder
        self.singleton_start, self.singleton_unk_rate, self.unk_index = singleton_start, singleton_unk_rate, unk_index
        # The word embedding is registered first: the model's inputs stay integer ids.
        self.word_embedding = Embedding(num_words, word_dim, padding_idx=0)
        if char_encoder != "none":
            self.char_embedding = Embedding(num_chars, char_dim, padding_idx=0)
        if char_encoder == "lstm":
            self.char_lstm = LSTM(char_units, bidirectional=True)  # -> final states, (M, 2 * char_units)
        elif char_encoder == "cnn":
            self.char_conv = Conv1D(char_units, char_kernel_size, padding="same")
        self.dropout = Dropout(dropout)
        self.lstm = LSTM(units, return_sequences=True, bidirectional=True)
        self.emissions = Dense(num_tags)
        self.crf = CRF(num_tags, constraints=allowed_transitions(list(tags), scheme) if tags else None) \
            if crf else None

    # -- forward ---------------------------------------------------------------------------------------
    def forward(self, words: torch.Tensor, chars: torch.Tensor | None = None) -> torch.Tensor:
        mask = words != 0                                                   # (N, T)
        if self.training and self.singleton_start is not None and self.singleton_unk_rate > 0:
            unknown = (words >= self.singleton_start) & (torch.rand(words.shape, device=words.device)
                                                         < self.singleton_unk_rate)
            words = words.masked_fill(unknown, self.unk_index)
        features = self.word_embedding(words)                               # (N, T, word_dim)
        if self.char_encoder != "none":
            if chars is None:
                raise ValueError(f"SequenceTagger with char_encoder={self.char_encoder!r} expects chars (N, T, W) "
                                 f"after the words. Received: words only")
            features = torch.cat((features, self.char_features(chars, mask)), dim=-1)  # (N, T, word_dim + D_c)
        lengths = mask.sum(1)
        states = self.lstm(self.dropout(features), lengths=lengths)         # (N, T, 2 * units); host sync: packing
        return self.emissions(self.dropout(states))                         # (N, T, K)

    def char_features(self, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, T, W) character ids -> (N, T, D_c) one feature per word (zeros on padded words)."""
        steps, width = chars.shape[1], chars.shape[2]
        real = mask.reshape(-1)                                             # (N*T,)
        rows = real.nonzero().squeeze(1)                                    # (M,) real words; host sync: count
        if rows.numel() == 0:  # an all-padding batch (e.g. the zeros a saved tagger is built with): encode one
            rows = rows.new_zeros(1)
        word_chars = chars.reshape(-1, width).index_select(0, rows)         # (M, W)
        char_mask = word_chars != 0
        vectors = self.char_embedding(word_chars)                           # (M, W, char_dim)
        if self.char_encoder == "lstm":
            encoded = self.char_lstm(vectors, lengths=char_mask.sum(1))     # (M, 2 * char_units)
        else:
            maps = self.char_conv(vectors.transpose(1, 2))                  # (M, filters, W)
            encoded = maps.masked_fill(~char_mask.unsqueeze(1), float("-inf")).amax(-1)  # (M, filters)
        encoded = encoded.masked_fill(~real[rows].unsqueeze(1), 0.0)
        out = encoded.new_zeros(real.shape[0], encoded.shape[-1]).index_copy(0, rows, encoded)
        return out.reshape(mask.shape[0], steps, -1)                        # (N, T, D_c)

    # -- prediction ------------------------------------------------------------------------------------
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Best tag ids (N, T), -100 on padding: Viterbi with the CRF, else the argmax of each word."""
        if self.crf is not None:
            return self.crf.decode(emissions, mask)
        return emissions.argmax(-1).masked_fill(~mask, PAD_TAG)

    @torch.no_grad()
    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = 0) -> Any:
        """Tag ids (N, T) of ``x = (words, chars)`` (or words alone), -100 on padding.

        Decodes with Viterbi when the tagger has a CRF, by argmax otherwise. Returns a tensor for
        tensor inputs and a NumPy array for NumPy inputs, like ``Model.predict``.
        """
        batch_size = batch_size or INFERENCE_BATCH_SIZE
        data = ArrayData(x, device=self.device, integer_inputs_as_float=False)
        first = data.x[0] if isinstance(data.x, (tuple, list)) else data.x
        if not self.built:
            self.build_for(data._take(slice(0, 2))[0])
        self.eval()
        tags = torch.full(first.shape[:2], PAD_TAG, dtype=torch.long, device=self.device)  # (N, T)
        for start, (batch, _, _) in zip(range(0, len(data), batch_size), data.batches(batch_size)):
            words = batch[0] if isinstance(batch, (tuple, list)) else batch
            steps = max(int((words != 0).sum(1).max()), 1)  # host sync: cut the batch's padding
            batch = map_structure(lambda t: t[:, :steps], batch)
            words = batch[0] if isinstance(batch, (tuple, list)) else batch
            emissions = self(*batch) if isinstance(batch, (tuple, list)) else self(batch)
            tags[start:start + len(words), :steps] = self.decode(emissions, words != 0)
        if any(isinstance(leaf, torch.Tensor) for leaf in leaves(x)):
            return tags
        return tags.cpu().numpy()

    # -- training --------------------------------------------------------------------------------------
    def default_loss(self) -> nn.Module:
        """The CRF's negative log-likelihood per sentence, or softmax cross-entropy per word."""
        from deepzen.losses import SparseCategoricalCrossentropy

        return CRFLoss(self.crf) if self.crf is not None else SparseCategoricalCrossentropy(from_logits=True)

    def compile(self, optimizer: Any = "adam", loss: Any = None, metrics: Any = None, **kwargs) -> None:
        """``Model.compile`` with the loss defaulting to :meth:`default_loss`.

        A saved tagger records a default loss as None (it follows from the architecture), so
        ``load_model`` returns it uncompiled: call ``compile`` again to train it further.
        """
        super().compile(optimizer, self.default_loss() if loss is None else loss, metrics, **kwargs)
        if loss is None:
            self.compile_config["loss"] = None

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SequenceTagger":
        return cls(**config)


# -- evaluation -----------------------------------------------------------------------------------------
def predict_tags(tagger: SequenceTagger, vocabulary: TaggingVocabulary, sentences: Sequence[Sequence[str]],
                 batch_size: int | None = None) -> list[list[str]]:
    """The predicted tag of every token of every sentence (in the tagger's scheme)."""
    inputs, _ = vocabulary.encode(sentences)
    return vocabulary.decode(tagger.predict(_tagger_inputs(tagger, inputs), batch_size=batch_size))


def _tagger_inputs(tagger: SequenceTagger, inputs: tuple[torch.Tensor, torch.Tensor]):
    """(words, chars), or the words alone for a tagger without character features."""
    return inputs[0] if tagger.char_encoder == "none" else inputs


def evaluate_entities(tagger: SequenceTagger, vocabulary: TaggingVocabulary, sentences: Sequence[Sequence[str]],
                      gold_tags: Sequence[Sequence[str]], batch_size: int | None = None) -> dict:
    """Entity-level precision, recall and F1 (conlleval's definition) of the tagger on labeled sentences.

    ``gold_tags`` may use any scheme (IOB1, BIO, IOBES), whatever the tagger predicts: entities are
    read from each sequence as conlleval reads them (see :func:`deepzen.data.text_datasets.entity_f1`).
    """
    return entity_f1(gold_tags, predict_tags(tagger, vocabulary, sentences, batch_size))


class EntityF1(Callback):
    """Scores entity F1 on held-out sentences after every epoch and adds it to the epoch logs.

    Put it before ``EarlyStopping(monitor="val_f1", mode="max", restore_best_weights=True)`` to
    keep the epoch with the best development F1 (Lample et al. select their model this way).

    Args:
        vocabulary: the tagger's :class:`TaggingVocabulary`.
        sentences / tags: the held-out sentences and gold tags (any scheme).
        name: the log key (default "val_f1").
    """

    def __init__(self, vocabulary: TaggingVocabulary, sentences: Sequence[Sequence[str]],
                 tags: Sequence[Sequence[str]], name: str = "val_f1"):
        self.vocabulary, self.tags, self.name = vocabulary, tags, name
        self.inputs, _ = vocabulary.encode(sentences)  # encoded once, scored every epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        predicted = self.model.predict(_tagger_inputs(self.model, self.inputs))
        scores = entity_f1(self.tags, self.vocabulary.decode(predicted))
        if logs is not None:
            logs[self.name] = scores["f1"]
