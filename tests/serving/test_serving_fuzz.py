"""schemathesis against the app's own OpenAPI schema, in process (ASGI, no network), with a bounded number of
generated requests per operation, valid and invalid: no 5xx, every response (errors included) valid
against the schema with a declared status code and content type, requests the schema allows answered
2xx and requests it forbids answered 4xx (the schema and the server's validation agree)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

pytest.importorskip("schemathesis", reason="schemathesis is not installed: pip install -e '.[test]'")

import schemathesis  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

import deepzen  # noqa: E402
from deepzen.layers import Dense, Embedding, Flatten  # noqa: E402
from deepzen.models import Sequential  # noqa: E402
from deepzen.serving.app import create_app  # noqa: E402
from deepzen.serving.servables import GeneratorServable, TensorServable, load_servable  # noqa: E402
from deepzen.serving.settings import ServeSettings  # noqa: E402

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance,
          negative_data_rejection, positive_data_acceptance]
# A file's schema is "binary": it cannot say "a decodable image", so random bytes there are rightly refused.
UPLOAD_CHECKS = [check for check in CHECKS if check is not positive_data_acceptance]
EXAMPLES = 25  # per operation and phase: bounded, so the suite stays fast


def image_app():
    from deepzen.vision.recipes import digits_cnn_model

    deepzen.seed(0)
    model = digits_cnn_model(filters=2)
    model.build()
    return create_app(TensorServable(model, ServeSettings(max_samples=4)))


def ids_app():
    deepzen.seed(0)
    model = Sequential([Embedding(20, 4, input_shape=(5,)), Flatten(), Dense(3)])
    model.build()
    return create_app(TensorServable(model, ServeSettings(max_samples=4)))


image_schema = schemathesis.openapi.from_asgi("/openapi.json", image_app())
ids_schema = schemathesis.openapi.from_asgi("/openapi.json", ids_app())
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@image_schema.parametrize()
@FUZZ
def test_the_image_model_api_keeps_its_schema(case):
    case.call_and_validate(checks=UPLOAD_CHECKS if case.path == "/predict/image" else CHECKS)


@ids_schema.parametrize()
@FUZZ
def test_the_integer_input_model_api_keeps_its_schema(case):
    case.call_and_validate(checks=CHECKS)


def language_model_app():
    from deepzen.text.language_model import CharLSTM, char_vocab

    deepzen.seed(0)
    model = CharLSTM(char_vocab("First Citizen: Before we proceed any further, hear me speak."), 8, 16, 1)
    return create_app(GeneratorServable(model, None, ServeSettings(max_generation_tokens=20, max_text_chars=50)))


def test_the_text_classifier_api_keeps_its_schema(tmp_path):
    """A recipe's run needs training first, so its schema is loaded inside the test (not at collection)."""
    from hypothesis import given
    from schemathesis import GenerationMode
    from serving_helpers import make_classifier_run

    from deepzen import cli

    cli.load_recipes()
    app = create_app(load_servable(make_classifier_run(tmp_path), ServeSettings(max_samples=4)))
    operations = [result.ok() for result in schemathesis.openapi.from_asgi("/openapi.json", app).get_all_operations()]
    assert {(o.method, o.path) for o in operations} >= {("post", "/predict"), ("get", "/metadata")}
    for operation in operations:
        for mode in GenerationMode if operation.method == "post" else [GenerationMode.POSITIVE]:  # GETs take nothing
            @given(operation.as_strategy(generation_mode=mode))
            @settings(FUZZ, max_examples=10)  # the predictor reads the run folder on each call
            def check(case):
                case.call_and_validate(checks=CHECKS)

            check()


language_model_schema = schemathesis.openapi.from_asgi("/openapi.json", language_model_app())


@language_model_schema.parametrize()
@FUZZ
def test_the_language_model_api_keeps_its_schema(case):
    case.call_and_validate(checks=CHECKS)
