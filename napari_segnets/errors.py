"""Errors with messages meant for people: what was wrong and what to do."""


class SegnetsError(Exception):
    """Base class: the message is one clear sentence a biologist can act on."""


class InputError(SegnetsError, ValueError):
    """Bad input data or arguments (shape, dtype, NaN, missing file, ...)."""


class CheckpointError(SegnetsError):
    """A checkpoint file is missing, unsafe, tampered with or incompatible."""


class StoreError(SegnetsError):
    """The curated training-set store refused an operation or is inconsistent."""
