"""Serving the explorer: bind, print the address, open a browser, stop cleanly on Ctrl-C.

The socket is bound here (not by uvicorn) so that a port in use is one clear error (exit 2
through the command line) and ``--port 0`` can report the free port the system picked.
"""
from __future__ import annotations

import errno
import socket
import threading
import webbrowser

from ..errors import ConvscopeError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    if not 0 <= int(port) <= 65535:
        raise ConvscopeError(f"--port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ConvscopeError(f"--host {host}: cannot resolve it ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ConvscopeError(f"port {port} on {host} is in use; choose another with --port N "
                                 "(or --port 0 for any free port)") from None
        raise ConvscopeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def serve(app, sock: socket.socket, open_browser: bool) -> int:
    """Run ``app`` on ``sock`` until Ctrl-C; returns 0."""
    import uvicorn

    url = url_of(sock)
    print(f"convscope explore: serving at {url}  (Ctrl-C to stop)", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if open_browser:
        def opener():
            for _ in range(200):
                if server.started:
                    break
                threading.Event().wait(0.05)
            webbrowser.open(url)
        threading.Thread(target=opener, daemon=True).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled after shutting down
        pass
    finally:
        sock.close()
    print("convscope explore: stopped", flush=True)
    return 0
