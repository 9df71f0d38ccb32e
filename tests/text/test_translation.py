import doctest
import json
import math
from collections import Counter

import pytest
import torch

import deepzen
from deepzen.text import subword, translation
from deepzen.text.decoding import beam_search, greedy_search
from deepzen.text.generation_recipes import TrainingBudget, TranslationConfig, translation_model
from deepzen.text.translation import (IGNORE_INDEX, ParallelBatches, RNNTranslator, TransformerTranslator,
                                      corpus_bleu, teacher_forcing_tensors)

BOS, EOS = 2, 3
SYMBOLS = 12  # ids 4..11 are the task's symbols, 0-3 the specials


def reversal_task(count, seed):
    """Random sequences of 2-6 symbols; the target is the source reversed."""
    generator = torch.Generator().manual_seed(seed)
    sources = [torch.randint(4, SYMBOLS, (int(torch.randint(2, 7, (1,), generator=generator)),),
                             generator=generator).tolist() for _ in range(count)]
    return sources, [source[::-1] for source in sources]


def make_model(kind, source_vocab=SYMBOLS, target_vocab=SYMBOLS, **kwargs):
    if kind == "gru-bahdanau":
        return RNNTranslator(source_vocab, target_vocab, embedding_dim=32, units=64, dropout=0.0, **kwargs)
    if kind == "lstm-luong":
        return RNNTranslator(source_vocab, target_vocab, embedding_dim=32, units=64, cell="lstm", attention="luong",
                             num_layers=2, dropout=0.0, **kwargs)
    return TransformerTranslator(source_vocab, target_vocab, d_model=64, num_heads=4, num_encoder_layers=2,
                                 num_decoder_layers=2, intermediate_dim=128, dropout=0.0, **kwargs)


def exact_match(output, targets):
    rows = output.tolist()
    return sum(row[:len(target) + 1] == target + [EOS] for row, target in zip(rows, targets)) / len(targets)


@pytest.fixture(scope="module", params=["gru-bahdanau", "transformer"])
def trained(request):
    """A model trained for 300 steps on sequence reversal, and a held-out test set."""
    deepzen.seed(0)
    model = make_model(request.param)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=5e-3),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    train_sources, train_targets = reversal_task(4096, seed=0)
    batches = ParallelBatches(*teacher_forcing_tensors(train_sources, train_targets), batch_size=64)
    model.fit(batches, epochs=10, verbose=0, callbacks=[TrainingBudget(5e-3, minutes=0, max_steps=300,
                                                                       warmup_steps=20, min_fraction=0.05)])
    test_sources, test_targets = reversal_task(200, seed=1)
    return request.param, model, teacher_forcing_tensors(test_sources, test_targets)[0], test_targets


def test_doctests():
    assert doctest.testmod(translation).failed == 0
    assert doctest.testmod(subword).failed == 0


def test_teacher_forcing_tensors():
    source, target_in, target_out = teacher_forcing_tensors([[5, 6, 7], [8]], [[9], [10, 11]])
    assert source.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert target_in.tolist() == [[BOS, 9, 0], [BOS, 10, 11]]
    assert target_out.tolist() == [[9, EOS, IGNORE_INDEX], [10, 11, EOS]]


def test_parallel_batches_cover_every_pair_once_cut_to_their_lengths():
    sources, targets = reversal_task(50, seed=3)
    targets = [target + [4] * (i % 3) for i, target in enumerate(targets)]  # lengths differ from the sources'
    source, target_in, target_out = teacher_forcing_tensors(sources, targets)
    batches = ParallelBatches(source, target_in, target_out, batch_size=8, seed=1)
    seen = Counter()
    for (batch_source, batch_in), batch_out in batches:
        assert batch_in.shape == batch_out.shape
        assert (batch_source != 0).sum(1).max() == batch_source.shape[1]      # no all-padding column
        assert (batch_out != IGNORE_INDEX).sum(1).max() == batch_out.shape[1]
        for source_row, target_row in zip(batch_source.tolist(), batch_in[:, 1:].tolist()):
            seen[tuple(t for t in source_row if t), tuple(t for t in target_row if t)] += 1
    assert seen == Counter((tuple(s), tuple(t)) for s, t in zip(sources, targets))
    assert len(batches) == 7


@pytest.mark.parametrize("kind", ["gru-bahdanau", "lstm-luong", "transformer"])
def test_incremental_steps_equal_teacher_forced_decoding(kind):
    torch.manual_seed(0)
    model = make_model(kind, source_vocab=20, target_vocab=30).eval()
    source = torch.randint(4, 20, (3, 7))
    source[0, 4:] = 0                                                        # a padded source
    target_in = torch.cat([torch.full((3, 1), BOS), torch.randint(4, 30, (3, 6))], dim=1)
    expected = torch.log_softmax(model(source, target_in), dim=-1)          # (3, 7, 30)
    state, steps = model.encode(source), []
    for t in range(1, 8):
        log_probs, state = model.step(target_in[:, :t], state)
        steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, 1), expected, atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_the_translation():
    torch.manual_seed(0)
    for kind in ("gru-bahdanau", "transformer"):
        model = make_model(kind, source_vocab=20, target_vocab=30).eval()
        source = torch.randint(4, 20, (1, 5))
        padded = torch.cat([source, torch.zeros(1, 3, dtype=torch.long)], dim=1)
        torch.testing.assert_close(model(padded, torch.full((1, 1), BOS)), model(source, torch.full((1, 1), BOS)),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["gru-bahdanau", "transformer"])
@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_sentence_translates_the_same_alone_or_beside_a_longer_one(kind, beam_size):
    """Each sentence's output is capped at 1.5 times its own length + 10 tokens, not its batch's longest:
    a served translation does not depend on the requests batched with it."""
    torch.manual_seed(0)
    model = make_model(kind, source_vocab=20, target_vocab=30).eval()
    short, long = torch.randint(4, 20, (1, 4)), torch.randint(4, 20, (1, 16))
    batch = torch.cat([torch.cat([short, torch.zeros(1, 12, dtype=torch.long)], dim=1), long])  # 0: padding
    alone, together = model.generate(short, beam_size), model.generate(batch, beam_size)
    assert EOS not in alone[0].tolist() and alone.shape[1] == 4 * 3 // 2 + 10  # it ran into its own limit
    assert together[0, :alone.shape[1]].tolist() == alone[0].tolist()
    assert (together[0, alone.shape[1]:] == 0).all() and together.shape[1] > alone.shape[1]


def test_learns_to_reverse_sequences(trained):
    kind, model, source, targets = trained
    greedy = exact_match(model.generate(source, beam_size=1), targets)
    assert greedy >= (0.95 if kind.startswith("gru") else 0.8)


def test_beam_of_one_is_greedy_through_the_model(trained):
    _, model, source, _ = trained
    model.eval()
    with torch.no_grad():
        start = torch.full((len(source),), BOS)
        greedy, greedy_scores = greedy_search(model.step, start, 12, EOS, state=model.encode(source), pad_id=0)
        beam, beam_scores = beam_search(model.step, start, 1, 12, EOS, length_penalty=0.0,
                                        state=model.encode(source), pad_id=0)
    assert torch.equal(beam[:, 0], greedy)
    torch.testing.assert_close(beam_scores[:, 0], greedy_scores)
    assert torch.equal(model.generate(source, beam_size=1, max_len=12), greedy)


def test_beam_search_is_not_worse_than_greedy(trained):
    _, model, source, targets = trained
    greedy = exact_match(model.generate(source, beam_size=1), targets)
    beam = exact_match(model.generate(source, beam_size=5, length_penalty=0.6), targets)
    assert beam >= greedy


def reference_bleu(hypotheses, references):
    """Papineni et al.'s corpus BLEU on whitespace tokens: clipped n-gram precisions, brevity penalty."""
    matches, totals = [0] * 4, [0] * 4
    hyp_length = ref_length = 0
    for hypothesis, reference in zip(hypotheses, references):
        hyp, ref = hypothesis.split(), reference.split()
        hyp_length, ref_length = hyp_length + len(hyp), ref_length + len(ref)
        for n in range(1, 5):
            hyp_grams = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
            ref_grams = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
            matches[n - 1] += sum(min(count, ref_grams[gram]) for gram, count in hyp_grams.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    brevity = min(0.0, 1.0 - ref_length / hyp_length)
    return 100.0 * math.exp(brevity + log_precision)


def test_corpus_bleu_matches_the_definition():
    pytest.importorskip("sacrebleu")
    references = ["ein Mann fährt auf einem roten Fahrrad die Straße hinunter",
                  "zwei Hunde spielen im Schnee vor einem Haus",
                  "eine Frau sitzt auf einer Bank und liest ein Buch"]
    hypotheses = ["ein Mann fährt mit einem roten Fahrrad die Straße hinunter",
                  "zwei Hunde spielen im Schnee",
                  "eine Frau sitzt auf einer Bank und liest ein Buch"]
    assert corpus_bleu(hypotheses, references) == pytest.approx(reference_bleu(hypotheses, references), abs=1e-9)
    assert corpus_bleu(references, references) == pytest.approx(100.0)
    shouted = [" ".join(word.upper() if word.isascii() else word for word in h.split()) for h in hypotheses]
    assert corpus_bleu(shouted, references, lowercase=True) == pytest.approx(corpus_bleu(hypotheses, references))
    assert corpus_bleu(shouted, references) < 5.0                       # cased by default
    with pytest.raises(ValueError, match="one reference per hypothesis"):
        corpus_bleu(hypotheses, references[:2])


def test_subword_tokenizer_round_trips_and_saves(tmp_path):
    pytest.importorskip("sentencepiece")
    texts = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch."] * 30
    tokenizer = subword.SubwordTokenizer.train(texts, vocab_size=60)
    for text in texts[:3]:
        ids = tokenizer.encode(text, add_bos=True, add_eos=True)
        assert ids[0] == BOS and ids[-1] == EOS and min(ids[1:-1]) > EOS
        assert tokenizer.decode(ids) == text
    assert tokenizer.encode_batch(texts[:2]) == [tokenizer.encode(t) for t in texts[:2]]
    tokenizer.save(tmp_path / "de.model")
    assert subword.SubwordTokenizer.load(tmp_path / "de.model").encode(texts[1]) == tokenizer.encode(texts[1])


def test_translate_needs_tokenizers():
    with pytest.raises(ValueError, match="tokenizers"):
        make_model("transformer").translate(["a"])


def test_multi30k_slice_pipeline(tmp_path, real_dataset):
    """Subwords, a few training steps and BLEU on a slice of the real data, through the recipe."""
    pytest.importorskip("sentencepiece")
    pytest.importorskip("sacrebleu")
    from deepzen.recipes import run_recipe

    real_dataset("multi30k")
    metrics = run_recipe("multi30k-transformer",
                         {"max_train_pairs": 1000, "max_eval_pairs": 16, "max_steps": 12, "warmup_steps": 4,
                          "vocab_size": 400, "d_model": 32, "num_heads": 2, "num_layers": 1, "intermediate_dim": 64,
                          "batch_size": 100, "beam_size": 3},
                         run_dir=tmp_path)
    assert metrics["steps"] == 12 and metrics["target_vocab"] <= 400
    assert metrics["val_loss"] < math.log(metrics["target_vocab"])          # learned something in 12 steps
    for label in ("greedy", "beam"):
        assert 0.0 <= metrics[f"test_bleu_{label}"] <= 100.0
        lines = (tmp_path / f"test_{label}.de").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 16 and all(isinstance(line, str) for line in lines)
    model = translation_model(TranslationConfig(d_model=32, num_heads=2, num_layers=1, intermediate_dim=64),
                              subword.SubwordTokenizer.load(tmp_path / "subwords.en.model"),
                              subword.SubwordTokenizer.load(tmp_path / "subwords.de.model"))
    model.load_weights(tmp_path / "model.dz")
    assert len(model.translate(["A man rides a bike.", "Two dogs."], beam_size=2)) == 2


def test_multi30k_gru_recipe_slice_and_reload(tmp_path, real_dataset):
    """`deepzen train` runs the GRU-attention recipe on a slice of the real data; its run folder translates."""
    pytest.importorskip("sentencepiece")
    pytest.importorskip("sacrebleu")
    from deepzen import cli
    from deepzen.text.generation_recipes import predict_translations

    real_dataset("multi30k")
    settings = {"max_train_pairs": 1000, "max_eval_pairs": 16, "max_steps": 12, "warmup_steps": 4,
                "vocab_size": 400, "d_model": 32, "units": 32, "batch_size": 100, "beam_size": 3}
    run_dir = tmp_path / "run"
    assert cli.main(["train", "multi30k-gru-attention", "--run-dir", str(run_dir),
                     *(arg for key, value in settings.items() for arg in ("--set", f"{key}={value}"))]) == 0
    bleu = json.loads((run_dir / "bleu.json").read_text())
    assert 0.0 <= bleu["test_bleu_greedy"] <= 100.0 and 0.0 <= bleu["test_bleu_beam"] <= 100.0
    curve = (run_dir / "curve.csv").read_text().splitlines()
    steps, _, _, val_loss = curve[-1].split(",")
    assert int(steps) == 12 and float(val_loss) < math.log(400)           # learned something in 12 steps
    sentences = ["A man rides a bike.", "Two dogs play in the snow."]
    translations = predict_translations(run_dir, sentences)
    assert [row["input"] for row in translations] == sentences
    assert all(isinstance(row["translation"], str) for row in translations)
