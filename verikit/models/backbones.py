"""Built-in backbone factory: any timm architecture, by name, as a feature-map extractor.

Registered as ``timm`` in the ``verikit.backbones`` entry-point group, so ``timm:resnet18`` or
``timm:mobilenetv3_small_100`` name a backbone. The factory returns an ``nn.Module`` that maps
``(B, C, H, W)`` images to a ``(B, F, h, w)`` feature map and exposes ``num_features``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelError


def timm_backbone(name: str | None = None, *, in_chans: int = 3, pretrained: bool = False,
                  weights: str | None = None, **timm_kwargs: Any):
    """Build timm model ``name`` without its classifier and pooling.

    ``weights`` is a local file (``.safetensors``, or a timm/torch checkpoint that is read with
    ``weights_only=True``); timm's own loader adapts it (drops the classifier, folds RGB
    weights into ``in_chans``). ``pretrained=True`` without ``weights`` asks the Hugging Face hub,
    which needs a network.
    """
    import timm  # heavy: imported only when a backbone is built

    if not name:
        raise ModelError("timm backbone needs an architecture name, e.g. 'timm:resnet18'")
    if not timm.is_model(name):
        import difflib
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"timm has no architecture {name!r}{hint}")
    kwargs: dict[str, Any] = dict(num_classes=0, global_pool="", in_chans=in_chans, **timm_kwargs)
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"backbone weights file not found: '{weights}'")
        # timm's pretrained machinery with a local file: same adaptation as a hub download.
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path.resolve())})
    else:
        kwargs.update(pretrained=pretrained)
    try:
        model = timm.create_model(name, **kwargs)
    except (RuntimeError, ValueError, OSError, KeyError) as exc:
        raise ModelError(f"cannot build timm:{name}: {str(exc).splitlines()[0]}") from exc
    if not hasattr(model, "num_features"):
        raise ModelError(f"timm:{name} does not expose num_features")
    return model
