"""keras.io examples/vision/mnist_convnet.py ("Simple MNIST convnet"), imports changed, budget shrunk:
1,000 training images and 2 epochs instead of 60,000 and 15."""

import numpy as np

import deepzen as keras
from deepzen import layers


def test_mnist_convnet(mnist_load_data):
    keras.config.set_image_data_format("channels_last")  # deepzen: channels_first is deepzen's default (PyTorch's); the example's (28, 28, 1) images need Keras's layout set explicitly
    # Model / data parameters
    num_classes = 10
    input_shape = (28, 28, 1)

    # Load the data and split it between train and test sets
    (x_train, y_train), (x_test, y_test) = mnist_load_data(n_train=1000)  # deepzen: no keras.datasets; $DEEPZEN_DATA/mnist, sliced

    # Scale images to the [0, 1] range
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255
    # Make sure images have shape (28, 28, 1)
    x_train = np.expand_dims(x_train, -1)
    x_test = np.expand_dims(x_test, -1)
    print("x_train shape:", x_train.shape)
    print(x_train.shape[0], "train samples")
    print(x_test.shape[0], "test samples")

    # convert class vectors to binary class matrices
    y_train = keras.utils.to_categorical(y_train, num_classes)
    y_test = keras.utils.to_categorical(y_test, num_classes)

    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )

    model.summary()

    batch_size = 128
    epochs = 2  # budget: 15 in the example

    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.1)

    score = model.evaluate(x_test, y_test, verbose=0)
    print("Test loss:", score[0])
    print("Test accuracy:", score[1])

    assert history.history["loss"][-1] < history.history["loss"][0]
    assert score[1] > 0.6  # chance is 0.1
