"""The Functional API against Keras's guide "The Functional API" (keras-io guides/functional_api.py): its small
examples ported with only the imports changed (sizes made tiny), plus the contract of Model(inputs, outputs)."""

import doctest

import numpy as np
import pytest
import torch

import deepzen
from deepzen import layers
from deepzen.layers import Dense, Input
from deepzen.models import Model, Sequential, load_model
from deepzen.training import functional


def _losses(history):
    return history.history["loss"]


def test_doctests_run():
    for module in (functional, deepzen.layers.symbolic, deepzen.layers.input_layer, deepzen.layers.torch_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


def test_mnist_style_mlp_like_the_guide():
    inputs = deepzen.Input(shape=(16,))
    dense = layers.Dense(8, activation="relu")
    x = dense(inputs)
    x = layers.Dense(8, activation="relu")(x)
    outputs = layers.Dense(3)(x)
    model = deepzen.Model(inputs=inputs, outputs=outputs, name="mnist_model")
    assert isinstance(model, functional.Functional) and model.name == "mnist_model"
    assert inputs.shape == (None, 16) and inputs.dtype == torch.float32
    assert model.output_shape == (None, 3)
    text = model.summary(print_fn=None)
    assert "input_layer (InputLayer)" in text and "dense_1 (Dense)" in text and "dense[0][0]" in text
    assert model.get_layer("dense_1") is model.layers[2]
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(128, 16)).astype("float32")
    y_train = (x_train[:, :3].argmax(1)).astype("int64")
    model.compile(loss=deepzen.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer=deepzen.optimizers.RMSprop(), metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=8, validation_split=0.2, verbose=0)
    assert _losses(history)[-1] < _losses(history)[0]


def test_ticket_classifier_several_inputs_and_outputs_round_trip(tmp_path):
    num_tags, num_words, num_departments = 6, 50, 4
    title_input = deepzen.Input(shape=(None,), name="title")  # Variable-length sequence of ints
    body_input = deepzen.Input(shape=(None,), name="body")
    tags_input = deepzen.Input(shape=(num_tags,), name="tags")
    title_features = layers.Embedding(num_words, 8)(title_input)
    body_features = layers.Embedding(num_words, 8)(body_input)
    title_features = layers.LSTM(8)(title_features)
    body_features = layers.LSTM(4)(body_features)
    x = layers.concatenate([title_features, body_features, tags_input])
    priority_pred = layers.Dense(1, name="priority")(x)
    department_pred = layers.Dense(num_departments, name="department")(x)
    model = deepzen.Model(inputs=[title_input, body_input, tags_input], outputs=[priority_pred, department_pred])
    assert title_input.dtype == torch.int64  # an Input of default dtype feeding an Embedding holds ids
    deepzen.utils.plot_model(model, tmp_path / "multi_input_and_output_model.png", show_shapes=True)
    model.compile(optimizer=deepzen.optimizers.RMSprop(1e-3),
                  loss=[deepzen.losses.BinaryCrossentropy(from_logits=True),
                        deepzen.losses.CategoricalCrossentropy(from_logits=True)],
                  loss_weights=[1.0, 0.2])
    model.compile(optimizer=deepzen.optimizers.RMSprop(1e-3),
                  loss={"priority": deepzen.losses.BinaryCrossentropy(from_logits=True),
                        "department": deepzen.losses.CategoricalCrossentropy(from_logits=True)},
                  loss_weights={"priority": 1.0, "department": 0.2})
    rng = np.random.default_rng(0)
    title_data = rng.integers(num_words, size=(128, 10))
    body_data = rng.integers(num_words, size=(128, 20))
    tags_data = rng.integers(2, size=(128, num_tags)).astype("float32")
    priority_targets = rng.random(size=(128, 1))
    # One-hot targets (the guide's multi-hot dummy rows get a warning from CategoricalCrossentropy, losses.py).
    dept_targets = np.eye(num_departments, dtype="int64")[rng.integers(num_departments, size=128)]
    history = model.fit({"title": title_data, "body": body_data, "tags": tags_data},
                        {"priority": priority_targets, "department": dept_targets}, epochs=6, batch_size=32, verbose=0)
    assert _losses(history)[-1] < _losses(history)[0]
    history = model.fit([title_data, body_data, tags_data], [priority_targets, dept_targets], epochs=1, verbose=0)
    before = model.predict({"title": title_data[:8], "body": body_data[:8], "tags": tags_data[:8]})
    assert isinstance(before, list) and before[1].shape == (8, num_departments)
    path = tmp_path / "tickets.deepzen"
    model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, functional.Functional) and loaded.input_names == ["title", "body", "tags"]
    after = loaded.predict({"title": title_data[:8], "body": body_data[:8], "tags": tags_data[:8]})
    for want, got in zip(before, after):
        np.testing.assert_array_equal(want, got)
    text = loaded.summary(print_fn=None)
    assert "priority (Dense)" in text and "concatenate[0][0]" in text


def test_dict_outputs():
    inputs = Input((3,), name="x")
    model = Model({"x": inputs}, {"double": layers.Rescaling(2.0)(inputs), "half": layers.Rescaling(0.5)(inputs)})
    out = model.predict({"x": np.ones((2, 3), "float32")})
    assert set(out) == {"double", "half"} and out["double"][0, 0] == 2.0


def test_extract_and_reuse_nodes_of_the_graph():
    inputs = Input((4,), name="x")
    hidden = Dense(3, activation="relu", name="hidden")(inputs)
    base = Model(inputs, Dense(2, name="head")(hidden))
    features_list = [layer.output for layer in base.layers]
    feat_extraction_model = Model(inputs=base.input, outputs=features_list)
    x = torch.randn(5, 4)
    extracted = feat_extraction_model(x)
    torch.testing.assert_close(extracted[0], x)
    torch.testing.assert_close(extracted[2], base(x))
    rebuilt = Model.from_config(base.get_config(), custom_objects={})
    assert isinstance(rebuilt, functional.Functional) and [l.name for l in rebuilt.layers] == ["x", "hidden", "head"]


def test_list_outputs_take_dicts_by_output_layer_name():
    inputs = Input((4,), name="x")
    hidden = Dense(8, activation="relu")(inputs)
    model = Model(inputs, [Dense(1, name="a")(hidden), Dense(1, name="b")(hidden)])
    model.compile(optimizer="adam", loss={"a": "mse", "b": "mse"}, loss_weights={"a": 1.0, "b": 0.5})
    x = np.random.default_rng(1).normal(size=(64, 4)).astype("float32")
    history = model.fit(x, {"a": x[:, :1], "b": x[:, 1:2]}, epochs=5, verbose=0)
    assert _losses(history)[-1] < _losses(history)[0]
    assert isinstance(model.predict(x), list)


def test_shared_embedding_has_one_set_of_weights():
    shared_embedding = layers.Embedding(20, 4)
    text_input_a = deepzen.Input(shape=(None,), dtype="int32")
    text_input_b = deepzen.Input(shape=(None,), dtype="int32")
    encoded_input_a = shared_embedding(text_input_a)
    encoded_input_b = shared_embedding(text_input_b)
    model = Model([text_input_a, text_input_b], layers.add([encoded_input_a, encoded_input_b]))
    assert sum(p.numel() for p in model.parameters()) == 20 * 4
    ids = torch.tensor([[1, 2, 3]])
    out = model(ids, ids)
    torch.testing.assert_close(out, 2 * shared_embedding(ids))
    text = model.summary(print_fn=None)
    assert "input_layer[0][0], input_layer_1[0][0]" in text  # one row, both calls


def test_toy_resnet_trains_and_round_trips(tmp_path):
    inputs = deepzen.Input(shape=(3, 12, 12), name="img")
    x = layers.Conv2D(8, 3, activation="relu")(inputs)
    x = layers.Conv2D(8, 3, activation="relu")(x)
    block_1_output = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(block_1_output)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    block_2_output = layers.add([x, block_1_output])
    x = layers.Conv2D(8, 3, activation="relu")(block_2_output)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(16, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(3)(x)
    model = deepzen.Model(inputs, outputs, name="toy_resnet")
    assert "add (Add)" in model.summary(print_fn=None)
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(96, 3, 12, 12)).astype("float32")
    y_train = (x_train.mean(axis=(2, 3)).argmax(1)).astype("int64")
    model.compile(optimizer=deepzen.optimizers.RMSprop(1e-3),
                  loss=deepzen.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["acc"],
                  memory_format="channels_first")  # "auto" trains channels-last; a loaded model predicts in
    # channels-first until its first fit/evaluate, which changes the last bits of the outputs
    history = model.fit(x_train, y_train, batch_size=32, epochs=8, verbose=0)
    assert _losses(history)[-1] < _losses(history)[0]
    path = tmp_path / "resnet.deepzen"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(model.predict(x_train[:5]), loaded.predict(x_train[:5]))
    deepzen.utils.plot_model(loaded, tmp_path / "resnet.png", show_shapes=True)
    assert (tmp_path / "resnet.png").stat().st_size > 1000


def test_models_as_layers_and_inside_sequential(tmp_path):
    encoder_input = deepzen.Input(shape=(6,), name="original")
    encoder_output = Dense(2, name="code")(Dense(4, activation="relu")(encoder_input))
    encoder = Model(encoder_input, encoder_output, name="encoder")
    decoder_input = deepzen.Input(shape=(2,), name="encoded")
    decoder = Model(decoder_input, Dense(6)(Dense(4, activation="relu")(decoder_input)), name="decoder")
    autoencoder_input = deepzen.Input(shape=(6,), name="data")
    autoencoder = Model(autoencoder_input, decoder(encoder(autoencoder_input)), name="autoencoder")
    assert [layer.name for layer in autoencoder.layers] == ["data", "encoder", "decoder"]
    x = torch.randn(4, 6)
    torch.testing.assert_close(autoencoder(x), decoder(encoder(x)))
    stacked = Sequential([encoder, Dense(3)])
    assert stacked(x).shape == (4, 3)
    path = tmp_path / "autoencoder.deepzen"
    autoencoder.build_for(x)
    autoencoder.save(path)
    loaded = load_model(path)
    torch.testing.assert_close(loaded(x), autoencoder(x))
    assert loaded.get_layer("encoder").get_layer("code").weight.shape == (2, 4)


def test_sequential_and_graph_train_alike():
    """The same network as Sequential and as a graph computes the same thing with the same weights."""
    torch.manual_seed(0)
    sequential = Sequential([Dense(8, input_dim=4, activation="relu"), Dense(2)])
    sequential.build()
    inputs = Input((4,))
    graph = Model(inputs, sequential.layers[1](sequential.layers[0](inputs)))
    x = torch.randn(5, 4)
    torch.testing.assert_close(graph(x), sequential(x))


def test_training_argument_reaches_dropout():
    inputs = Input((1000,))
    model = Model(inputs, layers.Dropout(0.5)(inputs))
    x = torch.ones(2, 1000)
    model.eval()
    assert torch.equal(model(x), x)
    assert (model(x, training=True) == 0).any()
    model.train()
    assert torch.equal(model(x, training=False), x)


def test_unreachable_output_names_it():
    a, b = Input((3,), name="a"), Input((3,), name="b")
    with pytest.raises(ValueError, match=r"Output 1 .*Input 'b' \(None, 3\), which is not among the inputs "
                                         r"\('a' \(None, 3\)\)"):
        Model(a, [Dense(1)(a), Dense(1)(b)])


def test_wrong_rank_names_layer_and_both_shapes():
    with pytest.raises(ValueError, match=r"Layer 'conv2d' \(Conv2D\) cannot be called on an input of shape "
                                         r"\(None, 784\).*\(batch, channels, height, width\)"):
        layers.Conv2D(4, 3)(Input((784,)))
    dense = Dense(3, name="shared")
    dense(Input((4,)))
    with pytest.raises(ValueError, match=r"Layer 'shared' \(Dense\) cannot be called on an input of shape "
                                         r"\(None, 2, 5\); it was built for inputs of shape \(None, 4\)"):
        dense(Input((2, 5)))


def test_a_model_called_on_the_wrong_shape_names_both():
    inputs = Input((4,))
    inner = Model(inputs, Dense(2)(inputs), name="inner")
    with pytest.raises(ValueError, match=r"Layer 'inner' \(Functional\) cannot be called on an input of shape "
                                         r"\(None, 5\); it takes inputs of shape \(None, 4\)"):
        inner(Input((5,)))


def test_failing_lazy_build_is_named():
    with pytest.raises(ValueError, match=r"Layer 'reshape' \(Reshape\) cannot be called .*\(None, 7\)"):
        layers.Reshape((2, 3))(Input((7,)))


def test_symbolic_tensors_refuse_torch_code_with_a_pointer():
    x = Input((3,))
    with pytest.raises(TypeError, match="symbolic tensor"):
        torch.relu(x)
    with pytest.raises(AttributeError, match="Lambda"):
        x.flatten()


def test_input_in_sequential_declares_the_shape_and_builds_at_once():
    model = Sequential([Input((4,)), Dense(3)])
    assert [type(layer) for layer in model.layers] == [Dense]  # Keras: the Input is not one of model.layers
    assert model.count_params() == 4 * 3 + 3  # built as the layers were added
    assert model.layers[0].output.shape == (None, 3) and model.inputs[0].shape == (None, 4)
    assert model.build().shape == (2, 3)


def test_configs_saved_with_the_old_input_layer_still_load():
    from deepzen.training.serialization import module_from_config

    old = {"class": "Sequential", "module": "deepzen.training.model", "config": {"name": "sequential", "layers": [
        {"class": "Input", "module": "deepzen.layers.core", "kind": "layer", "config": {"shape": [4], "name": None}},
        {"class": "Dense", "module": "deepzen.layers.core", "kind": "layer", "config": {"units": 2}}]}}
    model = module_from_config(old)
    assert isinstance(model.get_layer(index=0), Dense) and model.build().shape == (2, 2)


def test_duplicate_layer_names_are_refused():
    x = Input((2,))
    with pytest.raises(ValueError, match="Used more than once: d"):
        Model(x, Dense(1, name="d")(Dense(2, name="d")(x)))


def test_call_by_name_and_by_list():
    a, b = Input((2,), name="a"), Input((3,), name="b")
    model = Model({"a": a, "b": b}, layers.Concatenate()([a, b]))
    x, y = torch.zeros(1, 2), torch.ones(1, 3)
    expected = torch.cat([x, y], 1)
    torch.testing.assert_close(model(a=x, b=y), expected)
    torch.testing.assert_close(model({"a": x, "b": y}), expected)
    torch.testing.assert_close(Model([a, b], layers.Concatenate()([a, b]))([x, y]), expected)
    with pytest.raises(ValueError, match=r"takes the inputs \['a', 'b'\]"):
        model(a=x, c=y)


def test_torch_modules_are_wrapped_and_plain_calls_point_to_the_wrapper(tmp_path):
    inputs = Input((4,))
    with pytest.raises(TypeError, match="TorchModuleWrapper"):
        torch.nn.Linear(4, 2)(inputs)
    hidden = layers.TorchModuleWrapper(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()))(inputs)
    model = Model(inputs, Dense(1)(hidden))
    assert sum(p.numel() for p in model.parameters()) == 4 * 8 + 8 + 8 + 1
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    history = model.fit(x, x[:, :1] * 2, epochs=5, verbose=0)
    assert _losses(history)[-1] < _losses(history)[0]
    with pytest.raises(TypeError, match="wraps torch's Sequential, which has no config"):
        model.save(tmp_path / "torch.deepzen")
    wrapped = Model(inputs, layers.TorchModuleWrapper(Sequential([Dense(2)]))(inputs))
    wrapped.save(tmp_path / "wrapped.deepzen")
    torch.testing.assert_close(load_model(tmp_path / "wrapped.deepzen")(torch.ones(2, 4)), wrapped(torch.ones(2, 4)))


def test_config_is_plain_json_and_plot_draws_sequential_models(tmp_path):
    import json

    a = Input((3,), name="a")
    model = Model({"a": a}, {"out": Dense(2)(a), "same": a})
    config = json.loads(json.dumps(model.get_config()))
    rebuilt = functional.Functional.from_config(config)
    assert rebuilt.input_names == ["a"] and rebuilt.output_names == ["out", "same"]
    figure = deepzen.utils.plot_model(Sequential([Dense(2, input_dim=3), Dense(1)]), tmp_path / "seq.png")
    assert len(figure.axes[0].texts) == 3 and (tmp_path / "seq.png").exists()  # two boxes, one arrow


def test_padding_masks_flow_as_in_sequential():
    torch.manual_seed(0)
    embedding, lstm, dense = layers.Embedding(20, 4, mask_zero=True), layers.LSTM(3), Dense(2)
    tokens = Input((None,), dtype="int64")
    graph = Model(tokens, dense(lstm(embedding(tokens))))
    sequential = Sequential([embedding, lstm, dense])
    ids = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 8]])
    torch.testing.assert_close(graph(ids), sequential(ids))
    torch.testing.assert_close(graph(ids)[0], graph(ids[:1, :2])[0])  # the padded steps are skipped


def test_calls_with_several_arguments_and_keywords_round_trip(tmp_path):
    sequence = Input((5, 8), name="sequence")
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=4)(sequence, sequence)
    noisy = layers.Dropout(0.5)(attended, training=False)  # a keyword fixed when the graph is built, as in Keras
    pooled = layers.GlobalAveragePooling1D()(layers.add([noisy, sequence]))
    model = Model(sequence, Sequential([Dense(3)])(pooled))
    x = torch.randn(2, 5, 8)
    expected = model(x, training=True)  # the node's own training=False wins for its Dropout
    torch.testing.assert_close(model(x), expected)
    model.save(tmp_path / "attention.deepzen")
    torch.testing.assert_close(load_model(tmp_path / "attention.deepzen")(x), expected)


def test_open_spatial_axes_stay_open_through_strided_layers():
    image = Input((3, None, None))
    x = layers.Conv2D(4, 11, strides=4, activation="relu")(image)  # a kernel larger than the first probe size
    x = layers.MaxPooling2D(2)(x)
    assert x.shape == (None, 4, None, None)
    model = Model(image, layers.GlobalAveragePooling2D()(x))
    assert model(torch.zeros(1, 3, 67, 45)).shape == (1, 4)
