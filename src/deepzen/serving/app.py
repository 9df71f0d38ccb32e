"""The FastAPI application behind ``deepzen serve``.

Endpoints (``/docs`` shows them with the request and response models of the served model):

- ``POST /predict``: JSON in, JSON out; the body's model depends on what is served (see
  :mod:`deepzen.serving.servables`). ``POST /predict/image``: PNG/JPEG files as multipart
  (``images``), for models whose input is an image and for runs that predict on images (detection,
  segmentation).
- ``GET /health`` (the process answers), ``GET /ready`` (the model is loaded and its worker runs),
  ``GET /metadata`` (input and output specs, limits, the run), ``GET /metrics`` (Prometheus text).
- ``GET /ui``: a page to try the model (draw a digit, or type a sentence).
- ``GET /openapi.json`` and ``GET /docs``.

Every refused request is answered ``{"error": message, "status": code}`` with a 4xx that says what
was expected (a 503 when the server itself is at a limit). :class:`Guard` (plain ASGI, in front of
FastAPI) applies the API key, the body-size, concurrency and time limits, answers OPTIONS and
HEAD, and counts requests for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from contextlib import asynccontextmanager
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any

from deepzen.serving.batching import MicroBatcher
from deepzen.serving.metrics import CONTENT_TYPE as METRICS_TYPE
from deepzen.serving.metrics import Metrics
from deepzen.serving.requests import JSON_TYPE, RequestError, parse_json
from deepzen.serving.servables import Servable, TensorServable, non_finite_error

SERVE_EXTRA = "pip install 'deepzen[serve]'"
try:
    import fastapi_offline  # Swagger UI's files, so that /docs works without reaching a CDN
    import python_multipart  # noqa: F401  (FastAPI reads multipart uploads with it)
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import FileResponse, HTMLResponse, Response
    from pydantic import BaseModel
    from starlette.exceptions import HTTPException
except ModuleNotFoundError as missing:
    raise ImportError(f"deepzen serve needs the serve extra ({SERVE_EXTRA}): the package {missing.name!r} is not "
                      f"installed") from missing

DOCS_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
OPEN_PATHS = frozenset({"/health", "/ready", "/ui", "/docs", "/openapi.json", *(f"/docs/{name}" for name in DOCS_FILES)})


class ErrorResponse(BaseModel):
    error: str
    status: int


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    kind: str


ERRORS = {code: {"model": ErrorResponse, "description": HTTPStatus(code).phrase}
          for code in (400, 401, 404, 405, 413, 415, 422, 503)}


class ModelFailure(Exception):
    """The model raised on input that passed validation: a 500 for the requests of that batch."""


def json_response(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type=JSON_TYPE, headers=headers)


def error_response(status: int, message: str, headers: dict | None = None) -> Response:
    return json_response({"error": message, "status": int(status)}, status, headers)


class ServerState:
    """What the endpoints share: the servable, its settings and worker, and the counters."""

    def __init__(self, servable: Servable):
        self.servable, self.settings = servable, servable.settings
        self.metrics = Metrics()
        self.batcher: MicroBatcher | None = None  # set while the app runs (between startup and shutdown)
        self.in_flight = 0  # requests the guard is handling now


def create_app(servable: Servable) -> Any:
    """The ASGI application serving ``servable`` under its settings (see the module docstring for the API).

    The model's worker starts with the application (its lifespan): use ``with TestClient(app)`` or
    a server that runs the lifespan (uvicorn does).
    """
    settings = servable.settings
    state = ServerState(servable)

    @asynccontextmanager
    async def lifespan(app):
        state.batcher = MicroBatcher(servable.run_batch, settings.max_batch_size, settings.max_wait_ms,
                                     on_batch=state.metrics.batch_size.observe)
        try:
            yield
        finally:
            batcher, state.batcher = state.batcher, None  # /ready says no while the queue drains
            await asyncio.to_thread(batcher.close)

    app = FastAPI(title="deepzen model server", version="1", lifespan=lifespan, responses=ERRORS, redoc_url=None,
                  docs_url=None,
                  description=f"Serves a {servable.kind} model ({servable.metadata.get('recipe') or 'model file'}). "
                  "Every refused request is answered {\"error\": message, \"status\": code}.")
    _add_error_handlers(app)
    page = resources.files("deepzen.serving").joinpath("ui.html").read_text(encoding="utf-8")

    @app.get("/health", response_model=Health, summary="The process is alive")
    async def health():
        return json_response({"status": "ok"})

    @app.get("/ready", response_model=Ready, summary="The model is loaded and its worker runs")
    async def ready():
        if state.batcher is None:
            return error_response(503, "The model's worker is not running (starting or shutting down)")
        return json_response({"ready": True, "kind": servable.kind})

    @app.get("/metadata", summary="What the model takes and gives, the limits, the run")
    async def metadata() -> dict[str, Any]:
        return json_response({**servable.metadata, "limits": settings.limits(),
                              "auth": settings.api_key is not None})

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics",
             responses={200: {"content": {METRICS_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}})
    async def metrics():
        return Response(state.metrics.render(state.in_flight), media_type=METRICS_TYPE)

    @app.get("/ui", response_class=HTMLResponse, summary="A page to try the model")
    async def ui():
        return HTMLResponse(page)

    _add_docs(app)
    request_schema = {"$ref": f"#/components/schemas/{servable.request_model.__name__}"}

    # The guard answers POST /predict itself with predict_json (the hot path); this route declares it for the
    # schema and /docs, and serves it when the FastAPI app is mounted without the guard.
    @app.post("/predict", response_model=servable.response_model, summary="Predict",
              openapi_extra={"requestBody": {"required": True, "content": {JSON_TYPE: {"schema": request_schema}}}})
    async def predict(request: Request):
        return await predict_json(state, request.headers.get("content-type", ""), await request.body())

    if servable.accepts_images:
        @app.post("/predict/image", response_model=servable.response_model, summary="Predict on image files")
        async def predict_image(images: list[UploadFile] = File(..., description="PNG or JPEG files")):
            if len(images) > settings.max_samples:
                raise RequestError(422, f"At most {settings.max_samples} images per request. Received: {len(images)}")
            return await _answer(state, *servable.parse_images([await image.read() for image in images]))

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            request = servable.request_model.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request.pop("$defs", {}))
            components[servable.request_model.__name__] = request
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    guarded = Guard(app, state)
    if settings.cors_origins:
        return CORSMiddleware(guarded, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                              allow_headers=["Content-Type", "Authorization", "X-API-Key"])
    return guarded


async def predict_json(state: ServerState, content_type: str, body: bytes) -> Response:
    """The answer to ``POST /predict`` (raises :class:`RequestError` or :class:`ModelFailure` to refuse)."""
    if content_type.split(";")[0].strip().lower() != JSON_TYPE:
        raise RequestError(415, f"Expected Content-Type: {JSON_TYPE}. Received: {content_type or 'none'}")
    value = parse_json(body, state.settings.max_json_depth, state.settings.max_abs_number)
    return await _answer(state, *state.servable.parse(value))


async def _answer(state: ServerState, payload: Any, size: int, key: Any) -> Response:
    servable = state.servable
    if state.batcher is None:
        raise RequestError(503, "The model's worker is not running (starting or shutting down)")
    try:
        result = await state.batcher.submit(payload, size, key)
    except RequestError:
        raise
    except (ValueError, KeyError) as error:
        if isinstance(servable, TensorServable):
            raise ModelFailure(f"The model failed: {type(error).__name__}: {error}") from error
        raise RequestError(422, str(error).strip("'\"")) from None  # the predictor's word on a bad input
    except Exception as error:  # noqa: BLE001
        raise ModelFailure(f"The model failed: {type(error).__name__}: {error}") from error
    try:
        return json_response(servable.answer(result))
    except ValueError:  # json.dumps refuses NaN and Infinity
        raise non_finite_error() from None


def _add_error_handlers(app) -> None:
    async def refused(request, error: RequestError):
        return error_response(error.status, str(error))

    async def invalid(request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()[:5])
        return error_response(422, problems or "The request does not match the endpoint's schema (see /docs)")

    async def http_error(request, error: HTTPException):
        if error.status_code == 404:
            endpoints = ", ".join(f"{'/'.join(methods)} {path}" for path, methods in _paths(request.app).items())
            return error_response(404, f"No endpoint {request.url.path!r}. Expected one of: {endpoints}")
        if error.status_code == 405:
            allowed = _paths(request.app).get(request.url.path, [])
            return error_response(405, f"Method {request.method} is not allowed on {request.url.path}. Expected: "
                                  f"{', '.join(allowed)}", {"Allow": ", ".join(allowed)})
        return error_response(error.status_code, str(error.detail))

    async def failed(request, error: ModelFailure):
        return error_response(500, str(error))

    app.add_exception_handler(RequestError, refused)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ModelFailure, failed)


def _add_docs(app) -> None:
    """``GET /docs``: Swagger UI from the files installed with the serve extra, so it works offline."""
    folder = Path(fastapi_offline.__file__).parent / "static"

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title}: API",
                                   swagger_js_url="/docs/swagger-ui-bundle.js", swagger_css_url="/docs/swagger-ui.css",
                                   swagger_favicon_url="/docs/favicon.png")

    def send(path: Path, media_type: str):
        async def docs_file():
            return FileResponse(path, media_type=media_type, headers={"Cache-Control": "max-age=86400"})
        return docs_file

    for name, media_type in DOCS_FILES.items():
        app.add_api_route(f"/docs/{name}", send(folder / name, media_type), methods=["GET"], include_in_schema=False)


def _paths(app) -> dict[str, list[str]]:
    """``{path: [methods]}`` of the app's routes (HEAD left out: GET implies it)."""
    return {route.path: sorted(route.methods - {"HEAD"}) for route in app.routes if getattr(route, "methods", None)}


class Guard:
    """Plain ASGI in front of the app: API key, body size, concurrency and time limits, OPTIONS/HEAD, metrics."""

    def __init__(self, app, state: ServerState):
        self.app, self.state = app, state
        self.settings = state.settings
        self.key = state.settings.api_key.encode() if state.settings.api_key else None
        self._paths: dict[str, list[str]] | None = None

    @property
    def paths(self) -> dict[str, list[str]]:
        if self._paths is None:
            self._paths = _paths(self.app)
        return self._paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        status = [500]

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope, path, method)
            if refusal is not None:
                await refusal(scope, receive, send_counted)
            elif method == "OPTIONS":
                allowed = self.paths[path]
                await Response(status_code=204, headers={"Allow": ", ".join(["OPTIONS", *allowed])})(
                    scope, receive, send_counted)
            else:
                if method == "HEAD":
                    scope = dict(scope, method="GET")  # the server drops the body of HEAD's answer
                await self._limited(scope, receive, send_counted, direct=path == "/predict" and method == "POST")
        finally:
            label = path if path in self.paths else "other"
            self.state.metrics.record(label, status[0], time.perf_counter() - started)

    def _refusal(self, scope, path: str, method: str):
        if self.key is not None and path not in OPEN_PATHS and not self._authorized(scope):
            return error_response(401, "Expected an API key: Authorization: Bearer KEY or X-API-Key: KEY",
                                  {"WWW-Authenticate": "Bearer"})
        if path in self.paths and method in ("OPTIONS", "HEAD"):
            if method == "HEAD" and "GET" not in self.paths[path]:
                return error_response(405, f"Method HEAD is not allowed on {path}. Expected: "
                                      f"{', '.join(self.paths[path])}", {"Allow": ", ".join(self.paths[path])})
        elif method == "OPTIONS":
            return error_response(404, f"No endpoint {path!r}")
        length = _header(scope, b"content-length")
        if length is not None and not length.isdigit():
            return error_response(400, f"Content-Length must be the body's size in bytes. Received: {length[:40]!r}")
        if length is not None and int(length) > self.settings.max_body_bytes:
            return error_response(413, f"The body is {int(length)} bytes; the limit is {self.settings.max_body_bytes} "
                                  f"bytes. Send fewer samples per request")
        if self.state.in_flight >= self.settings.max_connections:
            return error_response(503, f"The server is busy: {self.state.in_flight} requests in flight (the limit is "
                                  f"{self.settings.max_connections}). Retry shortly")
        return None

    def _authorized(self, scope) -> bool:
        given = _header(scope, b"x-api-key")
        if given is None:
            bearer = _header(scope, b"authorization") or b""
            given = bearer[7:] if bearer[:7].lower() == b"bearer " else b""
        return hmac.compare_digest(given.strip(), self.key)  # constant time: the key is not guessed byte by byte

    async def _limited(self, scope, receive, send, direct: bool = False):
        """Runs the app (or, with ``direct``, the ``POST /predict`` handler itself) within the size and time limits.

        ``POST /predict`` is the hot path: calling its handler here skips the framework's routing and
        middleware layers, about a third of the server's time per request on a small model; the route
        declared in the app (its schema, ``/docs``) runs the same :func:`predict_json`.
        """
        limit, received = self.settings.max_body_bytes, 0
        started = [False]

        async def receive_limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestError(413, f"The body is over the limit of {limit} bytes. Send fewer samples per "
                                       "request")
            return message

        async def send_tracked(message):
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        self.state.in_flight += 1
        try:
            call = self._predict(scope, receive_limited, send_tracked) if direct else \
                self.app(scope, receive_limited, send_tracked)
            await _within(self.settings.request_timeout, call)
        except TimeoutError:
            if not started[0]:
                await error_response(503, f"The request did not finish within {self.settings.request_timeout:g} s "
                                     "(the request timeout)")(scope, receive, send)
        finally:
            self.state.in_flight -= 1

    async def _predict(self, scope, receive, send) -> None:
        try:
            chunks, more = [], True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            content_type = (_header(scope, b"content-type") or b"").decode("latin-1")
            response = await predict_json(self.state, content_type, b"".join(chunks))
        except RequestError as error:
            response = error_response(error.status, str(error))
        except ModelFailure as error:
            response = error_response(500, str(error))
        await response(scope, receive, send)


async def _within(seconds: float, call) -> None:
    if hasattr(asyncio, "timeout"):  # Python 3.11+: no extra task per request
        async with asyncio.timeout(seconds):
            await call
    else:
        await asyncio.wait_for(call, seconds)


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None
