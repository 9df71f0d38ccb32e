"""keras.io guides/training_with_built_in_methods.py ("Training & evaluation with the built-in methods"),
imports changed; the sections that run on Keras 3 with NumPy data: the end-to-end example, compile, custom
losses (function and Loss subclass), a custom Metric, validation_split, class and sample weights, EarlyStopping,
a LossHistory callback, ModelCheckpoint (best-only and every N batches). Budget: 2,000 MNIST images (the
guide: 60,000) split 1,500 / 500 (the guide: 50,000 / 10,000), and fewer epochs where the guide trains 20.

Left out: the tf.data and PyDataset sections, add_loss/add_metric in a layer's call (Layer.call and add_loss
of issue item 2), and the learning-rate schedule section (``keras.optimizers.schedules.ExponentialDecay``:
deepzen has no ``optimizers.schedules`` yet, issue item 11).
"""

import numpy as np
import torch

import deepzen as keras
from deepzen import layers


def get_uncompiled_model():
    inputs = keras.Input(shape=(784,), name="digits")
    x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    return model


def get_compiled_model():
    model = get_uncompiled_model()
    model.compile(
        optimizer="rmsprop",
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    return model


def custom_mean_squared_error(y_true, y_pred):
    return torch.mean(torch.square(y_true - y_pred))  # deepzen: no keras.ops; ops.mean(ops.square(...)) in the guide


class CustomMSE(keras.losses.Loss):
    def __init__(self, regularization_factor=0.1, name="custom_mse"):
        super().__init__(name=name)
        self.regularization_factor = regularization_factor

    def call(self, y_true, y_pred):
        mse = torch.mean(torch.square(y_true - y_pred))  # deepzen: ops.mean/ops.square in the guide
        reg = torch.mean(torch.square(0.5 - y_pred))  # deepzen: as above
        return mse + reg * self.regularization_factor


class CategoricalTruePositives(keras.metrics.Metric):
    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_weight(name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = torch.reshape(torch.argmax(y_pred, axis=1), shape=(-1, 1))  # deepzen: ops.reshape/ops.argmax in the guide
        values = y_true.to(torch.int32) == y_pred.to(torch.int32)  # deepzen: ops.cast in the guide
        values = values.to(torch.float32)  # deepzen: ops.cast in the guide
        if sample_weight is not None:
            sample_weight = sample_weight.to(torch.float32)  # deepzen: ops.cast in the guide
            values = torch.multiply(values, sample_weight)  # deepzen: ops.multiply in the guide
        self.true_positives.assign_add(torch.sum(values))  # deepzen: ops.sum in the guide

    def result(self):
        return self.true_positives

    def reset_state(self):
        # The state of the metric will be reset at the start of each epoch.
        self.true_positives.assign(0.0)


class LossHistory(keras.callbacks.Callback):
    def on_train_begin(self, logs):
        self.per_batch_losses = []

    def on_batch_end(self, batch, logs):
        self.per_batch_losses.append(logs.get("loss"))


def test_training_with_built_in_methods(mnist_load_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the guide writes its checkpoints into the working folder
    inputs = keras.Input(shape=(784,), name="digits")
    x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)

    (x_train, y_train), (x_test, y_test) = mnist_load_data()  # deepzen: no keras.datasets; $DEEPZEN_DATA/mnist, sliced
    # Preprocess the data (these are NumPy arrays)
    x_train = x_train.reshape(-1, 784).astype("float32") / 255  # budget: reshape(60000, 784) in the guide
    x_test = x_test.reshape(-1, 784).astype("float32") / 255  # budget: reshape(10000, 784) in the guide
    y_train = y_train.astype("float32")
    y_test = y_test.astype("float32")

    # Reserve 500 samples for validation
    x_val = x_train[-500:]  # budget: 10,000 in the guide
    y_val = y_train[-500:]
    x_train = x_train[:-500]
    y_train = y_train[:-500]

    model.compile(
        optimizer=keras.optimizers.RMSprop(),  # Optimizer
        # Loss function to minimize
        loss=keras.losses.SparseCategoricalCrossentropy(),
        # List of metrics to monitor
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    print("Fit model on training data")
    history = model.fit(
        x_train,
        y_train,
        batch_size=64,
        epochs=2,
        # We pass some validation for
        # monitoring validation loss and metrics
        # at the end of each epoch
        validation_data=(x_val, y_val),
    )
    assert set(history.history) == {"loss", "sparse_categorical_accuracy", "val_loss",
                                    "val_sparse_categorical_accuracy"}
    assert history.history["loss"][-1] < history.history["loss"][0]

    # Evaluate the model on the test data using `evaluate`
    print("Evaluate on test data")
    results = model.evaluate(x_test, y_test, batch_size=128)
    print("test loss, test acc:", results)
    assert results[1] > 0.7  # chance is 0.1

    # Generate predictions (probabilities -- the output of the last layer)
    # on new data using `predict`
    print("Generate predictions for 3 samples")
    predictions = model.predict(x_test[:3])
    print("predictions shape:", predictions.shape)
    assert predictions.shape == (3, 10)

    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    model.compile(
        optimizer="rmsprop",
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )

    model = get_uncompiled_model()
    model.compile(optimizer=keras.optimizers.Adam(), loss=custom_mean_squared_error)
    # We need to one-hot encode the labels to use MSE
    y_train_one_hot = torch.nn.functional.one_hot(torch.as_tensor(y_train).long(), 10).float()  # deepzen: ops.one_hot(y_train, num_classes=10) in the guide
    history = model.fit(x_train, y_train_one_hot, batch_size=64, epochs=1)
    assert np.isfinite(history.history["loss"][0])

    model = get_uncompiled_model()
    model.compile(optimizer=keras.optimizers.Adam(), loss=CustomMSE())
    y_train_one_hot = torch.nn.functional.one_hot(torch.as_tensor(y_train).long(), 10).float()  # deepzen: as above
    history = model.fit(x_train, y_train_one_hot, batch_size=64, epochs=1)
    assert np.isfinite(history.history["loss"][0])

    model = get_uncompiled_model()
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[CategoricalTruePositives()],
    )
    history = model.fit(x_train, y_train, batch_size=64, epochs=3)
    positives = history.history["categorical_true_positives"]
    assert positives[-1] > positives[0]

    model = get_compiled_model()
    model.fit(x_train, y_train, batch_size=64, validation_split=0.2, epochs=1)

    class_weight = {
        0: 1.0,
        1: 1.0,
        2: 1.0,
        3: 1.0,
        4: 1.0,
        # Set weight "2" for class "5",
        # making this class 2x more important
        5: 2.0,
        6: 1.0,
        7: 1.0,
        8: 1.0,
        9: 1.0,
    }
    print("Fit with class weight")
    model = get_compiled_model()
    model.fit(x_train, y_train, class_weight=class_weight, batch_size=64, epochs=1)

    sample_weight = np.ones(shape=(len(y_train),))
    sample_weight[y_train == 5] = 2.0
    print("Fit with sample weight")
    model = get_compiled_model()
    model.fit(x_train, y_train, sample_weight=sample_weight, batch_size=64, epochs=1)

    model = get_compiled_model()
    callbacks = [
        keras.callbacks.EarlyStopping(
            # Stop training when `val_loss` is no longer improving
            monitor="val_loss",
            # "no longer improving" being defined as "no better than 1e-2 less"
            min_delta=1e-2,
            # "no longer improving" being further defined as "for at least 2 epochs"
            patience=2,
            verbose=1,
        )
    ]
    history = model.fit(
        x_train,
        y_train,
        epochs=8,  # budget: 20 in the guide
        batch_size=64,
        callbacks=callbacks,
        validation_split=0.2,
    )
    assert len(history.history["loss"]) <= 8

    model = get_compiled_model()
    loss_history = LossHistory()
    model.fit(x_train, y_train, epochs=1, batch_size=64, callbacks=[loss_history])
    assert len(loss_history.per_batch_losses) == 24 and all(isinstance(v, float) for v in loss_history.per_batch_losses)

    model = get_compiled_model()
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            # Path where to save the model
            # The two parameters below mean that we will overwrite
            # the current checkpoint if and only if
            # the `val_loss` score has improved.
            # The saved model name will include the current epoch.
            filepath="mymodel_{epoch}.keras",
            save_best_only=True,  # Only save a model if `val_loss` has improved.
            monitor="val_loss",
            verbose=1,
        )
    ]
    capsys.readouterr()
    model.fit(x_train, y_train, epochs=2, batch_size=64, callbacks=callbacks, validation_split=0.2)
    assert "Epoch 1: val_loss improved from inf to" in capsys.readouterr().out
    assert (tmp_path / "mymodel_1.keras").is_file()

    # Prepare a directory to store all the checkpoints.
    checkpoint_dir = "./ckpt"
    model = get_compiled_model()
    callbacks = [
        # This callback saves the model every 10 batches (budget: 100 in the guide).
        # We include the training loss in the saved model name.
        keras.callbacks.ModelCheckpoint(filepath=checkpoint_dir + "/model-loss={loss:.2f}.keras", save_freq=10)
    ]
    model.fit(x_train, y_train, epochs=1, batch_size=64, callbacks=callbacks)
    saved = sorted((tmp_path / "ckpt").iterdir())
    assert len(saved) == 2  # after batches 10 and 20 of 24
    restored = keras.models.load_model(saved[-1])
    assert restored.predict(x_test[:2]).shape == (2, 10)
