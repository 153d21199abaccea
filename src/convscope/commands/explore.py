"""``convscope explore MODEL [--input CxHxW] [--image FILE] [--run DIR] [--host H] [--port N] [--no-browser]``.

Serves the explorer page (see :mod:`convscope.explore`) from a local web server, prints its
address and opens it in a browser. MODEL is anything ``summary`` takes. Ctrl-C stops it
(exit 0); a port in use is one line and exit 2.
"""
from __future__ import annotations

DEFAULT_PORT = 8765


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explore", help="explore a model in the browser: layers, derivations, units, gradients",
        description="Serve an interactive page for MODEL on a local web server: click a layer for its "
                    "derivations, a unit for its receptive field and its sum term by term.")
    parser.add_argument("model", metavar="MODEL",
                        help="zoo name, .json/.yaml spec, .npz checkpoint, or text form")
    parser.add_argument("--input", metavar="CxHxW", default=None,
                        help="per-sample input shape such as 3x32x32 (default: the model's own)")
    parser.add_argument("--image", metavar="FILE", default=None, help="start with this image as the input")
    parser.add_argument("--run", metavar="DIR", default=None,
                        help="a training run folder (convscope train --out DIR): curves and confusion matrix")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..errors import ConvscopeError
    try:
        from ..explore.app import create_app
        from ..explore.server import bind, serve
    except ImportError as error:
        raise ConvscopeError(f"the explorer needs starlette and uvicorn ({error.name} is missing); install "
                             "them with pip install 'convscope[explore]'") from None
    from ..explore.session import Explorer

    sock = bind(args.host, args.port)  # first: a port in use fails before the model is loaded
    try:
        explorer = Explorer(args.model, args.input, image=args.image, run=args.run)
        app = create_app(explorer)
    except BaseException:
        sock.close()
        raise
    return serve(app, sock, open_browser=not args.no_browser)
