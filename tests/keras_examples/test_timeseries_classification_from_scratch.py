"""keras.io examples/timeseries/timeseries_classification_from_scratch.py (FordA), imports changed.

FordA (UCR archive) is not in this project's data and there is no network here, so ``readucr`` below makes a
synthetic stand-in with its form: z-normalized univariate series of length 64 (FordA: 500), labels -1/1,
the classes telling apart by a burst of a higher frequency at a random place. Budget: 400 series, 6 epochs of batches of 8
(the example: 3,601 series, up to 500 epochs of batches of 32 with early stopping): BatchNormalization's moving
statistics (Keras's momentum 0.99, as in the example) need a few hundred steps before the checkpoint that
monitors val_loss sees the model learn, so the budget keeps the steps and cuts the work per step. The plots
are left out.
"""

import numpy as np

import deepzen as keras


def readucr(filename, n=400, length=64, seed=0):
    rng = np.random.default_rng(seed + (filename == "FordA_TEST.tsv"))
    y = rng.choice([-1, 1], n)
    t = np.arange(length)
    x = np.sin(2 * np.pi * t[None, :] / rng.uniform(20, 40, (n, 1))) + 0.5 * rng.normal(size=(n, length))
    for row, label in enumerate(y):
        if label == 1:
            start = rng.integers(0, length - 32)
            x[row, start:start + 32] += 1.5 * np.sin(2 * np.pi * np.arange(32) / 4)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    return x, y.astype(int)


def test_timeseries_classification_from_scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example writes best_model.h5 into the working folder
    x_train, y_train = readucr("FordA_TRAIN.tsv")  # deepzen: FordA not available; synthetic stand-in (module docstring)
    x_test, y_test = readucr("FordA_TEST.tsv")  # deepzen: as above

    classes = np.unique(np.concatenate((y_train, y_test), axis=0))

    x_train = x_train.reshape((x_train.shape[0], x_train.shape[1], 1))
    x_test = x_test.reshape((x_test.shape[0], x_test.shape[1], 1))

    num_classes = len(np.unique(y_train))

    idx = np.random.permutation(len(x_train))
    x_train = x_train[idx]
    y_train = y_train[idx]

    y_train[y_train == -1] = 0
    y_test[y_test == -1] = 0

    keras.config.set_image_data_format("channels_last")  # deepzen: channels_first is deepzen's default; the example's (length, 1) series need Keras's layout

    def make_model(input_shape):
        input_layer = keras.layers.Input(input_shape)

        conv1 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(input_layer)
        conv1 = keras.layers.BatchNormalization()(conv1)
        conv1 = keras.layers.ReLU()(conv1)

        conv2 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(conv1)
        conv2 = keras.layers.BatchNormalization()(conv2)
        conv2 = keras.layers.ReLU()(conv2)

        conv3 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(conv2)
        conv3 = keras.layers.BatchNormalization()(conv3)
        conv3 = keras.layers.ReLU()(conv3)

        gap = keras.layers.GlobalAveragePooling1D()(conv3)

        output_layer = keras.layers.Dense(num_classes, activation="softmax")(gap)

        return keras.models.Model(inputs=input_layer, outputs=output_layer)

    model = make_model(input_shape=x_train.shape[1:])
    keras.utils.plot_model(model, show_shapes=True)

    epochs = 6  # budget: 500 in the example
    batch_size = 8  # budget: 32 in the example (see the module docstring)

    callbacks = [
        keras.callbacks.ModelCheckpoint("best_model.h5", save_best_only=True, monitor="val_loss"),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=20, min_lr=0.0001),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=50, verbose=1),
    ]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        callbacks=callbacks,
        validation_split=0.2,
        verbose=1,
    )

    model = keras.models.load_model("best_model.h5")

    y_pred = model.predict(x_test).argmax(axis=1)

    accuracy = (y_pred == y_test).mean()  # deepzen: the example uses sklearn.metrics.accuracy_score; the same number
    print("Test accuracy", accuracy)

    assert history.history["loss"][-1] < history.history["loss"][0]
    assert accuracy > 0.8  # chance is 0.5
    assert (tmp_path / "model.png").is_file()
