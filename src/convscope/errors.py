"""The one exception type users see.

Every mistake a user can make (a wrong shape, a bad argument, a broken file) raises
:class:`ConvscopeError` with one sentence: what was expected, what was got, and how to fix it.
It subclasses ``ValueError`` so ordinary ``except ValueError`` code keeps working.
"""


class ConvscopeError(ValueError):
    """A user-facing error whose message is one clear sentence.

    The message is kept to one line whatever it quotes: control characters (a newline in a name
    read from a damaged file, a carriage return in a path) are written as escapes (``\\n``)."""

    def __init__(self, message="", *args):
        if isinstance(message, str) and not message.isprintable():
            message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        super().__init__(message, *args)


def format_count(n: int) -> str:
    """Thousands separators for counts in messages: 43264 -> '43,264'."""
    return f"{n:,}"


def format_shape(shape) -> str:
    """A per-sample shape as people write it: (256, 6, 6) -> '256×6×6'."""
    return "×".join(str(int(s)) for s in shape)
