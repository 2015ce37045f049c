"""Segmentation: the machinery segmenter plugins share.

* :mod:`verikit.segment.base`: :class:`~verikit.segment.base.TorchMaskSegmenter` turns any
  ``nn.Module`` that maps a normalised (B, 3, S, S) batch to foreground logits (B, 1, S, S) or
  class logits (B, C, S, S) into a :class:`verikit.interfaces.Segmenter`: crop each box (with
  context), resize, forward in batches, resize back and paste into an image-sized mask.
* :mod:`verikit.segment.data`: image/mask folder pairs matched by file stem, seeded split.
* :mod:`verikit.segment.training`: BCE + Dice training with validation IoU per epoch, the best
  epoch saved as ``segmenter.safetensors`` + ``segmenter.json`` (what ``verikit segment train`` runs).
* :mod:`verikit.segment.weights`: reading/writing those files.

The core never imports a model zoo (segmentation-models-pytorch, torchvision.models): plugins
build the network and hand it over. Importing this package imports nothing heavy.
"""

WEIGHTS_FILE = "segmenter.safetensors"
SIDECAR_FILE = "segmenter.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SIDECAR_FILE", "WEIGHTS_FILE"]
