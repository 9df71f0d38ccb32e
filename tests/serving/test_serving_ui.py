"""The /ui page in headless Chromium (Playwright driving Debian's ``chromium``): draw a digit, press Predict,
read the bar chart, and check that its probabilities are the model's for the drawn image; type a sentence
for a text classifier; draw for an image predictor (a segmentation run) and read its classes' shares;
``/docs`` renders with no request outside the server. The page loads nothing from outside the server."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from serving_helpers import ThreadedServer

from deepzen.serving.servables import load_servable
from deepzen.serving.settings import ServeSettings

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def browser(chromium_executable):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_ui(browser, url: str):
    page = browser.new_page()
    outside = []
    page.on("request", lambda request: None if request.url.startswith(url) else outside.append(request.url))
    page.goto(url + "/ui")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    return page, outside


def bars(page) -> dict[str, float]:
    page.wait_for_selector("#bars .row", timeout=30_000)
    return {row.get_attribute("data-label"): float(row.get_attribute("data-probability"))
            for row in page.query_selector_all("#bars .row")}


def test_draw_a_digit_predict_and_read_the_bars(browser, digits_run, tmp_path):
    from deepzen.data.images import read_image
    from deepzen.training.serialization import load_model

    model = load_model(digits_run / "model.dz", compile=False).eval()
    with ThreadedServer(load_servable(digits_run, ServeSettings(port=0))) as server:
        page, outside = open_ui(browser, server.server.url)
        box = page.query_selector("#canvas").bounding_box()
        page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.15 * box["height"])
        page.mouse.down()
        for step in range(1, 11):  # a vertical stroke: a "1"
            page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + (0.15 + 0.07 * step) * box["height"])
        page.mouse.up()
        drawn = page.evaluate("document.getElementById('canvas').toDataURL('image/png')")
        page.click("#predict")
        shown = bars(page)
        prediction = page.inner_text("#prediction")
        page.screenshot(path=str(tmp_path / "ui-digit.png"))
        page.close()
    assert not outside  # no CDN: every request went to the server
    image = read_image(base64.b64decode(drawn.split(",", 1)[1]), (1, 8, 8))
    assert image.max() > 0.5 and image.min() == 0.0  # the stroke reached the model's input
    scores = model.predict(image[None])[0]
    expected = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    assert sorted(shown) == [str(c) for c in range(10)]
    assert np.allclose([shown[str(c)] for c in range(10)], expected, atol=1e-5)
    assert prediction == f"Prediction: {int(expected.argmax())}"
    assert (tmp_path / "ui-digit.png").stat().st_size > 1000


def test_type_a_sentence_for_a_text_classifier(browser, tmp_path):
    from serving_helpers import make_classifier_run

    from deepzen.text.recipes import predict_text_classes

    run = make_classifier_run(tmp_path)
    with ThreadedServer(load_servable(run, ServeSettings(port=0))) as server:
        page, outside = open_ui(browser, server.server.url)
        page.fill("#text", "a superb and lovely movie")
        page.click("#predict")
        shown = bars(page)
        prediction = page.inner_text("#prediction")
        page.screenshot(path=str(tmp_path / "ui-text.png"))
        page.close()
    [expected] = predict_text_classes(run, ["a superb and lovely movie"])
    assert not outside
    assert shown == pytest.approx({entry["label"]: entry["probability"] for entry in expected["top"]}, abs=1e-6)
    assert prediction == f"Prediction: {expected['label']}"


def test_draw_for_an_image_predictor_and_read_the_class_shares(browser, tmp_path):
    """The page of a segmentation run: the canvas is uploaded, the answer's classes become bars. (A tiny
    trained U-Net sees only background, so the image predictor here calls the drawn pixels "7".)"""
    from PIL import Image

    from deepzen.serving.servables import ImagePredictorServable

    def bright_pixels_are_sevens(run_dir, pictures, top):
        results = []
        for picture in pictures:
            mask = (np.asarray(picture.convert("L")) > 127).astype(np.uint8) * 8  # class 8: the digit 7
            buffer = io.BytesIO()
            Image.fromarray(mask).save(buffer, "PNG")
            share = float((mask > 0).mean())
            results.append({"classes": {"7": share}, "mask": base64.b64encode(buffer.getvalue()).decode(),
                            "output": f"7 ({share:.1%} of the pixels)"})
        return results

    servable = ImagePredictorServable(tmp_path, bright_pixels_are_sevens, ServeSettings(port=0))
    with ThreadedServer(servable) as server:
        page, outside = open_ui(browser, server.server.url)
        box = page.query_selector("#canvas").bounding_box()
        page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.3 * box["height"])
        page.mouse.down()
        for step in range(1, 11):  # a diagonal stroke
            page.mouse.move(box["x"] + (0.3 + 0.04 * step) * box["width"], box["y"] + (0.3 + 0.04 * step) * box["height"])
        page.mouse.up()
        drawn = page.evaluate("document.getElementById('canvas').toDataURL('image/png')")
        page.click("#predict")
        shown = bars(page)
        prediction = page.inner_text("#prediction")
        page.close()
    assert not outside
    picture = Image.open(io.BytesIO(base64.b64decode(drawn.split(",", 1)[1])))
    [expected] = bright_pixels_are_sevens(None, [picture], None)
    assert 0.01 < expected["classes"]["7"] < 0.5  # the stroke, not the whole canvas
    assert prediction == expected["output"] and shown == pytest.approx(expected["classes"], abs=1e-9)


def test_a_detectors_objects_are_listed(browser, tmp_path):
    from deepzen.serving.servables import ImagePredictorServable

    def one_box_per_image(run_dir, pictures, top):
        return [{"objects": [{"class": "7", "score": 0.875, "box": [1.0, 2.4, 30.6, 40.0]}], "output": "7 0.88"}
                for _ in pictures]

    with ThreadedServer(ImagePredictorServable(tmp_path, one_box_per_image, ServeSettings(port=0))) as server:
        page, outside = open_ui(browser, server.server.url)
        page.click("#predict")
        page.wait_for_function("document.getElementById('prediction').textContent.length > 0", timeout=30_000)
        prediction = page.inner_text("#prediction")
        page.close()
    assert not outside and prediction == "7 0.88 at [1, 2, 31, 40]"


def test_the_api_docs_render_offline(browser, digits_run):
    with ThreadedServer(load_servable(digits_run, ServeSettings(port=0))) as server:
        page = browser.new_page()
        outside = []
        page.on("request", lambda request: None if request.url.startswith(server.server.url)
                else outside.append(request.url))
        page.goto(server.server.url + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)  # Swagger UI drew the operations
        paths = {element.inner_text().strip() for element in page.query_selector_all(".opblock-summary-path")}
        page.close()
    assert not outside  # Swagger UI's script and style came from the server, not a CDN
    assert {"/predict", "/predict/image", "/metadata"} <= paths
