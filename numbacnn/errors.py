"""Errors that reach a user as one clear line.

Every error a user can cause (a bad spec, a wrong file, a missing device) is a
subclass of :class:`NumbacnnError`. The CLI prints ``error: <message>`` and exits
with status 2; nothing else should ever print a traceback.
"""


def excerpt(text: str, limit: int = 60) -> str:
    """``text`` quoted for a message: control characters escaped, at most ``limit``
    characters of it, elided in the middle (a hostile 100 KB line is not echoed in
    full, and its end, often what differs, still shows)."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit - 1 - limit // 3] + "…" + text[len(text) - limit // 3:])


def printable(text: object) -> str:
    """``text`` for a terminal line: each character that is not printable (an escape
    sequence, a bell, a line break) written as its Python escape (``\\x1b``)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown_path(path: object, limit: int = 200) -> str:
    """A path for a message: as it is when printable and short, else :func:`excerpt`."""
    text = str(path)
    return text if text.isprintable() and len(text) <= limit else excerpt(text, 60)


class NumbacnnError(Exception):
    """Base class: the message says what is wrong, where, and how to fix it.

    Messages speak the library's terms. ``field`` is the library's name of the value at
    fault when there is one (a setting such as ``batch_size``, a parameter such as
    ``opset``), else None; a caller that names values otherwise maps the error by it
    (the CLI to the option of that name, e.g. ``--batch-size``).
    """

    def __init__(self, *args: object, field: str | None = None) -> None:
        super().__init__(*args)
        self.field = field


class SpecError(NumbacnnError):
    """A layer spec cannot be parsed or does not fit its input."""


class MissingInputError(SpecError):
    """A spec has no input line and no input size was given separately."""


class ShapeError(NumbacnnError):
    """An array or a layer geometry has the wrong shape."""


class DeviceError(NumbacnnError):
    """The requested device is not available."""


class DataError(NumbacnnError):
    """A dataset file is missing, corrupt or does not fit the network."""


class ModelFileError(NumbacnnError):
    """A model file is missing, corrupt, truncated or cannot be written."""


class NotAModelError(ModelFileError):
    """A file given as a model is not a numbacnn model file (not HDF5, or another format)."""


class NotADatasetError(DataError):
    """A file given as a dataset file is not a readable numbacnn dataset file."""


class MissingBundledDataError(DataError):
    """The dataset bundled with numbacnn is missing from the installation."""


class TrainingError(NumbacnnError):
    """Training cannot go on (for example a NaN loss)."""
