"""The text models rebuild from a model file alone (``load_model``), and the generation recipes load them so."""

import json

import pytest
import torch

import deepzen
from deepzen.text.generation_recipes import (PREDICT_LENGTH, LanguageModelConfig, TranslationConfig, load_translator,
                                             predict_continuations, predict_translations)
from deepzen.text.language_model import CharLSTM, TransformerLM, char_vocab
from deepzen.text.translation import RNNTranslator, TransformerTranslator
from deepzen.training.serialization import load_model

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
VOCAB = char_vocab(TEXT)

LANGUAGE_MODELS = {
    "char-lstm": lambda: CharLSTM(VOCAB, embedding_dim=8, units=16, num_layers=2, dropout=0.1, name="poet"),
    "transformer-lm": lambda: TransformerLM(VOCAB, context=16, d_model=16, num_heads=2, num_layers=2,
                                            intermediate_dim=24, dropout=0.1),
}
TRANSLATORS = {
    "gru-bahdanau": lambda: RNNTranslator(13, 17, embedding_dim=8, units=12, dropout=0.1),
    "lstm-luong": lambda: RNNTranslator(13, 17, embedding_dim=8, units=12, cell="lstm", attention="luong",
                                        num_layers=2, dropout=0.2, eos_index=5),
    "transformer": lambda: TransformerTranslator(13, 17, d_model=16, num_heads=2, num_encoder_layers=1,
                                                 num_decoder_layers=2, intermediate_dim=24, dropout=0.1, max_len=40,
                                                 norm_first=False),
}


def saved_and_loaded(model, example, tmp_path):
    model.build_for(example)
    model.save(tmp_path / "model.dz")
    return load_model(tmp_path / "model.dz")


@pytest.mark.parametrize("kind", sorted(LANGUAGE_MODELS))
def test_language_models_round_trip_through_a_file(kind, tmp_path):
    torch.manual_seed(0)
    model = LANGUAGE_MODELS[kind]()
    loaded = saved_and_loaded(model, torch.randint(0, len(VOCAB), (2, 10)), tmp_path)
    assert type(loaded) is type(model) and loaded.name == model.name
    assert loaded.get_config() == model.get_config() and loaded.vocab.tokens == VOCAB.tokens
    model.eval(), loaded.eval()
    ids = torch.randint(0, len(VOCAB), (3, 12))
    assert torch.equal(loaded(ids), model(ids))
    assert loaded.generate("All:", 30, temperature=0.9, seed=4) == model.generate("All:", 30, temperature=0.9, seed=4)


@pytest.mark.parametrize("kind", sorted(TRANSLATORS))
def test_translators_round_trip_through_a_file(kind, tmp_path):
    torch.manual_seed(0)
    model = TRANSLATORS[kind]()
    loaded = saved_and_loaded(model, (torch.randint(4, 13, (2, 7)), torch.randint(4, 17, (2, 5))), tmp_path)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    model.eval(), loaded.eval()
    source = torch.cat((torch.randint(4, 13, (3, 9)), torch.zeros(3, 2, dtype=torch.long)), dim=1)  # (3, 11) padded
    target_in = torch.randint(4, 17, (3, 6))
    assert torch.equal(loaded(source, target_in), model(source, target_in))
    assert torch.equal(loaded.generate(source, beam_size=3, max_len=8), model.generate(source, beam_size=3, max_len=8))


def test_compile_settings_are_restored_with_the_model(tmp_path):
    torch.manual_seed(0)
    model = LANGUAGE_MODELS["char-lstm"]()
    model.compile(optimizer="adam", loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    x, y = torch.randint(0, len(VOCAB), (2, 4, 10)).unbind(0)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "model.dz")
    loaded = load_model(tmp_path / "model.dz")
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)


def run_folder(tmp_path, recipe, model, tokenizers=()):
    """A run folder as the recipe leaves it (default config): config.json, model.dz and the subword models."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"recipe": recipe, "config": {}}), encoding="utf-8")
    model.save(run / "model.dz")
    for language, tokenizer in tokenizers:
        tokenizer.save(run / f"subwords.{language}.model")
    return run


def test_language_model_recipe_predicts_with_the_saved_model(tmp_path):
    torch.manual_seed(0)
    model = LANGUAGE_MODELS["char-lstm"]()
    model.build_for(torch.randint(0, len(VOCAB), (2, 10)))
    run = run_folder(tmp_path, "shakespeare-char-lstm", model)
    [prediction] = predict_continuations(run, ["All"])
    config = LanguageModelConfig()
    assert prediction["text"] == model.generate("All", PREDICT_LENGTH, config.temperature, seed=config.seed)


def test_translation_recipe_predicts_with_the_saved_model(tmp_path):
    pytest.importorskip("sentencepiece")
    from deepzen.text.subword import SubwordTokenizer

    english = ["A man rides a bike.", "Two dogs play in the snow.", "A woman reads a book."] * 30
    german = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch."] * 30
    source, target = SubwordTokenizer.train(english, vocab_size=60), SubwordTokenizer.train(german, vocab_size=60)
    torch.manual_seed(0)
    model = TransformerTranslator(len(source), len(target), d_model=16, num_heads=2, num_encoder_layers=1,
                                  num_decoder_layers=1, intermediate_dim=24, source_tokenizer=source,
                                  target_tokenizer=target)
    model.build_for((torch.randint(4, len(source), (2, 7)), torch.randint(4, len(target), (2, 5))))
    run = run_folder(tmp_path, "multi30k-transformer", model, [("en", source), ("de", target)])
    loaded, _ = load_translator(run)
    assert loaded.source_tokenizer.model_proto == source.model_proto
    assert loaded.target_tokenizer.model_proto == target.model_proto
    sentences = ["Two dogs read.", "A man plays in the snow with a bike."]
    config = TranslationConfig()
    expected = model.translate(sentences, beam_size=config.beam_size, length_penalty=config.length_penalty)
    assert [p["translation"] for p in predict_translations(run, sentences)] == expected
