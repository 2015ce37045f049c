"""verikit-haar: OpenCV Haar-cascade face detection as a verikit detector plugin.

This package owns one thing: the ``haar`` entry in ``verikit.detectors``. The factory
:func:`create` validates its options and imports OpenCV only when it is called, so discovering
the plugin (``verikit plugins``, ``verikit --help``) costs nothing.
"""

from __future__ import annotations

from typing import Any, Sequence

__version__ = "0.1.0"

CASCADES = {
    "frontalface_default": "haarcascade_frontalface_default.xml",
    "frontalface_alt": "haarcascade_frontalface_alt.xml",
    "frontalface_alt2": "haarcascade_frontalface_alt2.xml",
    "frontalface_alt_tree": "haarcascade_frontalface_alt_tree.xml",
    "profileface": "haarcascade_profileface.xml",
}
DEFAULT_CASCADE = "frontalface_default"


def _size(value: Any, option: str) -> tuple[int, int] | None:
    from verikit.plugin_api import PluginError

    if value is None:
        return None
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        raise PluginError(f"haar option {option} must be [width, height], got {value!r}") from None
    if w < 1 or h < 1:
        raise PluginError(f"haar option {option} must be positive, got {value!r}")
    return w, h


def create(cascade: str | None = None, *, scale_factor: float = 1.1, min_neighbors: int = 5,
           min_size: Sequence[int] | None = (30, 30), max_size: Sequence[int] | None = None,
           eyes: bool = True, equalize: bool = False, border: float = 0.2):
    """Entry-point factory for ``haar[:CASCADE]``; every option is JSON-serialisable.

    ``scale_factor``, ``min_neighbors``, ``min_size`` and ``max_size`` go to
    ``detectMultiScale`` unchanged. ``eyes`` looks for two eyes inside each face (landmarks
    ``left_eye``/``right_eye``, used by verikit to level the crop). ``equalize`` histogram-
    equalises the grey image before detection. ``border``: when nothing is found, search again
    with the image's edges replicated by this fraction of its longer side on every side, so a face
    that fills the frame (an already-cropped photo) can be found; 0 turns the second search off.
    """
    import difflib

    from verikit.plugin_api import PluginError

    name = cascade or DEFAULT_CASCADE
    if name not in CASCADES:
        close = difflib.get_close_matches(name, CASCADES, n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PluginError(f"unknown Haar cascade {name!r}{hint} (available: {', '.join(CASCADES)})")
    if not float(scale_factor) > 1.0:
        raise PluginError(f"haar option scale_factor must be > 1, got {scale_factor!r}")
    if int(min_neighbors) < 0:
        raise PluginError(f"haar option min_neighbors must be >= 0, got {min_neighbors!r}")
    if not 0.0 <= float(border) <= 1.0:
        raise PluginError(f"haar option border must be between 0 and 1, got {border!r}")
    from .detector import HaarDetector  # imports cv2

    return HaarDetector(name, scale_factor=float(scale_factor), min_neighbors=int(min_neighbors),
                        min_size=_size(min_size, "min_size"), max_size=_size(max_size, "max_size"),
                        eyes=bool(eyes), equalize=bool(equalize), border=float(border))


# What verikit reads off the factory (verikit.interfaces): Haar needs no downloaded weights, so it
# is the default detector wherever a command needs one and the user named none.
create.preference = 10  # type: ignore[attr-defined]
create.example = ("haar", {})  # type: ignore[attr-defined]
