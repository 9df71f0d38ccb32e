"""What the server can serve, and the request and response models of each, generated from the model.

- :class:`TensorServable`: a model file with one tensor input (image classifiers, any ``Sequential``):
  ``{"inputs": [sample, ...]}`` with each sample a nested list of the model's per-sample shape, or
  PNG/JPEG files uploaded as multipart for image-shaped inputs -> ``{"outputs", "classes",
  "probabilities"}`` (the last two for vectors of class scores).
- :class:`PredictorServable`: a run of a recipe with a predictor (text classifiers, taggers,
  translators, recommenders): ``{"inputs": [text or user id, ...], "top": k}`` -> the predictor's
  results (labels, entities, translations, top-N items).
- :class:`ImagePredictorServable`: a run of a recipe that predicts on images (detectors, segmenters):
  PNG/JPEG files uploaded as multipart, or ``{"images": [base64 file, ...], "top": k}`` -> the
  recipe's image predictor's results (boxes, classes and scores; masks). Clients send the images
  themselves: the server never opens a path a client names.
- :class:`GeneratorServable`: a language model's run: ``{"prompt", "max_tokens", "temperature",
  "top_k", "seed"}``, each bounded by the server's limits -> the continuation.

:func:`load_servable` picks the kind for a run folder. Each servable validates a parsed JSON body
into a payload (``parse``), runs a batch of payloads (``run_batch``, in the worker thread only),
and turns one result into the JSON answer (``answer``).
"""

from __future__ import annotations

import base64
import binascii
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Callable, Hashable, Sequence, Union

import numpy as np
import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model
from torch import nn

from deepzen.data.arrays import map_structure
from deepzen.data.images import open_picture, read_image
from deepzen.serving.requests import RequestError, json_object, sample_array
from deepzen.serving.settings import ServeSettings
from deepzen.serving.spec import input_spec, random_inputs, vocabulary_size
from deepzen.vision.tasks import run_images

STRICT = ConfigDict(extra="forbid", strict=True)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/gif")


def validation_message(error: ValidationError) -> str:
    """A pydantic error as one line per problem: ``inputs.0: String should have at most 2000 characters``."""
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item["loc"]) or "body"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def validate(model: type[BaseModel], value: Any) -> BaseModel:
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, validation_message(error)) from None


def _json_integer(value: Any) -> Any:
    """JSON Schema's integers: whole numbers, 19.0 included; not booleans or strings (which lax ints take)."""
    if isinstance(value, (bool, str)):
        raise ValueError(f"expected an integer. Received: {type(value).__name__}")
    return value


def integer(low: int, high: int, **field) -> Any:
    """An integer field in [low, high] as JSON Schema has it (2.0 is an integer too)."""
    return Annotated[int, Field(ge=low, le=high, strict=False, **field), BeforeValidator(_json_integer)]


def non_finite_error() -> RequestError:
    return RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, "The model's outputs for these inputs are not finite "
                        "(NaN or Infinity), which JSON cannot carry. Send inputs in the range the model was "
                        "trained on")


# == arrays and images ===================================================================================
class TensorServable:
    """A built model with one tensor input; requests carry samples as nested lists (or images)."""

    kind = "tensor"

    def __init__(self, model: nn.Module, settings: ServeSettings, description: dict | None = None,
                 prepare: Callable[[np.ndarray], np.ndarray] | None = None):
        self.model = model.eval()
        self.settings = settings
        self.prepare = prepare  # the run's pixel normalization (images and arrays come as pixels in [0, 1])
        self.shape, self.dtype = input_spec(model)
        self.vocabulary = vocabulary_size(model)
        self.device = next(model.parameters()).device
        probe = self.run_batch(None, [random_inputs(model, 1).numpy()])[0]
        if not isinstance(probe, np.ndarray):
            raise ValueError("Serving takes models with one output tensor. Received a model whose outputs are "
                             f"{type(probe).__name__}")
        self.output_shape = probe.shape[1:]
        self.is_classifier = len(self.output_shape) == 1 and self.output_shape[0] > 1
        self.accepts_images = len(self.shape) == 3 and self.shape[0] in (1, 3) and self.dtype.is_floating_point
        self.request_model = self._request_model()
        self.response_model = self._response_model()
        self.metadata = {
            **(description or {}),
            "kind": self.kind,
            "model": getattr(model, "name", type(model).__name__),
            "input": {"shape": [None, *self.shape], "dtype": str(self.dtype).replace("torch.", ""),
                      **({"vocabulary_size": self.vocabulary} if self.vocabulary else {})},
            "output": {"shape": [None, *self.output_shape], "dtype": str(probe.dtype),
                       "classes": self.output_shape[0] if self.is_classifier else None},
            "accepts_images": self.accepts_images,
            "normalized_by_server": prepare is not None,
        }

    def _request_model(self) -> type[BaseModel]:
        limit = self.settings.max_abs_number
        if self.dtype.is_floating_point:
            item: Any = Annotated[float, Field(ge=-limit, le=limit, allow_inf_nan=False)]
        else:
            low, high = (0, self.vocabulary - 1) if self.vocabulary else (-int(limit), int(limit))
            item = integer(low, high)
        for size in reversed(self.shape):
            item = Annotated[list[item], Field(min_length=size, max_length=size)]
        samples = Annotated[list[item], Field(min_length=1, max_length=self.settings.max_samples,
                                              description=f"samples, each of shape {list(self.shape)}")]
        return create_model("TensorRequest", __config__=STRICT, inputs=(samples, ...))

    def _response_model(self) -> type[BaseModel]:
        output: Any = float
        for _ in self.output_shape:
            output = list[output]
        fields: dict[str, Any] = {"outputs": (list[output], ...)}
        if self.is_classifier:
            fields["classes"] = (list[int], Field(description="the arg-max class of each sample"))
            fields["probabilities"] = (list[list[float]], Field(description="softmax of each sample's scores"))
        return create_model("TensorResponse", __config__=ConfigDict(extra="forbid"), **fields)

    def parse(self, value: Any) -> tuple[np.ndarray, int, Hashable]:
        request = json_object(value, {"inputs": f"list of up to {self.settings.max_samples} samples of shape "
                                                f"{list(self.shape)}"}, ("inputs",))
        array = sample_array(request["inputs"], self.shape, self.dtype, self.vocabulary, self.settings.max_samples,
                             self.settings.max_abs_number)
        validate(self.request_model, value)  # what the friendly checks above let through (true in a list of ints)
        return array, len(array), None

    def parse_images(self, images: Sequence[bytes]) -> tuple[np.ndarray, int, Hashable]:
        if not self.accepts_images:
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"The model's input is {list(self.shape)}, not an "
                               "image (1 or 3, H, W): send {\"inputs\": [...]} to POST /predict")
        if not images or len(images) > self.settings.max_samples:
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Expected 1 to {self.settings.max_samples} images "
                               f"in the form field \"images\". Received: {len(images)}")
        arrays = []
        for number, data in enumerate(images, start=1):
            try:
                arrays.append(read_image(data, self.shape))
            except ValueError as error:
                raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Image {number}: {error}") from None
        return np.stack(arrays), len(arrays), None

    @torch.inference_mode()
    def run_batch(self, key: Hashable, payloads: Sequence[np.ndarray]) -> list:
        """Each request's outputs; for a classifier, ``(outputs, probabilities)`` computed for the batch at once."""
        batch = np.concatenate(payloads)
        inputs = torch.as_tensor(self.prepare(batch) if self.prepare is not None else batch, dtype=self.dtype,
                                 device=self.device)
        outputs = map_structure(lambda t: t.float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy(),
                                self.model(inputs))
        if getattr(self, "is_classifier", False):
            outputs = (outputs, class_probabilities(outputs))
        rows, start = [], 0
        for payload in payloads:
            rows.append(map_structure(lambda o, s=start, n=len(payload): o[s:s + n], outputs))
            start += len(payload)
        return rows

    def answer(self, result) -> dict:
        outputs, probabilities = result if self.is_classifier else (result, None)
        if not np.isfinite(outputs).all():
            raise non_finite_error()
        answer = {"outputs": outputs.tolist()}
        if probabilities is not None:
            answer["classes"] = outputs.argmax(axis=1).tolist()
            answer["probabilities"] = probabilities.tolist()
        return answer


def class_probabilities(scores: np.ndarray) -> np.ndarray:
    """(N, C) scores -> (N, C) probabilities: rows that already are distributions as they are, else softmax."""
    scores = scores.astype(np.float64)
    is_distribution = (scores.min(axis=1) >= 0) & (np.abs(scores.sum(axis=1) - 1.0) < 1e-3)
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.where(is_distribution[:, None], scores, exp / exp.sum(axis=1, keepdims=True))


# == recipe predictors ====================================================================================
class RankedLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str | int
    probability: float


class ClassificationResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str
    label: str | int
    probability: float
    top: list[RankedLabel]


class TaggingResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str
    tokens: list[str]
    tags: list[str]
    entities: list[tuple[str, int, int, str]] = Field(description="[type, first token, end token (exclusive), text]")


class TranslationResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str
    translation: str


class Recommendation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: int | str
    title: str | None
    score: float


class RecommendationResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str
    recommendations: list[Recommendation]


PredictorResult = Union[ClassificationResult, TaggingResult, TranslationResult, RecommendationResult]


class PredictorResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    results: list[PredictorResult]


class PredictorServable:
    """A run folder whose recipe has a predictor: requests carry raw inputs (texts, user ids).

    The predictor is called by the worker on the inputs of all the requests of a batch that ask for
    the same ``top``; it reads what it needs from the run folder on each call.
    """

    kind = "predictor"
    accepts_images = False
    response_model = PredictorResponse

    def __init__(self, run_dir: Path, predictor, settings: ServeSettings, description: dict | None = None):
        self.run_dir, self.predictor, self.settings = Path(run_dir), predictor, settings
        text = Annotated[str, Field(min_length=1, max_length=settings.max_text_chars, pattern=r"\S")]
        self.request_model = create_model(
            "PredictorRequest", __config__=STRICT,
            inputs=(Annotated[list[text], Field(min_length=1, max_length=settings.max_samples,
                                                description="texts, sentences or user ids")], ...),
            top=(integer(1, settings.max_top) | None,
                 Field(None, description="classes or items to list (default: the predictor's)")))
        self.metadata = {**(description or {}), "kind": self.kind}

    def parse(self, value: Any) -> tuple[list[str], int, Hashable]:
        json_object(value, {"inputs": f"list of up to {self.settings.max_samples} texts or ids",
                            "top": f"1 to {self.settings.max_top} (optional)"}, ("inputs",))
        request = validate(self.request_model, value)
        return request.inputs, len(request.inputs), request.top

    def run_batch(self, top: int | None, payloads: Sequence[list[str]]) -> list:
        results = self.predictor(self.run_dir, [text for payload in payloads for text in payload], top)
        split, start = [], 0
        for payload in payloads:
            split.append(results[start:start + len(payload)])
            start += len(payload)
        return split

    def answer(self, results: list[dict]) -> dict:
        return PredictorResponse.model_validate({"results": results}).model_dump(mode="json")


# == recipe image predictors ===============================================================================
class DetectedObject(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    label: str = Field(alias="class")
    score: float
    box: list[float] = Field(description="[x1, y1, x2, y2] in the image's pixels")


class DetectionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str
    objects: list[DetectedObject]
    output: str


class SegmentationResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str
    classes: dict[str, float] = Field(description="the largest classes' shares of the pixels, background left out")
    mask: str = Field(description="base64 PNG at the image's size, one grey byte per pixel: its class id")
    output: str


class ImagePredictorResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    results: list[Union[DetectionResult, SegmentationResult]]


class ImagePredictorServable:
    """A run folder whose recipe predicts on images: requests carry the images (uploads or base64), and the
    recipe's image predictor answers them; no file is read or written on the server's side."""

    kind = "image predictor"
    accepts_images = True
    response_model = ImagePredictorResponse

    def __init__(self, run_dir: Path, image_predictor, settings: ServeSettings, description: dict | None = None):
        from PIL import Image

        self.run_dir, self.image_predictor, self.settings = Path(run_dir), image_predictor, settings
        image = Annotated[str, Field(min_length=1, description="a PNG, JPEG, BMP or GIF file, base64-encoded")]
        self.request_model = create_model(
            "ImageRequest", __config__=STRICT,
            images=(Annotated[list[image], Field(min_length=1, max_length=settings.max_samples)], ...),
            top=(integer(1, settings.max_top) | None,
                 Field(None, description="the best `top` results, whatever their score (default: the predictor's)")))
        image_predictor(self.run_dir, [Image.new("RGB", (32, 32))], None)  # loads the model: a broken run fails now
        self.metadata = {**(description or {}), "kind": self.kind, "accepts_images": True}

    def parse(self, value: Any) -> tuple[list, int, Hashable]:
        json_object(value, {"images": f"list of up to {self.settings.max_samples} base64-encoded image files",
                            "top": f"1 to {self.settings.max_top} (optional)"}, ("images",))
        request = validate(self.request_model, value)
        files = []
        for number, text in enumerate(request.images, start=1):
            try:
                files.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError):
                raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Image {number} is not base64: expected "
                                   "the bytes of a PNG, JPEG, BMP or GIF file in base64") from None
        pictures, size, _ = self.parse_images(files)
        return pictures, size, request.top

    def parse_images(self, images: Sequence[bytes]) -> tuple[list, int, Hashable]:
        if not images or len(images) > self.settings.max_samples:
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Expected 1 to {self.settings.max_samples} images. "
                               f"Received: {len(images)}")
        pictures, pixels = [], 0
        for number, data in enumerate(images, start=1):
            try:
                pictures.append(open_picture(data))
            except ValueError as error:
                raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Image {number}: {error}") from None
            pixels += pictures[-1].width * pictures[-1].height
            if pixels > self.settings.max_image_pixels:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"The images hold more than "
                                   f"{self.settings.max_image_pixels} pixels (the limit per request) by image "
                                   f"{number}: send smaller or fewer images")
        return pictures, len(pictures), None

    def run_batch(self, top: int | None, payloads: Sequence[list]) -> list:
        results = self.image_predictor(self.run_dir, [picture for payload in payloads for picture in payload], top)
        split, start = [], 0
        for payload in payloads:
            split.append([{"input": f"image {number}", **result}
                          for number, result in enumerate(results[start:start + len(payload)], start=1)])
            start += len(payload)
        return split

    def answer(self, results: list[dict]) -> dict:
        return ImagePredictorResponse.model_validate({"results": results}).model_dump(mode="json", by_alias=True)


# == language models =====================================================================================
class GeneratorResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="the prompt followed by the continuation")
    continuation: str


class GeneratorServable:
    """A language model's run: a prompt and sampling settings, bounded by the server's limits."""

    kind = "generator"
    accepts_images = False
    response_model = GeneratorResponse

    def __init__(self, model: nn.Module, defaults: Any, settings: ServeSettings, description: dict | None = None):
        self.model, self.settings = model.eval(), settings
        vocabulary = len(model.vocab)
        self.characters = {token for token in model.vocab.tokens if isinstance(token, str) and len(token) == 1}
        temperature = min(float(getattr(defaults, "temperature", 1.0)), settings.max_temperature)
        top_k = getattr(defaults, "top_k", 0) or None
        self.top_p = getattr(defaults, "top_p", 1.0)
        self.request_model = create_model(
            "GeneratorRequest", __config__=STRICT,
            prompt=(Annotated[str, Field(min_length=1, max_length=settings.max_text_chars,
                                         pattern=_characters_pattern(self.characters),
                                         description="characters of the model's vocabulary")], ...),
            max_tokens=(integer(1, settings.max_generation_tokens),
                        min(200, settings.max_generation_tokens)),
            temperature=(Annotated[float, Field(ge=0, le=settings.max_temperature, allow_inf_nan=False)],
                         Field(temperature, description="0: greedy")),
            top_k=(integer(1, min(settings.max_top, vocabulary)) | None,
                   Field(None if top_k is None else min(top_k, settings.max_top, vocabulary))),
            seed=(integer(0, int(min(2 ** 31 - 1, settings.max_abs_number))) | None,
                  Field(getattr(defaults, "seed", None), description="the same seed gives the same text")))
        self.metadata = {**(description or {}), "kind": self.kind, "vocabulary_size": vocabulary}

    def parse(self, value: Any) -> tuple[Any, int, Hashable]:
        json_object(value, {"prompt": "text", "max_tokens": f"1 to {self.settings.max_generation_tokens}",
                            "temperature": f"0 to {self.settings.max_temperature:g}", "top_k": "integer or null",
                            "seed": "integer or null"}, ("prompt",))
        prompt = value["prompt"]
        unknown = sorted(set(prompt) - self.characters) if isinstance(prompt, str) else []
        if unknown:
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"The prompt has characters the model's vocabulary "
                               f"lacks: {unknown[:20]}. Expected characters of: {''.join(sorted(self.characters))!r}")
        return validate(self.request_model, value), 1, None

    def run_batch(self, key: Hashable, requests: Sequence[Any]) -> list:
        texts = [self.model.generate(r.prompt, r.max_tokens, r.temperature, r.top_k,
                                     self.top_p if self.top_p < 1.0 else None, seed=r.seed) for r in requests]
        return [{"text": text, "continuation": text[len(r.prompt):]} for r, text in zip(requests, texts)]

    def answer(self, result: dict) -> dict:
        return result


def _characters_pattern(characters: set[str]) -> str | None:
    """A regular expression (the same in JSON Schema's and pydantic's dialects) matching text made only of
    ``characters``; None when one is outside the Basic Multilingual Plane."""
    characters = sorted(characters)
    if not characters or any(ord(c) > 0xFFFF for c in characters):
        return None
    return "^[" + "".join(c if c.isalnum() and c.isascii() else f"\\u{ord(c):04x}" for c in characters) + "]+$"


Servable = Union[TensorServable, PredictorServable, ImagePredictorServable, GeneratorServable]


# == which kind serves a run ===============================================================================
def load_servable(run_dir: str | Path, settings: ServeSettings, which: str = "auto") -> Servable:
    """The servable for a run folder (or a folder holding a model file).

    A run of a recipe with a predictor is served through the predictor (a recipe predicting on image
    files through its image predictor, on uploaded images; a language model's run through its model's
    ``generate``, so that requests can set the length and sampling within the limits); any other run
    through its model file (``which``: auto, final, best or last).
    """
    from deepzen.recipes import RECIPES, run_config
    from deepzen.runs import model_file, run_recipe_name
    from deepzen.training.serialization import load_model

    run_dir = Path(run_dir)
    recipe = run_recipe_name(run_dir)
    description = {"run": str(run_dir), "recipe": recipe}
    entry = RECIPES.get(recipe) if recipe is not None and recipe in RECIPES else None
    if entry is not None and entry.image_predictor is not None:
        return ImagePredictorServable(run_dir, entry.image_predictor, settings, description)
    predictor = entry.predictor if entry is not None else None
    if predictor is None:
        path = model_file(run_dir, which)
        model = load_model(path, compile=False)
        prepare = None
        if (run_dir / "preprocessing.json").is_file():  # trained on normalized pixels: the server normalizes
            preprocessing = run_images(run_dir, model)
            if model.input_spec is None and preprocessing.input_shape is not None:  # a file saved unbuilt
                model.build(preprocessing.input_shape)
            prepare = preprocessing.prepare
        return TensorServable(model, settings, {**description, "model_file": path.name}, prepare)
    if (run_dir / "model.dz").is_file():
        model = load_model(run_dir / "model.dz", compile=False)
        if callable(getattr(model, "encode_prompt", None)) and callable(getattr(model, "generate", None)):
            return GeneratorServable(model, run_config(run_dir)[1], settings, {**description, "model_file": "model.dz"})
    return PredictorServable(run_dir, predictor, settings, description)
