"""keras.io examples/nlp/bidirectional_lstm_imdb.py ("Bidirectional LSTM on IMDB"), imports changed.

IMDB is not in this project's data (see shared/data/README.md), so ``imdb_load_data`` below makes a synthetic
stand-in with IMDB's form: variable-length lists of word indices below ``num_words``, labels 0/1, where each
positive review holds a few words from one small "sentiment" vocabulary and each negative review from
another. Budget: 512 reviews of 15-40 words, a 2,000-word vocabulary, maxlen 40 and 2 epochs (the example: 25,000
reviews, 20,000 words, maxlen 200).
"""

import numpy as np

import deepzen as keras
from deepzen import layers


def imdb_load_data(num_words, n=512, seed=0):
    rng = np.random.default_rng(seed)

    def reviews(count):
        labels = rng.integers(0, 2, count)
        texts = []
        for label in labels:
            words = rng.integers(200, num_words, rng.integers(15, 41))
            cues = rng.integers(1, 100, 4) + 100 * label  # 1..99 negative, 101..199 positive
            words[rng.choice(len(words), 4, replace=False)] = cues
            texts.append(list(words))
        return texts, labels

    return reviews(n), reviews(n // 4)


def test_bidirectional_lstm_imdb():
    max_features = 2000  # budget: the example considers the top 20k words
    maxlen = 40  # budget: the example keeps the first 200 words of each review

    # Input for variable-length sequences of integers
    inputs = keras.Input(shape=(None,), dtype="int32")
    # Embed each integer in a 128-dimensional vector
    x = layers.Embedding(max_features, 128)(inputs)
    # Add 2 bidirectional LSTMs
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(64))(x)
    # Add a classifier
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.summary()

    (x_train, y_train), (x_val, y_val) = imdb_load_data(num_words=max_features)  # deepzen: IMDB not available here; synthetic stand-in (module docstring)
    print(len(x_train), "Training sequences")
    print(len(x_val), "Validation sequences")
    # Use pad_sequence to standardize sequence length:
    # this will truncate sequences longer than 200 words and zero-pad sequences shorter than 200 words.
    x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)  # deepzen: no keras.preprocessing.sequence module; Keras 3's keras.utils.pad_sequences
    x_val = keras.utils.pad_sequences(x_val, maxlen=maxlen)  # deepzen: as above

    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=2, validation_data=(x_val, y_val))

    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.75  # chance is 0.5
