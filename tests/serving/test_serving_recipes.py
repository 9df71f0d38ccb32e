"""Every kind of recipe is servable through its run folder, and answers what the recipe's own predictor (or
model) answers: image classifiers (JSON arrays, or PNG/JPEG uploads), text classifiers, the tagger,
language models (length, temperature and top-k bounded by the server's limits), translators (beam
search) and recommenders (top-N). Each recipe trains on a tiny budget in this process."""

from __future__ import annotations

import base64
import io
import json
import threading

import numpy as np
import pytest
from serving_helpers import client, make_classifier_run, train

from deepzen import cli
from deepzen.serving.servables import (GeneratorServable, ImagePredictorServable, PredictorServable, TensorServable,
                                       load_servable)
from deepzen.serving.settings import ServeSettings

SHAKESPEARE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


def serve(folder, **settings):
    cli.load_recipes()
    return client(load_servable(folder, ServeSettings(**settings)))


# -- image classifiers ------------------------------------------------------------------------------------
def test_an_image_classifier_takes_arrays_and_png_or_jpeg_uploads(digits_run):
    from PIL import Image

    from deepzen.data.images import load_digits, read_image
    from deepzen.training.serialization import load_model

    model = load_model(digits_run / "model.dz", compile=False).eval()
    images, labels = load_digits()
    files = []
    for image, kind in ((images[0], "PNG"), (images[1], "JPEG")):
        buffer = io.BytesIO()
        Image.fromarray((image[0] * 255).astype(np.uint8)).resize((64, 64)).save(buffer, kind)
        files.append(("images", (f"digit.{kind.lower()}", buffer.getvalue(), f"image/{kind.lower()}")))
    decoded = np.stack([read_image(data, (1, 8, 8)) for _, (_, data, _) in files])
    with serve(digits_run) as test_client:
        assert isinstance(test_client.app.state.servable, TensorServable)
        uploaded = test_client.post("/predict/image", files=files)
        arrays = test_client.post("/predict", json={"inputs": images[:5].tolist()})
        not_an_image = test_client.post("/predict/image", files=[("images", ("x.png", b"GIF89a broken", "image/png"))])
        no_file = test_client.post("/predict/image", data={"other": "1"})
    assert uploaded.status_code == 200
    assert uploaded.json()["classes"] == model.predict(decoded).argmax(axis=1).tolist()
    assert np.allclose(uploaded.json()["outputs"], model.predict(decoded), atol=1e-5)
    assert arrays.json()["classes"] == model.predict(images[:5]).argmax(axis=1).tolist()
    assert np.mean(np.array(arrays.json()["classes"]) == labels[:5]) >= 0.6  # a trained classifier, not noise
    assert not_an_image.status_code == 422 and "Image 1: " in not_an_image.json()["error"]
    assert no_file.status_code == 422 and "images" in no_file.json()["error"]


# -- detection and segmentation: the client sends the images ------------------------------------------------
def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_detector_answers_uploaded_images_as_its_predictor_answers_files(detection_run, tmp_path):
    from deepzen.recipes import RECIPES

    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 255, (150, 200), dtype=np.uint8), np.zeros((90, 120), np.uint8)]
    files = []
    for number, picture in enumerate(pictures):
        (tmp_path / f"picture{number}.png").write_bytes(png(picture))
        files.append(("images", (f"picture{number}.png", png(picture), "image/png")))
    expected = RECIPES.get("mnist-detection").predictor(detection_run, [str(tmp_path / "picture0.png"),
                                                                        str(tmp_path / "picture1.png")], 4)
    encoded = [base64.b64encode(png(picture)).decode() for picture in pictures]
    with serve(detection_run) as test_client:
        assert isinstance(test_client.app.state.servable, ImagePredictorServable)
        as_json = test_client.post("/predict", json={"images": encoded, "top": 4})
        uploaded = test_client.post("/predict/image", files=files)
        a_path = test_client.post("/predict", json={"inputs": [str(tmp_path / "picture0.png")]})
        not_base64 = test_client.post("/predict", json={"images": ["not base64!"]})
        not_an_image = test_client.post("/predict", json={"images": [base64.b64encode(b"GIF89a broken").decode()]})
        metadata = test_client.get("/metadata").json()
    assert as_json.status_code == 200 and uploaded.status_code == 200
    results = as_json.json()["results"]
    assert [r["input"] for r in results] == ["image 1", "image 2"]
    for result, drawn in zip(results, expected):  # the same objects the file predictor drew
        assert result["objects"] == json.loads(json.dumps(drawn["objects"])) and len(result["objects"]) == 4
        for found in result["objects"]:
            assert set(found) == {"class", "score", "box"} and found["class"] in [str(d) for d in range(10)]
    assert all(len(r["objects"]) == 0 or min(o["score"] for o in r["objects"]) >= 0.5  # no top: scores >= 0.5
               for r in uploaded.json()["results"])
    # A client cannot make the server open one of its files: the request names images, not paths.
    assert a_path.status_code == 400 and "images" in a_path.json()["error"]
    assert not_base64.status_code == 422 and "Image 1 is not base64" in not_base64.json()["error"]
    assert not_an_image.status_code == 422 and "Image 1: " in not_an_image.json()["error"]
    assert metadata["kind"] == "image predictor" and metadata["accepts_images"] is True
    assert not (detection_run / "predictions" / "image 1.png").exists()  # serving writes nothing
    with serve(detection_run, max_image_pixels=40_000) as test_client:  # 150x200 + 90x120 = 40,800 pixels
        too_many = test_client.post("/predict/image", files=files)
        one = test_client.post("/predict/image", files=files[:1])
    assert too_many.status_code == 413 and "40000 pixels" in too_many.json()["error"] and one.status_code == 200


def test_a_segmenter_answers_each_image_with_its_mask(segmentation_run):
    from PIL import Image

    from deepzen.data.images import load_mnist
    from deepzen.data.mask_scenes import make_mask_scenes
    from deepzen.training.serialization import load_model

    _, _, x_test, y_test = load_mnist()
    scene, _ = make_mask_scenes(x_test[:8], y_test[:8], 1, seed=3)
    picture = np.asarray(Image.fromarray(scene[0, 0]).resize((96, 80)))  # not the model's 64x64
    with serve(segmentation_run) as test_client:
        answer = test_client.post("/predict/image", files=[("images", ("scene.png", png(picture), "image/png"))])
    assert answer.status_code == 200
    (result,) = answer.json()["results"]
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["mask"]))))
    model = load_model(segmentation_run / "model.dz", compile=False)
    x = np.asarray(Image.fromarray(picture).resize((64, 64), Image.BILINEAR), np.float32)[None, None]
    expected = model.predict(x).argmax(-1)[0].astype(np.uint8)
    np.testing.assert_array_equal(mask, np.asarray(Image.fromarray(expected).resize((96, 80), Image.NEAREST)))
    assert len(np.unique(mask)) >= 3 and result["classes"]  # a mask worth checking: several classes
    shares = np.bincount(mask.ravel(), minlength=11) / mask.size
    for name, share in result["classes"].items():
        assert share == pytest.approx(shares[1 + int(name)] if name.isdigit() else shares[0])


# -- text classification -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    return make_classifier_run(tmp_path_factory.mktemp("runs"))


def test_a_text_classifier_answers_its_predictors_labels(classifier_run):
    from deepzen.text.recipes import predict_text_classes

    texts = ["a great movie", "the plot was dull", "superb and lovely", "poor"]
    with serve(classifier_run, max_wait_ms=200) as test_client:
        assert isinstance(test_client.app.state.servable, PredictorServable)
        answers = [None] * len(texts)

        def send(index):  # concurrent requests: batched into one predictor call
            answers[index] = test_client.post("/predict", json={"inputs": [texts[index]], "top": 2})

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(texts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        refused = [test_client.post("/predict", json=body) for body in
                   ({"inputs": ["   "]}, {"inputs": ["fine"], "top": 0}, {"inputs": ["fine"], "top": 101},
                    {"inputs": []}, {"inputs": "fine"}, {"inputs": ["x" * 2001]}, {"inputs": [3]})]
        schema = test_client.get("/openapi.json").json()["components"]["schemas"]
    expected = predict_text_classes(classifier_run, texts, 2)
    assert [answer.json()["results"][0] for answer in answers] == json.loads(json.dumps(expected))
    assert {result["label"] for result in expected} == {"0", "1"} or len(expected[0]["top"]) == 2
    assert [r.status_code for r in refused] == [422] * len(refused)
    assert "top: Input should be greater than or equal to 1" in refused[1].json()["error"]
    assert "at most 2000 characters" in refused[5].json()["error"]
    assert schema["PredictorRequest"]["properties"]["inputs"]["maxItems"] == 64


# -- sequence labeling ------------------------------------------------------------------------------------
def test_the_tagger_answers_tags_and_entities(real_dataset, tmp_path):
    from deepzen.data.text_datasets import load_conll
    from deepzen.text.recipes import predict_entities

    real_dataset("conll2003")
    train("conll-bilstm-crf", tmp_path / "conll", max_train_sentences=200, max_eval_sentences=20, epochs=1,
          word_dim=16, char_dim=8, char_units=8, units=16, learning_rate=0.01, verbose=0)
    sentences = [" ".join(tokens) for tokens in load_conll(None, "test")[0][:6]]
    with serve(tmp_path / "conll") as test_client:
        answer = test_client.post("/predict", json={"inputs": sentences})
    assert answer.status_code == 200
    assert answer.json()["results"] == json.loads(json.dumps(predict_entities(tmp_path / "conll", sentences)))


# -- language models ------------------------------------------------------------------------------------------
def test_a_language_model_continues_within_the_servers_limits(tmp_path):
    from deepzen.text.generation_recipes import load_language_model

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(SHAKESPEARE * 40, encoding="utf-8")
    folder = tmp_path / "lm"
    train("shakespeare-char-lstm", folder, data=corpus, max_steps=4, eval_every=2, seq_len=16, batch_size=8,
          embedding_dim=8, units=16, num_layers=1, prompt="All", sample_length=20, seed=4)
    model, _ = load_language_model(folder)
    with serve(folder, max_generation_tokens=50, max_temperature=1.5) as test_client:
        assert isinstance(test_client.app.state.servable, GeneratorServable)
        answer = test_client.post("/predict", json={"prompt": "All", "max_tokens": 30, "temperature": 0.8,
                                                    "top_k": 5, "seed": 7}).json()
        default = test_client.post("/predict", json={"prompt": "All"}).json()  # the run's temperature and seed
        refused = {name: test_client.post("/predict", json={"prompt": "All", **body}) for name, body in {
            "tokens": {"max_tokens": 51}, "temperature": {"temperature": 2.0}, "top_k": {"top_k": 10_000},
            "negative": {"temperature": -1}, "type": {"max_tokens": "30"}, "extra": {"beam": 3}}.items()}
        unknown = test_client.post("/predict", json={"prompt": "Zebra"})
        empty = test_client.post("/predict", json={"prompt": ""})
    assert answer["text"] == model.generate("All", 30, 0.8, 5, None, seed=7)
    assert answer["continuation"] == answer["text"][3:] and len(answer["continuation"]) == 30
    assert default["text"] == model.generate("All", 50, 0.8, None, None, seed=4)  # 200 capped at the limit of 50
    assert all(response.status_code in (400, 422) for response in refused.values()), refused
    assert "less than or equal to 50" in refused["tokens"].json()["error"]
    assert "less than or equal to 1.5" in refused["temperature"].json()["error"]
    assert refused["extra"].status_code == 400 and "Unknown field(s): 'beam'" in refused["extra"].json()["error"]
    assert unknown.status_code == 422
    assert "characters the model's vocabulary lacks: ['Z', 'b']" in unknown.json()["error"]
    assert empty.status_code == 422


# -- translation ------------------------------------------------------------------------------------------------
def test_a_translator_answers_its_beam_search_translation(translator_run):
    from deepzen.data.text_datasets import load_multi30k

    english = load_multi30k(None, "test")[0][:4]
    with serve(translator_run) as test_client:
        answer = test_client.post("/predict", json={"inputs": english})
    recipe_output = (translator_run / "test_beam.de").read_text(encoding="utf-8").split("\n")[:4]
    assert answer.status_code == 200
    assert [r["translation"] for r in answer.json()["results"]] == recipe_output  # the recipe's own beam search


# -- recommenders ------------------------------------------------------------------------------------------------
def test_a_recommender_answers_the_top_n_items_and_refuses_unknown_users(real_dataset, tmp_path):
    from deepzen.recommend.recipes import predict_recommendations

    data = real_dataset("ml-100k")
    folder = tmp_path / "mf"
    train("movielens-mf", folder, folds="u1", ranking="false", factors=4, epochs=2, data=data)
    with serve(folder, max_wait_ms=300) as test_client:
        answers = {}

        def send(user):  # batched together: the unknown user must not fail the known one
            answers[user] = test_client.post("/predict", json={"inputs": [user], "top": 5})

        threads = [threading.Thread(target=send, args=(user,)) for user in ("196", "99999", "1")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        metrics = test_client.get("/metrics").text
    expected = predict_recommendations(folder, ["196", "1"], 5)
    assert answers["196"].json()["results"][0] == json.loads(json.dumps(expected[0]))
    assert answers["1"].json()["results"][0] == json.loads(json.dumps(expected[1]))
    assert len(expected[0]["recommendations"]) == 5 and expected[0]["recommendations"][0]["title"]
    assert answers["99999"].status_code == 422 and "unknown user 99999" in answers["99999"].json()["error"]
    assert 'status="422"' in metrics
