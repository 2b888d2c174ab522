"""Exceptions the library raises for bad input. Messages say what is wrong and what to do."""


class MyoLabelError(Exception):
    """Base of every error the library raises on purpose."""


class UnsupportedImage(MyoLabelError):
    """The file is not an image we can read, or its content is not usable as CT."""
