"""The explorer: the glass box in a browser (``convscope explore MODEL``).

* :mod:`.walk`     the one module that walks a model (records each layer's input and output),
* :mod:`.inputs`   built-in samples, uploads (size- and pixel-limited), conversion to input,
* :mod:`.unit`     one unit's receptive field and term-by-term computation (trace modules),
* :mod:`.images`   arrays to PNG pictures,
* :mod:`.session`  :class:`Explorer`: the state and every API answer as a dict,
* :mod:`.app`      the Starlette routes, :mod:`.server` binding and serving.

The JSON API is documented in docs/explorer.md.
"""
from .session import Explorer

__all__ = ["Explorer"]
