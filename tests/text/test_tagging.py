import doctest
import itertools

import numpy as np
import pytest
import torch

import deepzen
from deepzen.data.text_datasets import conll_entities, entity_f1, to_bioes
from deepzen.layers.crf import CRFLoss
from deepzen.losses import SparseCategoricalCrossentropy
from deepzen.text import recipes as text_recipes  # noqa: F401 - registers conll-bilstm-crf
from deepzen.text import tagging
from deepzen.text.tagging import EntityF1, SequenceTagger, TaggingVocabulary, evaluate_entities, predict_tags

SENTENCES = [["EU", "rejects", "German", "call", "in", "1996"], ["Peter", "Blackburn"],
             ["BRUSSELS", "1996-08-22"], ["German", "call"]]
TAGS = [["B-ORG", "O", "B-MISC", "O", "O", "O"], ["B-PER", "I-PER"], ["B-LOC", "O"], ["B-MISC", "O"]]


def small_tagger(vocabulary, **options):
    torch.manual_seed(0)
    settings = dict(word_dim=6, char_dim=4, char_units=3, units=5, dropout=0.0)
    settings.update(options)
    return SequenceTagger(len(vocabulary.words), len(vocabulary.chars), len(vocabulary.tags), **settings).eval()


def test_docstring_examples():
    assert doctest.testmod(tagging).failed == 0


def test_vocabulary_encodes_words_characters_and_tags():
    vocabulary = TaggingVocabulary.build(SENTENCES, TAGS, max_word_length=8)
    (words, chars), tags = vocabulary.encode(SENTENCES, TAGS)
    assert words.shape == (4, 6) and chars.shape == (4, 6, 8) and tags.shape == (4, 6)
    assert vocabulary.words.tokens[words[0, 5]] == "0000" and vocabulary.words.tokens[words[2, 1]] == "0000-00-00"
    assert vocabulary.chars.decode(chars[1, 0, :5]) == list("Peter") and chars[1, 0, 5:].eq(0).all()
    assert vocabulary.chars.decode(chars[2, 1]) == list("1996-08-")  # cut at max_word_length
    assert words[1, 2:].eq(0).all() and chars[1, 2:].eq(0).all() and tags[1, 2:].eq(-100).all()
    assert vocabulary.decode(tags) == TAGS and vocabulary.tags.tokens[0] == "O"
    # Frequency order: the words seen once in training are exactly the ids from singleton_start on.
    counts = {"German": 2, "call": 2, "0000": 1}
    seen_once = [w for w in vocabulary.words.tokens[2:] if counts.get(w, 1) == 1]
    assert vocabulary.words.tokens[vocabulary.singleton_start:] == seen_once
    assert vocabulary.words.tokens[2:vocabulary.singleton_start] == ["German", "call"]
    assert vocabulary.words["Unseen"] == 1 and vocabulary.chars["\u00e9"] == 1
    with pytest.raises(ValueError, match="not among the tagger's tags"):
        vocabulary.encode([["x"]], [["I-LOC"]])
    again = TaggingVocabulary.from_config(vocabulary.get_config())
    assert torch.equal(again.encode(SENTENCES)[0][1], chars) and again.singleton_start == vocabulary.singleton_start


@pytest.mark.parametrize("char_encoder", ["lstm", "cnn", "none"])
def test_emissions_ignore_padding(char_encoder):
    vocabulary = TaggingVocabulary.build(SENTENCES, TAGS)
    tagger = small_tagger(vocabulary, char_encoder=char_encoder)
    (words, chars), _ = vocabulary.encode(SENTENCES)
    inputs = (words, chars) if char_encoder != "none" else (words,)
    emissions = tagger(*inputs)
    assert emissions.shape == (4, 6, len(vocabulary.tags))
    padded = [torch.nn.functional.pad(t, (0, 3) if t.dim() == 2 else (0, 5, 0, 3)) for t in inputs]  # longer T, W
    torch.testing.assert_close(tagger(*padded)[:, :6], emissions)
    for i, sentence in enumerate(SENTENCES):  # each sentence alone, no padding at all
        (alone_words, alone_chars), _ = vocabulary.encode([sentence])
        alone = tagger(alone_words, alone_chars if char_encoder != "none" else None)
        torch.testing.assert_close(alone[0], emissions[i, :len(sentence)])


def test_character_lstm_feature_is_the_final_states_of_each_word():
    vocabulary = TaggingVocabulary.build(SENTENCES, TAGS)
    tagger = small_tagger(vocabulary)
    (words, chars), _ = vocabulary.encode(SENTENCES)
    features = tagger.char_features(chars, words != 0)  # (N, T, 6)
    lstm = tagger.char_lstm.layer if hasattr(tagger.char_lstm, "layer") else tagger.char_lstm
    token = chars[1, 1][chars[1, 1] != 0]  # "Blackburn"
    vectors = tagger.char_embedding(token).unsqueeze(0)
    forward = lstm.rnn(vectors)[1][0]  # (2, 1, 3): final h of each direction on the unpadded word
    torch.testing.assert_close(features[1, 1], torch.cat([forward[0, 0], forward[1, 0]]))
    assert features[1, 2:].eq(0).all()


def brute_force_best(crf, emissions):
    """The best path of one sentence by enumerating every tag sequence (emissions (L, K))."""
    transitions, start, end = crf._constrained_parameters()
    best, best_score = None, -float("inf")
    for path in itertools.product(range(emissions.shape[1]), repeat=emissions.shape[0]):
        score = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        score = score + sum(transitions[a, b] for a, b in zip(path, path[1:]))
        if score > best_score:
            best, best_score = list(path), score
    return best


def test_predict_decodes_with_the_crf():
    sentences, tags = [["a", "b", "c"], ["b", "a"], ["c"]], [["B-X", "I-X", "O"], ["O", "B-X"], ["I-X"]]
    vocabulary = TaggingVocabulary.build(sentences, tags)
    tagger = small_tagger(vocabulary)
    with torch.no_grad():  # strong transition scores, so the best path differs from per-word argmax
        tagger.crf.transitions.copy_(torch.randn(3, 3, generator=torch.Generator().manual_seed(2)) * 3)
    (words, chars), _ = vocabulary.encode(sentences)
    predicted = tagger.predict((words, chars))
    emissions = tagger(words, chars)
    for i, sentence in enumerate(sentences):
        assert predicted[i, :len(sentence)].tolist() == brute_force_best(tagger.crf, emissions[i, :len(sentence)])
        assert predicted[i, len(sentence):].eq(-100).all()
    assert not torch.equal(predicted, emissions.argmax(-1).masked_fill(words == 0, -100))
    as_numpy = tagger.predict((words.numpy(), chars.numpy()), batch_size=2)
    assert isinstance(as_numpy, np.ndarray) and (as_numpy == predicted.numpy()).all()


def test_predict_without_crf_is_the_argmax_and_default_losses_follow_the_output():
    vocabulary = TaggingVocabulary.build(SENTENCES, TAGS)
    tagger = small_tagger(vocabulary, crf=False)
    (words, chars), _ = vocabulary.encode(SENTENCES)
    expected = tagger(words, chars).argmax(-1).masked_fill(words == 0, -100)
    assert torch.equal(tagger.predict((words, chars), batch_size=3), expected)
    assert isinstance(tagger.default_loss(), SparseCategoricalCrossentropy)
    assert isinstance(small_tagger(vocabulary).default_loss(), CRFLoss)


def valid_iobes(row):
    for previous, current in zip(["O", *row], [*row, "O"]):
        if previous[0] in "BI":  # inside a chunk: only I-X or E-X of the same type may follow
            if current[0] not in "IE" or current[2:] != previous[2:]:
                return False
        elif current[0] not in "OBS":
            return False
    return True


def test_scheme_constraints_keep_predictions_valid():
    vocabulary = TaggingVocabulary.build(SENTENCES, [to_bioes(t) for t in TAGS])
    tagger = small_tagger(vocabulary, tags=vocabulary.tags.tokens, scheme="IOBES")
    (words, chars), _ = vocabulary.encode(SENTENCES * 4)
    tagger(words, chars)  # builds the lazy layers
    with torch.no_grad():  # large random emissions: their argmax breaks the scheme
        tagger.emissions.weight.normal_(0, 5.0)
    emissions = tagger(words, chars)
    assert not all(map(valid_iobes, vocabulary.decode(emissions.argmax(-1).masked_fill(words == 0, -100))))
    assert all(map(valid_iobes, vocabulary.decode(tagger.predict((words, chars)))))


def test_singletons_become_unknown_only_while_training():
    vocabulary = TaggingVocabulary.build(SENTENCES, TAGS)
    tagger = small_tagger(vocabulary, singleton_start=vocabulary.singleton_start, singleton_unk_rate=1.0)
    (words, chars), _ = vocabulary.encode(SENTENCES)
    unknown = words.masked_fill(words >= vocabulary.singleton_start, 1)
    tagger.train()  # dropout is 0: training mode differs only by the replacement
    torch.testing.assert_close(tagger(words, chars), tagger.eval()(unknown, chars))
    assert not torch.allclose(tagger(words, chars), tagger(unknown, chars))


def toy_corpus(n=60, seed=0):
    """Capitalised words are persons, words ending in -ia places; tags in IOB1 (CoNLL-2003's scheme)."""
    rng = np.random.default_rng(seed)
    persons, places, others = ["Anna", "Bert", "Carl", "Dora"], ["Italia", "Russia", "Austria"], ["met", "in", "the"]
    sentences, tags = [], []
    for _ in range(n):
        sentence, sentence_tags = [], []
        for _ in range(rng.integers(2, 7)):
            kind = rng.integers(3)
            words, tag = ((persons, "I-PER"), (places, "I-LOC"), (others, "O"))[kind]
            sentence.append(str(rng.choice(words)))
            sentence_tags.append(tag)
        sentences.append(sentence)
        tags.append(sentence_tags)
    return sentences, tags


@pytest.mark.parametrize("crf", [True, False])
def test_tagger_learns_a_toy_task_and_is_scored_by_conlleval(crf, tmp_path, one_thread):
    sentences, gold_iob1 = toy_corpus()
    train_tags = [to_bioes(tags) for tags in gold_iob1]  # the model learns IOBES, is scored against IOB1
    vocabulary = TaggingVocabulary.build(sentences, train_tags)
    tagger = small_tagger(vocabulary, crf=crf, units=16, tags=vocabulary.tags.tokens if crf else None,
                          scheme="IOBES" if crf else None)
    tagger.compile(optimizer=deepzen.optimizers.Adam(learning_rate=0.05))
    (words, chars), tags = vocabulary.encode(sentences, train_tags)
    history = tagger.fit((words, chars), tags, batch_size=20, epochs=15, verbose=0,
                         callbacks=[EntityF1(vocabulary, sentences, gold_iob1)])
    assert history.history["loss"][-1] < history.history["loss"][0] / 5
    assert history.history["val_f1"][-1] == 1.0
    scores = evaluate_entities(tagger, vocabulary, sentences, gold_iob1)
    assert scores["f1"] == 1.0 and scores["support"] == entity_f1(gold_iob1, gold_iob1)["support"]
    # Against gold with one entity removed, precision drops by exactly that one prediction (conlleval counts).
    changed = [list(t) for t in gold_iob1]
    _, start, end = conll_entities(changed[0])[0]
    changed[0][start:end] = ["O"] * (end - start)
    predicted = predict_tags(tagger, vocabulary, sentences)
    scores = evaluate_entities(tagger, vocabulary, sentences, changed)
    assert scores == entity_f1(changed, predicted)
    n_predicted = sum(len(conll_entities(tags)) for tags in predicted)
    assert scores["recall"] == 1.0 and scores["precision"] == pytest.approx(1 - 1 / n_predicted)
    # A saved tagger predicts the same after loading.
    tagger.save(tmp_path / "tagger.dz")
    loaded = deepzen.load_model(tmp_path / "tagger.dz")
    assert isinstance(loaded, SequenceTagger)
    assert torch.equal(loaded.predict((words, chars)), tagger.predict((words, chars)))


def test_conll_recipe_on_a_slice_beats_a_floor(real_dataset, tmp_path, one_thread):
    """2000 training sentences, 2 epochs, the first 500 test sentences: measured F1 0.725 (16 s of CPU)."""
    real_dataset("conll2003")
    from deepzen.recipes import run_recipe

    metrics = run_recipe("conll-bilstm-crf", {"epochs": 2, "max_train_sentences": 2000, "max_eval_sentences": 500,
                                              "batch_size": 16, "learning_rate": 0.005, "verbose": 0,
                                              "weight_average": 0.0},  # 250 steps: too few to average
                         run_dir=tmp_path)
    assert metrics["train_sentences"] == 2000 and metrics["epochs_run"] == 2
    assert metrics["test_f1"] > 0.60
    assert (tmp_path / "tagger.dz").is_file() and (tmp_path / "vocabulary.json").is_file()
