import doctest
import math

import pytest
import torch

import deepzen
from deepzen.text import language_model
from deepzen.text.decoding import greedy_search
from deepzen.text.generation_recipes import TrainingBudget
from deepzen.text.language_model import CharLSTM, TextWindows, TransformerLM, char_vocab, consecutive_windows

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


def small_model(kind, vocab, context=16):
    if kind == "lstm":
        return CharLSTM(vocab, embedding_dim=8, units=16, num_layers=2, dropout=0.0)
    return TransformerLM(vocab, context=context, d_model=16, num_heads=2, num_layers=2, dropout=0.0)


def test_doctests():
    assert doctest.testmod(language_model).failed == 0


def test_char_vocab_orders_by_frequency_and_rejects_unknown_characters():
    vocab = char_vocab("abbccc")
    assert vocab.tokens == ["c", "b", "a"]
    model = CharLSTM(vocab, units=4)
    with pytest.raises(ValueError, match=r"\['z'\]"):
        model.encode_prompt("abz")


def test_text_windows_are_shifted_slices_of_the_stream():
    ids = torch.arange(100) * 3
    batches = list(TextWindows(ids, seq_len=10, batch_size=4, steps=3, seed=1))
    assert len(batches) == 3
    for x, y in batches:
        assert x.shape == y.shape == (4, 10)
        starts = x[:, 0] // 3
        assert torch.equal(x, ids[starts[:, None] + torch.arange(10)])
        assert torch.equal(y, ids[starts[:, None] + 1 + torch.arange(10)])


def test_consecutive_windows_cover_the_stream_in_order():
    ids = torch.arange(23)
    x, y = consecutive_windows(ids, 5)
    assert x.shape == (4, 5)
    assert torch.equal(x.flatten(), ids[:20])
    assert torch.equal(y.flatten(), ids[1:21])


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_incremental_steps_equal_the_full_forward_pass(kind):
    torch.manual_seed(0)
    vocab = char_vocab(TEXT)
    model = small_model(kind, vocab).eval()
    ids = torch.randint(0, len(vocab), (3, 12))
    expected = torch.log_softmax(model(ids), dim=-1)                        # (3, 12, V)
    log_probs, state = model.step(ids[:, :4], None)                         # a 4-token prompt at once
    steps = [log_probs]
    for t in range(5, 13):
        log_probs, state = model.step(ids[:, :t], state)
        steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, 1), expected[:, 3:], atol=1e-5, rtol=1e-5)


def test_transformer_slides_its_window_past_the_context():
    torch.manual_seed(0)
    vocab = char_vocab(TEXT)
    model = small_model("transformer", vocab, context=6).eval()
    ids = torch.randint(0, len(vocab), (2, 9))
    state = None
    for t in range(1, 10):
        log_probs, state = model.step(ids[:, :t], state)
    window = ids[:, -6:]                                                    # the last 6 tokens
    torch.testing.assert_close(log_probs, torch.log_softmax(model(window)[:, -1], dim=-1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_generation_length_prompt_and_determinism_under_a_seed(kind):
    torch.manual_seed(0)
    vocab = char_vocab(TEXT)
    model = small_model(kind, vocab, context=64)
    text = model.generate("Speak", length=30, seed=7)
    assert text.startswith("Speak") and len(text) == 35
    assert set(text) <= set(vocab.tokens)
    assert model.generate("Speak", length=30, seed=7) == text
    others = {model.generate("Speak", length=30, seed=seed) for seed in range(8, 12)}
    assert others != {text}                                                 # the seed matters
    assert model.training                                                   # generation restores the mode


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_temperature_towards_zero_is_greedy(kind):
    torch.manual_seed(1)
    vocab = char_vocab(TEXT)
    model = small_model(kind, vocab, context=64).eval()
    prompt = model.encode_prompt("All:")
    model(prompt)                                        # builds the layers
    with torch.no_grad():                                # a peaked model: no near-ties between tokens
        model.output_layer.weight.mul_(30.0)
    greedy = greedy_search(model.step, prompt, 25)[0]
    assert torch.equal(model.generate_ids(prompt, 25, temperature=0), greedy)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(model.generate_ids(prompt, 25, temperature=1e-4, generator=generator), greedy)
    assert model.generate("All:", 25, temperature=0) == "All:" + "".join(vocab.decode(greedy[0]))


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_learns_tiny_shakespeare_slice(kind, real_dataset):
    """200 steps on 200k characters bring the held-out loss from ln(65) = 4.17 to about 2.3 nats/char."""
    from deepzen.data.text_datasets import load_tinyshakespeare

    text = load_tinyshakespeare(real_dataset("tinyshakespeare"))
    vocab = char_vocab(text)
    ids = torch.tensor(vocab.encode(text[:220_000]))
    deepzen.seed(0)
    if kind == "lstm":
        model = CharLSTM(vocab, embedding_dim=32, units=128, num_layers=1, dropout=0.0)
    else:
        model = TransformerLM(vocab, context=64, d_model=64, num_heads=4, num_layers=2, dropout=0.0)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=1e-2),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    x_val, y_val = consecutive_windows(ids[200_000:], 64)
    before = model.evaluate(x_val, y_val, verbose=0)
    model.fit(TextWindows(ids[:200_000], 64, 32, steps=200), epochs=1, verbose=0,
              callbacks=[TrainingBudget(1e-2, minutes=0, max_steps=200, warmup_steps=10)])
    after = model.evaluate(x_val, y_val, verbose=0)
    assert before > math.log(len(vocab)) - 0.3
    assert after < 2.6


def test_training_budget_schedule_and_stop():
    model = deepzen.Model(torch.nn.Linear(2, 1))
    model.compile(optimizer=deepzen.optimizers.SGD(learning_rate=1.0), loss="mse")
    budget = TrainingBudget(learning_rate=1.0, minutes=0, max_steps=10, warmup_steps=2, min_fraction=0.1)
    rates = []

    class Record(deepzen.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            rates.append(self.model.optimizer.param_groups[0]["lr"])

    model.fit(torch.zeros(64, 2), torch.zeros(64, 1), batch_size=2, epochs=5, verbose=0, callbacks=[budget, Record()])
    assert len(rates) == 10 and budget.steps == 10
    expected = [min(1.0, (s + 1) / 2) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / 10))) for s in range(10)]
    assert rates == pytest.approx(expected)
    assert [point["steps"] for point in budget.curve] == [10]


@pytest.mark.parametrize("recipe, sizes", [
    ("shakespeare-char-lstm", {"embedding_dim": 8, "units": 16, "num_layers": 1}),
    ("shakespeare-char-transformer", {"d_model": 16, "num_heads": 2, "num_layers": 1}),
])
def test_language_model_recipe_on_a_user_text_file(tmp_path, recipe, sizes):
    from deepzen.recipes import run_recipe

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 40, encoding="utf-8")
    metrics = run_recipe(recipe, {"data": str(corpus), "max_steps": 6, "eval_every": 3, "seq_len": 16, "batch_size": 8,
                                  "sample_length": 20, "prompt": "All", **sizes},
                         run_dir=tmp_path / "run")
    assert metrics["steps"] == 6 and metrics["vocab_size"] == len(set(TEXT))
    assert metrics["val_bits_per_char"] == pytest.approx(metrics["val_loss"] / math.log(2))
    sample = (tmp_path / "run" / "sample.txt").read_text(encoding="utf-8")
    assert sample.startswith("All") and len(sample) == 23
    curve = (tmp_path / "run" / "curve.csv").read_text().splitlines()
    assert curve[0] == "steps,seconds,loss,val_loss" and len(curve) == 3
