"""Subword tokenization (BPE or unigram) on the ``sentencepiece`` library.

Words outside a word-level vocabulary become ``<unk>``; subwords split them into known pieces
instead ("Skateboardfahrer" -> "▁Skate", "board", "fahrer"), so a translator can spell any word and
the vocabulary (hence the softmax) stays small. deepzen trains and applies sentencepiece's models
(Kudo & Richardson 2018) and does not re-implement them. Decoding is exact: ``decode(encode(text))``
gives ``text`` back (up to whitespace normalisation), so the output of a translator is ordinary
detokenized text, scored as it is by sacrebleu.

Ids follow :class:`deepzen.data.text.Vocab`'s convention: ``<pad>`` = 0, ``<unk>`` = 1, ``<bos>`` = 2,
``<eos>`` = 3.

Example:
    >>> tokenizer = SubwordTokenizer.train(["a cat sat", "a dog sat", "the cat ran"] * 20, vocab_size=24)
    >>> ids = tokenizer.encode("a cat ran", add_eos=True)
    >>> ids[-1] == tokenizer.eos_index, tokenizer.decode(ids)
    (True, 'a cat ran')
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

import torch

from deepzen.data.paths import PathLike

PAD_INDEX, UNK_INDEX, BOS_INDEX, EOS_INDEX = 0, 1, 2, 3


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError as error:  # an optional dependency of the text vertical
        raise ImportError("SubwordTokenizer needs the sentencepiece package: pip install sentencepiece") from error
    return sentencepiece


class SubwordTokenizer:
    """A trained sentencepiece model: text <-> subword ids.

    Create one with :meth:`train` (from raw sentences) or :meth:`load` (a saved model).

    Args:
        model_proto: the serialized sentencepiece model (what :meth:`save` writes).

    Attributes:
        pad_index, unk_index, bos_index, eos_index: 0, 1, 2, 3.
    """

    pad_index, unk_index, bos_index, eos_index = PAD_INDEX, UNK_INDEX, BOS_INDEX, EOS_INDEX

    def __init__(self, model_proto: bytes):
        self.model_proto = bytes(model_proto)
        self.processor = _sentencepiece().SentencePieceProcessor(model_proto=self.model_proto)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, *, model_type: str = "bpe",
              character_coverage: float = 1.0) -> "SubwordTokenizer":
        """Learns a subword vocabulary from raw sentences.

        Args:
            texts: training sentences (raw, untokenized).
            vocab_size: pieces including the four special tokens; an upper limit (a small corpus
                may give fewer).
            model_type: "bpe" (Sennrich et al. 2016) or "unigram" (Kudo 2018).
            character_coverage: fraction of characters covered by single-character pieces (1.0
                keeps every character of the training text).
        """
        if model_type not in ("bpe", "unigram"):
            raise ValueError(f"SubwordTokenizer expects model_type 'bpe' or 'unigram'. Received: {model_type!r}")
        if not isinstance(vocab_size, int) or vocab_size < 8:
            raise ValueError(f"SubwordTokenizer expects vocab_size to be an integer >= 8. "
                             f"Received: vocab_size={vocab_size!r}")
        model = io.BytesIO()
        _sentencepiece().SentencePieceTrainer.train(
            sentence_iterator=iter(list(texts)), model_writer=model, vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, hard_vocab_limit=False, pad_id=PAD_INDEX, unk_id=UNK_INDEX,
            bos_id=BOS_INDEX, eos_id=EOS_INDEX, num_threads=1, minloglevel=2)
        return cls(model.getvalue())

    def __len__(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """One sentence -> subword ids, optionally wrapped in ``<bos>`` ... ``<eos>``."""
        ids = self.processor.encode(text, out_type=int)
        return ([self.bos_index] if add_bos else []) + ids + ([self.eos_index] if add_eos else [])

    def encode_batch(self, texts: Sequence[str], *, add_bos: bool = False, add_eos: bool = False) -> list[list[int]]:
        """Many sentences at once (sentencepiece's batched call)."""
        head, tail = [self.bos_index] if add_bos else [], [self.eos_index] if add_eos else []
        return [head + ids + tail for ids in self.processor.encode(list(texts), out_type=int)]

    def tokenize(self, text: str) -> list[str]:
        """The pieces of a sentence, e.g. ``["▁Ein", "▁Mann", ...]`` (``▁`` marks a word start)."""
        return self.processor.encode(text, out_type=str)

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Ids -> text; the special tokens (padding, bos, eos) are dropped."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self.processor.decode([i for i in ids if i not in (self.pad_index, self.bos_index, self.eos_index)])

    def save(self, path: PathLike) -> None:
        """Writes the sentencepiece model file (readable by sentencepiece itself, too)."""
        Path(path).write_bytes(self.model_proto)

    @classmethod
    def load(cls, path: PathLike) -> "SubwordTokenizer":
        return cls(Path(path).read_bytes())

    def __repr__(self) -> str:
        return f"SubwordTokenizer(size={len(self)})"
