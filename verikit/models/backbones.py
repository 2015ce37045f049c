"""Built-in backbone factories: any timm architecture, by name, as a feature-map extractor.

Registered as ``timm`` in the ``verikit.backbones`` entry-point group, so ``timm:resnet18`` or
``timm:mobilenetv3_small_100`` name a backbone. The factory returns an ``nn.Module`` that maps
``(B, C, H, W)`` images to a ``(B, F, h, w)`` feature map and exposes ``num_features``.

Convolution families are registered under their own names, each a thin factory over timm that
only accepts its family's architectures and has a default:

- ``mobilenet`` (depthwise-separable, inverted residuals): ``mobilenetv3_large_100`` default;
- ``inception`` (parallel multi-scale branches): ``inception_v3`` default, ``inception_v4``;
- ``xception`` (separable convolutions throughout): ``xception41`` default, ``xception65``, ...;
- ``dilated_resnet`` (atrous later stages, option ``output_stride`` 8 or 16): ``resnet50`` default.
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
    import torch

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
    # MobileNetV3-style heads put a 1x1 "pre-logits" conv after the pooling; with pooling off it
    # runs on the feature map, so the map has its width, not num_features (the last stage's).
    conv_head = getattr(model, "conv_head", None)
    hidden = getattr(model, "head_hidden_size", None)
    if isinstance(conv_head, torch.nn.Conv2d) and hidden and hidden != model.num_features \
            and conv_head.in_channels == model.num_features:
        model.num_features = int(hidden)
    return model


def pretrained_normalization(backbone: Any, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The input mean and std a backbone's pretrained weights expect, for ``channels`` input
    channels, or None when the backbone does not say: its declared ``input_spec`` (a plugin
    backbone that knows its inputs), else timm's ``pretrained_cfg``.

    A grey (1-channel) timm model gets its first convolution's RGB filters summed, which matches
    an RGB input whose three channels are equal only if they are normalised alike: the channel
    average of the mean and of the std is the closest single normalisation.
    """
    from ..interfaces import input_spec_of

    declared = input_spec_of(backbone)
    if declared is not None and declared.channels == channels:
        return tuple(declared.mean), tuple(declared.std)
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if not mean or not std or len(mean) != len(std):
        return None
    if len(mean) == channels:
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if channels == 1:
        return (sum(mean) / len(mean),), (sum(std) / len(std),)
    return None


# family -> (default architecture, accepted name prefixes, what it is)
FAMILIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "mobilenet": ("mobilenetv3_large_100", ("mobilenetv", "mobilenet_"), "depthwise-separable MobileNet"),
    "inception": ("inception_v3", ("inception_v", "inception_resnet_v"), "Inception"),
    "xception": ("xception41", ("xception", "legacy_xception"), "Xception (separable)"),
    "dilated_resnet": ("resnet50", ("resnet", "resnext", "seresnet", "seresnext", "wide_resnet"), "ResNet"),
}
OUTPUT_STRIDES = (8, 16)


def _family_name(family: str, name: str | None) -> str:
    default, prefixes, what = FAMILIES[family]
    name = name or default
    if not name.startswith(prefixes):
        import timm
        members = sorted({m for p in prefixes for m in timm.list_models(f"{p}*")})
        raise ModelError(f"{family}:{name} is not a {what} architecture; choose one of "
                         f"{', '.join(members[:12])}{', ...' if len(members) > 12 else ''} (default {default})")
    return name


def mobilenet_backbone(name: str | None = None, **options: Any):
    """MobileNet (v2/v3/v4): depthwise-separable inverted residual blocks, the cheapest per image."""
    return timm_backbone(_family_name("mobilenet", name), **options)


INCEPTION_MIN_SIZE = 75  # the smallest input whose feature map survives Inception's valid-padded stem


def inception_backbone(name: str | None = None, **options: Any):
    """Inception v3/v4: multi-branch blocks of parallel 1x1/3x3/5x5 (factorised) convolutions.

    Their unpadded stem needs inputs of at least 75 px; smaller images are upsampled to 75 px
    (bilinear) rather than failing, so prefer ``--image-size`` 75 or more for this family.
    """
    import torch

    class MinSize(torch.nn.Module):
        def __init__(self, net: torch.nn.Module, min_size: int) -> None:
            super().__init__()
            self.net, self.min_size = net, min_size
            self.num_features = int(net.num_features)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            if min(h, w) < self.min_size:
                scale = self.min_size / min(h, w)
                size = (max(self.min_size, round(h * scale)), max(self.min_size, round(w * scale)))
                x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
            return self.net(x)

    return MinSize(timm_backbone(_family_name("inception", name), **options), INCEPTION_MIN_SIZE)


def xception_backbone(name: str | None = None, **options: Any):
    """Xception (timm's aligned xception41/65/71, or legacy_xception): depthwise-separable throughout."""
    return timm_backbone(_family_name("xception", name), **options)


def dilated_resnet_backbone(name: str | None = None, *, output_stride: int = 16, **options: Any):
    """A ResNet whose later stages use dilated (atrous) convolutions instead of striding.

    ``output_stride`` 16 dilates the last stage, 8 the last two: the feature map is 2x or 4x larger
    per side than a plain ResNet's (stride 32) for the same weights, at 4x-16x the compute there.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ModelError(f"dilated_resnet output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
    return timm_backbone(_family_name("dilated_resnet", name), output_stride=int(output_stride), **options)


# Small builds for the contract tests (verikit.interfaces: the factories' ``example``).
timm_backbone.example = ("timm:test_resnet", {})  # type: ignore[attr-defined]
mobilenet_backbone.example = ("mobilenet:mobilenetv3_small_050", {})  # type: ignore[attr-defined]
