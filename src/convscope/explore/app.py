"""The explorer's web application (Starlette): the page, its two static files, the JSON API.

Routes (documented for scripts in docs/explorer.md):

=========================  ==========================================================
``GET /``                  the page (``index.html``), ``GET /static/app.js|style.css``
``GET /api/model``         totals, every row as ``summary --format json``, the diagram
``GET /api/layer``         ``?name=`` one row with its derivations (``explain``)
``GET /api/input``         the current input picture and top classes
``POST /api/input``        ``{"sample": "digit-3"}``: use a built-in input
``POST /api/upload``       the raw bytes of a PNG/JPEG as the request body
``GET /api/maps``          ``?layer=`` a mosaic of the layer's feature maps
``GET /api/values``        ``?layer=&channel=`` the numbers of one map (or of a vector)
``GET /api/unit``          ``?layer=&unit=c,i,j`` receptive field and term-by-term sum
``GET /api/saliency``      ``?class=k[&layer=&unit=]`` dL/dx and the unit's kernel gradient
``GET /api/filters``       ``?layer=`` the kernels of a conv layer
``GET /api/run``           history.json and the confusion matrix (with ``--run``)
=========================  ==========================================================

Every error is JSON ``{"error": "one sentence"}`` with a 4xx status (500 only for a bug,
with no stack trace in the response); the server keeps serving. Static files are read once
from the package at start-up: no route takes a path, so no route can read any other file.
"""
from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Dict

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import ConvscopeError
from .inputs import MAX_UPLOAD_BYTES
from .session import Explorer

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
_log = logging.getLogger("convscope.explore")


def _static_files() -> Dict[str, bytes]:
    folder = resources.files("convscope.explore") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC}


def _param(request: Request, key: str, required: bool = True):
    value = request.query_params.get(key)
    if value is None and required:
        raise ConvscopeError(f"missing query parameter {key!r}")
    return value


def _int(text, key: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ConvscopeError(f"{key} must be an integer, got {text!r}") from None


def _unit(text) -> list:
    if text is None:
        return None
    parts = [p for p in str(text).split(",")]
    if len(parts) > 8:
        raise ConvscopeError("unit must be a few integers separated by commas, e.g. 3,10,12")
    return [_int(p, "unit") for p in parts]


def _json(data, status: int = 200) -> Response:
    body = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ConvscopeError(f"the upload is {int(declared):,} bytes; images up to {limit:,} bytes are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ConvscopeError(f"the upload is larger than {limit:,} bytes, the most accepted")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(explorer: Explorer) -> Starlette:
    """The Starlette application serving ``explorer``."""
    files = _static_files()

    async def page(request: Request) -> Response:
        return Response(files["index.html"], media_type=STATIC["index.html"])

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files or name == "index.html":
            return _json({"error": f"no static file {name!r}; the page uses app.js and style.css"}, 404)
        return Response(files[name], media_type=STATIC[name])

    async def model(request):
        return _json(explorer.model_info())

    async def layer(request):
        return _json(explorer.layer_info(_param(request, "name")))

    async def get_input(request):
        return _json(explorer.input_info())

    async def post_input(request):
        try:
            body = json.loads(await _read_body(request, 4096) or b"null")
        except ValueError:
            raise ConvscopeError('the body must be JSON such as {"sample": "digit-3"}') from None
        if not isinstance(body, dict) or not isinstance(body.get("sample"), str):
            raise ConvscopeError('the body must be JSON such as {"sample": "digit-3"}')
        return _json(explorer.set_sample(body["sample"]))

    async def upload(request):
        data = await _read_body(request, MAX_UPLOAD_BYTES)
        name = request.query_params.get("name", "upload")[:200]
        return _json(explorer.set_upload(data, name))

    async def maps(request):
        return _json(explorer.maps(_param(request, "layer")))

    async def values(request):
        channel = _param(request, "channel", required=False)
        return _json(explorer.values(_param(request, "layer"), None if channel is None else _int(channel, "channel")))

    async def unit(request):
        return _json(explorer.unit(_param(request, "layer"), _unit(_param(request, "unit"))))

    async def saliency(request):
        target = _int(_param(request, "class"), "class")
        name = _param(request, "layer", required=False)
        return _json(explorer.saliency(target, name, _unit(_param(request, "unit", required=False))))

    async def filters(request):
        return _json(explorer.filters(_param(request, "layer")))

    async def run(request):
        return _json(explorer.run_info())

    async def user_error(request, error: ConvscopeError):
        return _json({"error": str(error)}, 400)

    async def http_error(request, error: HTTPException):
        messages = {404: f"no such route: {request.url.path}", 405: f"{request.method} is not allowed on "
                    f"{request.url.path}"}
        return _json({"error": messages.get(error.status_code, str(error.detail))}, error.status_code)

    async def bug(request, error: Exception):
        if isinstance(error, (MemoryError,)):
            return _json({"error": "not enough memory for this request"}, 503)
        _log.error("convscope explore: %s on %s: %s", type(error).__name__, request.url.path, error)
        return _json({"error": f"internal error ({type(error).__name__}); the server keeps running"}, 500)

    routes = [Route("/", page), Route("/static/{name}", static),
              Route("/api/model", model), Route("/api/layer", layer),
              Route("/api/input", get_input, methods=["GET"]), Route("/api/input", post_input, methods=["POST"]),
              Route("/api/upload", upload, methods=["POST"]), Route("/api/maps", maps),
              Route("/api/values", values), Route("/api/unit", unit), Route("/api/saliency", saliency),
              Route("/api/filters", filters), Route("/api/run", run)]
    return Starlette(routes=routes, exception_handlers={ConvscopeError: user_error, HTTPException: http_error,
                                                        Exception: bug})
