"""``deepzen serve``: a model, or a recipe's run, behind an HTTP API (FastAPI on uvicorn).

- :mod:`~deepzen.serving.settings`: limits with safe defaults, batching, security (:class:`ServeSettings`).
- :mod:`~deepzen.serving.servables`: what is served (arrays and images, recipe predictors, language
  models) with request and response models generated from the model.
- :mod:`~deepzen.serving.batching`: the micro-batching worker (one per model, off the event loop).
- :mod:`~deepzen.serving.app`: the endpoints (``/predict``, ``/health``, ``/ready``, ``/metadata``,
  ``/metrics``, ``/ui``, ``/docs``) and the request guard; :mod:`~deepzen.serving.server`: uvicorn.

The app and the server need the ``serve`` extra (``pip install 'deepzen[serve]'``). This package's
top level imports only the settings (the command line builds ``deepzen serve --help`` from them
without importing torch); :mod:`~deepzen.serving.spec` needs only torch (``deepzen export`` uses it).

Example:
    >>> from deepzen.serving.app import create_app                      # doctest: +SKIP
    >>> from deepzen.serving.servables import TensorServable            # doctest: +SKIP
    >>> app = create_app(TensorServable(model, ServeSettings()))       # doctest: +SKIP
"""

from deepzen.serving.settings import ServeSettings

__all__ = ["ServeSettings"]
