"""verikit-smp: segmentation-models-pytorch networks as a verikit segmenter plugin.

This package owns the ``smp`` entry in ``verikit.segmenters``. Spec ``smp[:ARCH]`` names one of
:data:`ARCHITECTURES` (U-Net, U-Net++, FPN, DeepLabV3+), with any encoder smp knows, timm's
included through smp's ``tu-`` prefix (default ``tu-resnet18``). The network predicts one
foreground channel; verikit's :class:`~verikit.segment.base.TorchMaskSegmenter` does the
cropping, batching and pasting. :func:`create` imports smp only when called, and carries
``create.train`` (:func:`train`), which is how ``verikit segment train`` trains one.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

ARCHITECTURES = ("unet", "unetplusplus", "fpn", "deeplabv3plus")
DEFAULT_ARCH = "unet"
DEFAULT_ENCODER = "tu-resnet18"
DEFAULT_SIZE = 256
HUB_PREFIX = "hub:"          # weights="hub:smp-hub/segformer-b0-512x512-ade-160k" -> smp.from_pretrained
TRAIN_OPTIONS = ("encoder", "encoder_weights")


def resolve_arch(arch: str | None) -> str:
    import difflib

    from verikit.plugin_api import PluginError

    name = (arch or DEFAULT_ARCH).lower()
    if name not in ARCHITECTURES:
        close = difflib.get_close_matches(name, ARCHITECTURES, n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PluginError(f"unknown smp architecture {name!r}{hint} (available: {', '.join(ARCHITECTURES)})")
    return name


def _size(value: Any) -> int:
    from verikit.plugin_api import PluginError

    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 32 or size % 32:
        raise PluginError(f"smp option input_size must be a multiple of 32 (the encoder halves it 5 times), "
                          f"got {value!r}")
    return size


def create(arch: str | None = None, *, encoder: str | None = None, weights: str | None = None,
           encoder_weights: str | None = None, input_size: int | None = None, threshold: float | None = None,
           context: float = 0.2, batch_size: int = 8, device: str = "cpu"):
    """Entry-point factory for ``smp[:ARCH]``; every option is JSON-serialisable.

    ``weights``: a local state dict (the ``segmenter.safetensors`` of ``verikit segment train``,
    whose ``segmenter.json`` supplies encoder and input_size defaults), ``"hub:REPO"`` for a
    whole pretrained smp model from the Hugging Face hub (downloads; needs network), or None for
    random weights. ``encoder``: an smp encoder name, timm's with the ``tu-`` prefix (default
    ``tu-resnet18``). ``encoder_weights``: e.g. ``"imagenet"`` (downloads); default None, random.
    ``input_size``: square side the network sees (multiple of 32; default 256). ``threshold``:
    None for soft masks, else 0/1 masks. ``context``: box growth before cropping (fraction).
    """
    from verikit.plugin_api import PluginError, read_sidecar

    name = resolve_arch(arch)
    hub = isinstance(weights, str) and weights.startswith(HUB_PREFIX)
    meta = {} if hub else read_sidecar(weights)
    if meta and meta.get("spec") != f"smp:{name}":
        raise PluginError(f"weights '{weights}' were trained for {meta.get('spec')}, not smp:{name}")
    recorded = meta.get("options", {})
    encoder = encoder or recorded.get("encoder") or DEFAULT_ENCODER
    size = _size(input_size if input_size is not None else recorded.get("input_size", DEFAULT_SIZE))
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise PluginError(f"smp option threshold must be in [0, 1] or null, got {threshold!r}")
    if not float(context) >= 0.0:
        raise PluginError(f"smp option context must be >= 0, got {context!r}")
    from .model import build_network, load_hub

    if hub:
        network = load_hub(weights[len(HUB_PREFIX):])
    else:
        network = build_network(name, encoder, encoder_weights)
        if weights:
            from verikit.plugin_api import load_weights

            load_weights(network, weights)
    from verikit.plugin_api import TorchMaskSegmenter

    return TorchMaskSegmenter(network, input_size=size, threshold=threshold, context=float(context),
                              batch_size=int(batch_size), device=str(device), name=f"smp:{name} ({encoder})")


def train(arch: str | None = None, *, options: dict[str, Any] | None = None, size: int | None = None,
          **kwargs: Any) -> dict[str, Any]:
    """Train ``smp[:ARCH]`` on image/mask pairs: :func:`verikit.segment.training.fit_segmenter`.

    ``options`` may set ``encoder`` and ``encoder_weights`` (the rest of the factory options are
    inference-time choices). Writes ``segmenter.safetensors`` + ``segmenter.json`` to ``out``.
    """
    from verikit.plugin_api import PluginError, fit_segmenter

    name = resolve_arch(arch)
    options = dict(options or {})
    unknown = sorted(set(options) - set(TRAIN_OPTIONS))
    if unknown:
        raise PluginError(f"smp training accepts options {', '.join(TRAIN_OPTIONS)}, not {', '.join(unknown)}")
    encoder = options.get("encoder") or DEFAULT_ENCODER
    encoder_weights = options.get("encoder_weights")
    from .model import build_network

    return fit_segmenter(lambda: build_network(name, encoder, encoder_weights), spec=f"smp:{name}",
                         options={"encoder": encoder}, size=_size(size or DEFAULT_SIZE), foreground=0, **kwargs)


create.train = train  # type: ignore[attr-defined]  # what `verikit segment train` looks for
create.example = ("smp:unet", {"encoder": "tu-mobilenetv3_small_050", "input_size": 64})  # type: ignore[attr-defined]
__all__ = ["ARCHITECTURES", "create", "train"]
