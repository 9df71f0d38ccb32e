"""Text generation recipes: character language models and translation, registered by name.

- ``shakespeare-char-lstm`` / ``shakespeare-char-transformer``: a character LSTM / a small GPT on
  Tiny Shakespeare (first 90% train, last 10% validation, as nanoGPT splits it), trained for a
  wall-clock budget; reports validation loss in nats/char against training time and a sample
  generated from a prompt. ``data=`` takes any UTF-8 text file instead.
- ``multi30k-transformer`` / ``multi30k-gru-attention``: English->German on Multi30k with
  sentencepiece subwords, trained for a wall-clock budget; reports sacrebleu corpus BLEU (13a
  tokenization, cased, detokenized output) on test2016 with greedy search and with beam search.
  ``data=`` takes a folder holding files in Multi30k's format (``train.en.gz`` ...).

Both leave ``model.dz`` and their tokenizers (``vocab.json``; ``subwords.LANG.model``) in the run
folder, so ``deepzen predict RUN "ROMEO:"`` continues a prompt (:func:`predict_continuations`) and
``deepzen predict RUN "A man rides a bike."`` translates (:func:`predict_translations`). ``model.dz``
alone rebuilds the network (``load_model``, ``deepzen serve``); a language model's file also holds
its characters, while a translator needs its two subword models to turn text into ids.

Training time budgets count training steps only (validation passes are excluded); the learning
rate warms up linearly and then follows a cosine to a floor as the budget (or ``max_steps``) runs
out, so a shorter budget still ends with a decayed, well-converged model.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import deepzen
from deepzen.callbacks import Callback
from deepzen.optimizers import schedules
from deepzen.recipes import cached_load, load_run_model, register_recipe, run_file, write_text
from deepzen.training.callbacks import FollowEpochs, TimeBudget, set_learning_rate
from deepzen.training.serialization import atomic_write, load_model

_FOREVER = 10 ** 9  # epochs: the time budget or max_steps ends training


class TrainingBudget(TimeBudget):
    """A :class:`~deepzen.callbacks.TimeBudget` that also schedules the learning rate over the budget.

    The rate rises linearly over ``warmup_steps`` and then decays along a cosine from
    ``learning_rate`` to ``min_fraction * learning_rate`` as the budget is used up (progress =
    the larger of elapsed/budget and steps/max_steps). Each epoch end appends
    ``(steps, training seconds, loss, val_loss)`` to :attr:`curve`.

    Args:
        learning_rate: peak learning rate.
        minutes: training-time budget (0: none).
        max_steps: step budget (0: none). At least one budget must be set.
        warmup_steps: linear warm-up steps.
        min_fraction: final learning rate as a fraction of the peak.
    """

    def __init__(self, learning_rate: float, minutes: float, max_steps: int = 0, warmup_steps: int = 0,
                 min_fraction: float = 0.1):
        super().__init__(minutes, max_steps)
        self.learning_rate, self.warmup_steps, self.min_fraction = learning_rate, warmup_steps, min_fraction
        # the cosine runs over the budget's progress in [0, 1]: one "decay step" is the whole budget
        self.decay = schedules.CosineDecay(learning_rate, decay_steps=1, alpha=min_fraction)
        self.curve: list[dict] = []

    def on_train_batch_begin(self, step, logs=None):
        warmup = min(1.0, (self.steps + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        set_learning_rate(self.model.optimizer, warmup * self.decay(self.progress()))

    def state_dict(self) -> dict:
        """The steps and training time used and the curve so far: a resumed fit continues the budget and the
        learning-rate schedule where they were."""
        return {**super().state_dict(), "curve": [dict(point) for point in self.curve]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.curve = [dict(point) for point in state["curve"]]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.curve.append({"steps": self.steps, "seconds": round(self.training_seconds, 1),
                           "loss": logs.get("loss"), "val_loss": logs.get("val_loss")})
        super().on_epoch_end(epoch, logs)


class GeneratorState(Callback):
    """Keeps the state of a ``torch.Generator`` that the training batches draw from (:class:`TextWindows`') in
    the fit's checkpoint, as it was when the epoch began, so that a resumed fit draws the batches the
    uninterrupted fit drew (a resume inside an epoch draws that epoch again and skips the steps done).

    Put it before the callbacks that end epochs early, so its epoch-end state is the one saved.
    """

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self.epoch_start = generator.get_state()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.generator.get_state()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_start = self.generator.get_state()  # the next epoch's draws start here

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.epoch_start}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.epoch_start = state["generator"]
        self.generator.set_state(self.epoch_start)


def _write_curve(curve: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["steps", "seconds", "loss", "val_loss"])
        writer.writeheader()
        writer.writerows(curve)


# == character language models ============================================================================
@dataclass
class LanguageModelConfig:
    """Settings of the character language-model recipes (defaults: the character LSTM)."""

    model: str = "lstm"                 # "lstm" or "transformer"
    data: str = ""                      # empty: Tiny Shakespeare in $DEEPZEN_DATA; else a UTF-8 text file
    val_fraction: float = 0.1           # the last part of the text is the validation set
    seq_len: int = 100                  # training window (the Transformer's context)
    eval_len: int = 500                 # validation window (the Transformer always uses its context)
    batch_size: int = 64
    learning_rate: float = 3e-3
    min_lr_fraction: float = 0.05
    warmup_steps: int = 100
    clipnorm: float = 1.0               # global gradient-norm clipping
    minutes: float = 30.0               # training-time budget
    max_steps: int = 0                  # step budget (0: only the time budget)
    eval_every: int = 250               # steps between validation points of the curve
    embedding_dim: int = 64             # LSTM
    units: int = 384                    # LSTM
    d_model: int = 128                  # Transformer
    num_heads: int = 4                  # Transformer
    num_layers: int = 2                 # LSTM layers or Transformer blocks
    dropout: float = 0.1
    prompt: str = "ROMEO:"  # the generated sample starts with this text
    sample_length: int = 500  # characters generated for the sample
    temperature: float = 0.8  # sampling temperature (lower: more conservative)
    top_k: int = 0                      # 0: no top-k filtering
    top_p: float = 1.0                  # 1: no nucleus filtering
    seed: int = 0
    verbose: int = 0


@dataclass
class TransformerLanguageModelConfig(LanguageModelConfig):
    model: str = "transformer"
    seq_len: int = 128
    batch_size: int = 32
    learning_rate: float = 2e-3
    num_layers: int = 4
    dropout: float = 0.0


def language_model(config: LanguageModelConfig, vocab):
    """The recipe's network for ``config.model``."""
    from deepzen.text.language_model import CharLSTM, TransformerLM

    if config.model == "lstm":
        return CharLSTM(vocab, config.embedding_dim, config.units, config.num_layers, config.dropout)
    if config.model == "transformer":
        return TransformerLM(vocab, config.seq_len, config.d_model, config.num_heads, config.num_layers,
                             dropout=config.dropout)
    raise ValueError(f"Expected model 'lstm' or 'transformer'. Received: model={config.model!r}")


def train_language_model(config: LanguageModelConfig, run_dir: Path) -> dict:
    """Trains a character language model for the time budget; returns validation nats/char and more."""
    from deepzen.data.paths import read_text
    from deepzen.data.text_datasets import load_tinyshakespeare
    from deepzen.text.language_model import TextWindows, char_vocab, consecutive_windows

    deepzen.seed(config.seed)
    text = read_text(config.data) if config.data else load_tinyshakespeare()
    split = int(len(text) * (1.0 - config.val_fraction))
    vocab = char_vocab(text)
    ids = torch.tensor(vocab.encode(text))
    model = language_model(config, vocab)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=config.learning_rate,
                                                    global_clipnorm=config.clipnorm or None),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    ids = ids.to(model.device)
    windows = TextWindows(ids[:split], config.seq_len, config.batch_size, config.eval_every, seed=config.seed)
    # Each validation window starts without context, so longer windows score closer to a stream;
    # the LSTM reads any length, the Transformer only its context.
    eval_len = config.seq_len if config.model == "transformer" else max(config.eval_len, config.seq_len)
    eval_len = min(eval_len, len(text) - split - 1)  # a short text: one window
    validation = consecutive_windows(ids[split:], eval_len)
    budget = TrainingBudget(config.learning_rate, config.minutes, config.max_steps, config.warmup_steps,
                            config.min_lr_fraction)
    model.fit(windows, epochs=_FOREVER, validation_data=validation,
              callbacks=[GeneratorState(windows.generator), budget], verbose=config.verbose)
    val_loss = budget.curve[-1]["val_loss"]
    sample = model.generate(config.prompt, config.sample_length, config.temperature, config.top_k or None,
                            config.top_p if config.top_p < 1.0 else None, seed=config.seed)
    _write_curve(budget.curve, run_dir / "curve.csv")
    (run_dir / "sample.txt").write_text(sample, encoding="utf-8")
    model.save(run_dir / "model.dz")
    write_text(run_dir / "vocab.json", json.dumps(vocab.get_config(), ensure_ascii=False))
    return {"val_loss": val_loss, "val_bits_per_char": val_loss / math.log(2), "val_perplexity": math.exp(val_loss),
            "training_minutes": budget.curve[-1]["seconds"] / 60.0, "steps": budget.steps,
            "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(vocab),
            "train_chars": split, "val_chars": len(text) - split}


PREDICT_LENGTH = 200  # characters `deepzen predict` generates after each prompt


def load_language_model(run_dir: Path):
    """The language model a ``shakespeare-char-*`` run saved in ``model.dz`` (its vocabulary included),
    and the run's config."""
    from deepzen.recipes import run_config

    _, config = run_config(run_dir)
    return load_run_model(run_dir, "model.dz", "the trained model"), config


def predict_continuations(run_dir: Path, prompts: list[str], top: int | None = None) -> list[dict]:
    """Continues each prompt by :data:`PREDICT_LENGTH` characters with the run's language model.

    Sampling uses the run's ``temperature``, ``top_k``, ``top_p`` and ``seed`` (the same prompt gives
    the same text); ``top`` is not used.

    Returns:
        ``[{"input": prompt, "text": prompt + continuation}]``.
    """
    model, config = load_language_model(run_dir)
    return [{"input": prompt, "text": model.generate(prompt, PREDICT_LENGTH, config.temperature, config.top_k or None,
                                                     config.top_p if config.top_p < 1.0 else None, seed=config.seed)}
            for prompt in prompts]


register_recipe("shakespeare-char-lstm", LanguageModelConfig,
                "Character LSTM language model on Tiny Shakespeare (val nats/char, text generation)",
                predict_continuations,
                dataset="Tiny Shakespeare (characters)",
                target="validation loss <= 1.60 nats/char within 30 min")(train_language_model)
register_recipe("shakespeare-char-transformer", TransformerLanguageModelConfig,
                "Small decoder-only Transformer (GPT) on Tiny Shakespeare characters (val nats/char, generation)",
                predict_continuations,
                dataset="Tiny Shakespeare (characters)",
                target="validation loss <= 1.60 nats/char within 30 min")(train_language_model)


# == translation ============================================================================================
@dataclass
class TranslationConfig:
    """Settings of the translation recipes (defaults: the Transformer)."""

    model: str = "transformer"          # "transformer", "gru" or "lstm"
    attention: str = "bahdanau"         # RNN models: "bahdanau" (additive) or "luong" (general)
    data: str = ""                      # empty: Multi30k in $DEEPZEN_DATA; else a folder in its format
    source_language: str = "en"  # "en" or "de"
    target_language: str = "de"  # "de" or "en"
    vocab_size: int = 8000              # sentencepiece BPE pieces per language
    batch_size: int = 128               # sentence pairs per step
    learning_rate: float = 1e-3
    min_lr_fraction: float = 0.05
    warmup_steps: int = 500
    clipnorm: float = 1.0
    label_smoothing: float = 0.1
    minutes: float = 90.0               # training-time budget
    max_steps: int = 0                  # step budget (0: only the time budget)
    d_model: int = 256                  # Transformer width (RNN: embedding size)
    num_heads: int = 4  # attention heads
    num_layers: int = 3                 # encoder and decoder layers each
    intermediate_dim: int = 512  # Transformer feed-forward width
    units: int = 256                    # RNN hidden size
    dropout: float = 0.1
    beam_size: int = 5  # beam width of the beam-search evaluation
    length_penalty: float = 0.6  # beam search's length penalty (Wu et al. 2016)
    max_train_pairs: int = 0            # train on the first k pairs (0: all), for quick checks
    max_eval_pairs: int = 0             # score the first k test/validation pairs (0: all)
    seed: int = 0
    verbose: int = 0


@dataclass
class RNNTranslationConfig(TranslationConfig):
    """Settings of ``multi30k-gru-attention``: one 512-unit layer each side, as in Bahdanau et al. (a
    3-layer 256-unit GRU was still under-fitting after 60 minutes: train loss 3.6, 5.4 BLEU)."""

    model: str = "gru"
    num_layers: int = 1
    units: int = 512
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    dropout: float = 0.3
    label_smoothing: float = 0.0


def translation_model(config: TranslationConfig, source_tokenizer, target_tokenizer):
    """The recipe's network for ``config.model``."""
    from deepzen.text.translation import RNNTranslator, TransformerTranslator

    tokenizers = {"source_tokenizer": source_tokenizer, "target_tokenizer": target_tokenizer}
    sizes = (len(source_tokenizer), len(target_tokenizer))
    if config.model == "transformer":
        return TransformerTranslator(*sizes, d_model=config.d_model, num_heads=config.num_heads,
                                     num_encoder_layers=config.num_layers, num_decoder_layers=config.num_layers,
                                     intermediate_dim=config.intermediate_dim, dropout=config.dropout, **tokenizers)
    if config.model in ("gru", "lstm"):
        return RNNTranslator(*sizes, embedding_dim=config.d_model, units=config.units, cell=config.model,
                             attention=config.attention, num_layers=config.num_layers, dropout=config.dropout,
                             **tokenizers)
    raise ValueError(f"Expected model 'transformer', 'gru' or 'lstm'. Received: model={config.model!r}")


def train_translation(config: TranslationConfig, run_dir: Path) -> dict:
    """Trains a translator for the time budget; returns test BLEU with greedy and beam search and more."""
    from deepzen.data.text_datasets import load_multi30k
    from deepzen.text.subword import SubwordTokenizer
    from deepzen.text.translation import ParallelBatches, corpus_bleu, teacher_forcing_tensors

    deepzen.seed(config.seed)
    data = config.data or None
    splits = {split: load_multi30k(data, split) for split in ("train", "val", "test")}
    languages = ("en", "de")
    if {config.source_language, config.target_language} != set(languages):
        raise ValueError(f"Expected source_language and target_language to be 'en' and 'de' in some order. "
                         f"Received: {config.source_language!r}, {config.target_language!r}")
    pairs = {split: (en_de[languages.index(config.source_language)], en_de[languages.index(config.target_language)])
             for split, en_de in splits.items()}
    limit = lambda texts, k: texts[:k] if k else texts  # noqa: E731
    train_source, train_target = (limit(texts, config.max_train_pairs) for texts in pairs["train"])
    source_tokenizer = SubwordTokenizer.train(train_source, config.vocab_size)
    target_tokenizer = SubwordTokenizer.train(train_target, config.vocab_size)

    def tensors(source_texts, target_texts):
        return teacher_forcing_tensors(source_tokenizer.encode_batch(source_texts),
                                       target_tokenizer.encode_batch(target_texts))

    model = translation_model(config, source_tokenizer, target_tokenizer)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=config.learning_rate, beta_2=0.98,
                                                    global_clipnorm=config.clipnorm or None),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True,
                                          label_smoothing=config.label_smoothing))
    device = model.device
    train = ParallelBatches(*(t.to(device) for t in tensors(train_source, train_target)), config.batch_size,
                            seed=config.seed)
    val_source, val_target = (limit(texts, config.max_eval_pairs) for texts in pairs["val"])
    validation = ParallelBatches(*(t.to(device) for t in tensors(val_source, val_target)), config.batch_size,
                                 shuffle=False)
    budget = TrainingBudget(config.learning_rate, config.minutes, config.max_steps, config.warmup_steps,
                            config.min_lr_fraction)
    model.fit(train, epochs=_FOREVER, validation_data=validation, callbacks=[FollowEpochs(train), budget],
              verbose=config.verbose)

    test_source, test_target = (limit(texts, config.max_eval_pairs) for texts in pairs["test"])
    metrics = {"val_loss": budget.curve[-1]["val_loss"], "training_minutes": budget.curve[-1]["seconds"] / 60.0,
               "steps": budget.steps, "epochs": budget.steps / len(train),
               "parameters": sum(p.numel() for p in model.parameters()),
               "source_vocab": len(source_tokenizer), "target_vocab": len(target_tokenizer)}
    for label, beam_size in (("greedy", 1), ("beam", config.beam_size)):
        start = time.perf_counter()
        hypotheses = model.translate(test_source, beam_size=beam_size, length_penalty=config.length_penalty)
        metrics[f"test_bleu_{label}"] = corpus_bleu(hypotheses, test_target)
        metrics[f"test_decode_seconds_{label}"] = time.perf_counter() - start
        (run_dir / f"test_{label}.{config.target_language}").write_text("\n".join(hypotheses) + "\n",
                                                                       encoding="utf-8")
    _write_curve(budget.curve, run_dir / "curve.csv")
    model.save(run_dir / "model.dz")
    for language, tokenizer in ((config.source_language, source_tokenizer), (config.target_language, target_tokenizer)):
        atomic_write(run_dir / f"subwords.{language}.model", lambda file: file.write(tokenizer.model_proto))
    (run_dir / "bleu.json").write_text(json.dumps({"tokenize": "13a", "lowercase": False, "references": "test2016",
                                                   **{k: v for k, v in metrics.items() if "bleu" in k}}, indent=2))
    return metrics


def load_translator(run_dir: Path):
    """The translator a ``multi30k-*`` run saved in ``model.dz``, given the run's two sentencepiece models,
    and the run's config."""
    from deepzen.recipes import run_config

    _, config = run_config(run_dir)
    files = [run_file(run_dir, "model.dz", "the trained model")] + [
        run_file(run_dir, f"subwords.{language}.model", "a subword model")
        for language in (config.source_language, config.target_language)]
    return cached_load(_read_translator, *files), config


def _read_translator(model_file: Path, source_subwords: Path, target_subwords: Path):
    from deepzen.text.subword import SubwordTokenizer

    model = load_model(model_file, compile=False)
    model.source_tokenizer, model.target_tokenizer = map(SubwordTokenizer.load, (source_subwords, target_subwords))
    return model


def predict_translations(run_dir: Path, sentences: list[str], top: int | None = None) -> list[dict]:
    """Translates each sentence with the run's translator: beam search with the run's ``beam_size`` and
    ``length_penalty``. ``top`` is not used.

    Returns:
        ``[{"input": sentence, "translation": text}]``.
    """
    model, config = load_translator(run_dir)
    translations = model.translate(sentences, beam_size=config.beam_size, length_penalty=config.length_penalty)
    return [{"input": sentence, "translation": translation} for sentence, translation in zip(sentences, translations)]


register_recipe("multi30k-transformer", TranslationConfig,
                "Transformer English->German on Multi30k (sacrebleu BLEU on test2016, greedy and beam 5)",
                predict_translations,
                dataset="Multi30k English->German",
                target="sacreBLEU on test2016 >= 30, beam not worse than greedy")(train_translation)
register_recipe("multi30k-gru-attention", RNNTranslationConfig,
                "GRU encoder-decoder with Bahdanau attention, English->German on Multi30k (sacrebleu BLEU)",
                predict_translations,
                dataset="Multi30k English->German", target="sacreBLEU on test2016 >= 30")(train_translation)
