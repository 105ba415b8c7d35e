"""User-facing errors.

Every mistake a user can make (a missing file, a bad option, an image that cannot be read)
raises a subclass of :class:`PanoplaceError`. The CLI catches these and prints the message as
one line with a non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PanoplaceError(Exception):
    """Base class of errors caused by user input; the message is shown to the user as is."""


class InputError(PanoplaceError):
    """A path, file, option or value given by the user is missing or invalid."""


class ImageReadError(InputError):
    """An image file could not be decoded."""

    def __init__(self, path: str, reason: str = "cannot be decoded as an image") -> None:
        super().__init__(f"unreadable image {path}: {reason}")
        self.path = path
        self.reason = reason


class CalibrationError(PanoplaceError):
    """The annulus of a panoramic annular image could not be found."""


class CheckpointError(PanoplaceError):
    """A checkpoint is missing, of an unknown format, or of another architecture."""


class DatasetError(PanoplaceError):
    """A dataset is missing a file or column, or its ground truth does not match."""


class DescriptorMismatchError(PanoplaceError):
    """Query and database descriptors come from different models/configs or have bad values."""


class OutputError(PanoplaceError):
    """An output cannot be written: it is an input of the command, holds an earlier result (and
    ``--overwrite`` was not given), is locked by another run, or its disk is full, read-only or
    not writable."""
