"""The whole verikit exception tree.

Every error a user can cause derives from :class:`VerikitError`; the CLI turns these into one
line on stderr and exit status 1. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations


class VerikitError(Exception):
    """Base class of every error verikit raises on purpose."""


class ImageError(VerikitError):
    """An input file is not a usable image (missing, corrupt, truncated, too large, not an image)."""


class FaceNotFoundError(ImageError):
    """A detector found no face in an image (a failure to acquire, in ISO/IEC 19795-1 terms)."""


class DataError(VerikitError):
    """A dataset folder, pairs file or vector has the wrong shape or content."""


class ModelError(VerikitError):
    """A model directory is missing, malformed, or cannot be built."""


class FingerprintMismatchError(VerikitError):
    """An artifact (gallery, calibration) was made with a different model than the one given."""


class GalleryError(VerikitError):
    """A gallery is missing, malformed, or an operation on it is not allowed."""


class IdentityNotFoundError(GalleryError):
    """A named identity is not enrolled in the gallery."""


class CalibrationError(VerikitError):
    """No threshold is available, or a calibration file is malformed."""


class PluginError(VerikitError):
    """A plugin name is unknown, duplicated, or its import failed."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most ``limit`` characters: how a third-party error
    (timm, smp, an entry point's import) is quoted inside a verikit error message."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


class VerikitWarning(UserWarning):
    """A result was produced, but how it was made deserves attention (e.g. a threshold calibrated
    through another detector/segmenter pipeline than the gallery's probes go through). Issued with
    :func:`warnings.warn`; the CLI prints each as one ``warning:`` line on stderr."""
