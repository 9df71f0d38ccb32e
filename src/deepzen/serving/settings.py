"""The server's settings: limits with safe defaults, batching, and security (``deepzen serve --help`` lists them)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

API_KEY_VARIABLE = "DEEPZEN_API_KEY"  # the environment variable `deepzen serve` reads the API key from
LOOPBACK = "127.0.0.1"


def _setting(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``deepzen serve`` can be told, with defaults safe for a server open to a network.

    Requests over a limit get a 4xx (503 for the server's own capacity) naming the limit and its
    value. Each field's help is also its ``deepzen serve --OPTION`` help.
    """

    max_body_bytes: int = _setting(8 * 1024 * 1024, "largest request body")
    max_json_depth: int = _setting(32, "deepest nesting of arrays and objects in a JSON body")
    max_abs_number: float = _setting(1e6, "largest magnitude of a number in a request")
    max_samples: int = _setting(64, "most samples (arrays, images, texts, user ids) per request")
    max_text_chars: int = _setting(2000, "most characters per text input or prompt")
    max_image_pixels: int = _setting(4096 * 4096, "most decoded pixels in the images of one request to a detection "
                                                  "or segmentation run (they are held until the model runs)")
    max_generation_tokens: int = _setting(500, "most tokens a language model generates for one request")
    max_temperature: float = _setting(2.0, "highest sampling temperature a request may ask for")
    max_top: int = _setting(100, "most classes / items (top, top_k) a request may ask for")
    max_connections: int = _setting(256, "requests handled (and connections held) at once; more get 503")
    request_timeout: float = _setting(30.0, "seconds from a request's arrival to its answer; later: 503")
    max_batch_size: int = _setting(64, "most samples per model call (a request is never split)")
    max_wait_ms: float = _setting(2.0, "how long a batch waits for more requests after its first")
    torch_threads: int = _setting(1, "the model's intra-op threads (small models: 1, requests are batched)")
    host: str = _setting(LOOPBACK, "address to listen on (default: loopback only)")
    port: int = _setting(8000, "TCP port (0: any free port)")
    api_key: str | None = _setting(None, f"require this key (Authorization: Bearer KEY or X-API-Key: KEY) on "
                                         f"all but /health, /ready, /ui and the docs (default: ${API_KEY_VARIABLE})")
    cors_origins: tuple[str, ...] = _setting((), "origins allowed to call the API from a browser (default: none, "
                                                 "CORS off)")

    def __post_init__(self):
        positive = ("max_body_bytes", "max_json_depth", "max_abs_number", "max_samples", "max_text_chars",
                    "max_image_pixels", "max_generation_tokens", "max_temperature", "max_top", "max_connections",
                    "request_timeout", "max_batch_size", "torch_threads")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"ServeSettings expects {name} > 0. Received: {name}={value!r}")
        if self.max_wait_ms < 0:
            raise ValueError(f"ServeSettings expects max_wait_ms >= 0. Received: max_wait_ms={self.max_wait_ms!r}")
        if self.max_json_depth < 4:
            raise ValueError(f"ServeSettings expects max_json_depth >= 4 (a request with one image sample is 4 deep). "
                             f"Received: max_json_depth={self.max_json_depth}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("ServeSettings: api_key is empty; give a key or None for no key")

    def limits(self) -> dict[str, float]:
        """The limits a client must respect (``GET /metadata`` shows them)."""
        names = ("max_body_bytes", "max_json_depth", "max_abs_number", "max_samples", "max_text_chars",
                 "max_image_pixels", "max_generation_tokens", "max_temperature", "max_top", "max_connections",
                 "request_timeout", "max_batch_size")
        return {name: getattr(self, name) for name in names}

    def replace(self, **changes) -> "ServeSettings":
        return dataclasses.replace(self, **changes)


def api_key_from_environment() -> str | None:
    """The API key in ``$DEEPZEN_API_KEY`` (None when unset or empty)."""
    return os.environ.get(API_KEY_VARIABLE) or None
