"""Where the pretrained weights come from, and how they become verikit's safetensors files.

The weights are face-api.js's, as published in the npm package ``@vladmandic/face-api`` (MIT): a
registry any machine with ``pip`` or ``npm`` usually reaches. :func:`fetch` downloads the pinned
tarball over HTTPS (no Node.js needed), checks it against the registry's sha512 integrity string
pinned here, and :func:`convert` turns its four tfjs models (the descriptor, the 68-point
landmarks, the SSD and the Tiny-YOLO face detectors) into one safetensors state dict each, in the
parameter names of :mod:`verikit_faceapi.nets`, :mod:`~verikit_faceapi.ssd` and
:mod:`~verikit_faceapi.tiny_yolo`. Offline, ``npm pack @vladmandic/face-api`` on
another machine and ``convert`` of its ``package/model`` folder give the same files.

:func:`locate` resolves a network's file: an explicit ``weights`` path, else the default folder
(``$VERIKIT_FACEAPI_DIR`` or ``~/.cache/verikit/faceapi``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from verikit.plugin_api import ModelError, one_line, write_atomic

PACKAGE, VERSION = "@vladmandic/face-api", "1.7.15"
TARBALL = f"https://registry.npmjs.org/{PACKAGE}/-/face-api-{VERSION}.tgz"
# The registry's "dist.integrity" of that tarball: a download that differs is refused.
INTEGRITY = "sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw=="

# network -> (tfjs manifest in the package's model/ folder, the shard it names, our file)
NETWORKS = {
    "descriptor": ("face_recognition_model-weights_manifest.json", "face_recognition_model.bin",
                   "dlib_resnet.safetensors"),
    "landmarks": ("face_landmark_68_model-weights_manifest.json", "face_landmark_68_model.bin",
                  "landmark68.safetensors"),
    "ssd": ("ssd_mobilenetv1_model-weights_manifest.json", "ssd_mobilenetv1_model.bin",
            "ssd_mobilenetv1.safetensors"),
    "tiny_yolo": ("tiny_face_detector_model-weights_manifest.json", "tiny_face_detector_model.bin",
                  "tiny_face_detector.safetensors"),
}
FETCH_HINT = "run 'python -m verikit_faceapi fetch' (downloads 13 MB from the npm registry) or pass weights=FILE"


def default_dir() -> Path:
    return Path(os.environ.get("VERIKIT_FACEAPI_DIR") or Path.home() / ".cache" / "verikit" / "faceapi")


def network_class(network: str):
    from .nets import DlibResNet, Landmark68Net
    from .ssd import SsdMobileNetV1
    from .tiny_yolo import TinyYolo

    return {"descriptor": DlibResNet, "landmarks": Landmark68Net, "ssd": SsdMobileNetV1, "tiny_yolo": TinyYolo}[network]


def locate(network: str, weights: str | os.PathLike | None) -> Path:
    """The safetensors file of ``network``: ``weights`` when given, else the default folder's."""
    path = Path(weights) if weights else default_dir() / NETWORKS[network][2]
    if not path.is_file():
        given = "given" if weights else "default"
        raise ModelError(f"faceapi {network} weights not found at the {given} path '{path}'; {FETCH_HINT}")
    return path


def load_network(network: str, weights: str | os.PathLike | None):
    """The network with its pretrained weights, in eval mode."""
    from verikit.plugin_api import load_state_dict_file

    net = network_class(network)()
    load_state_dict_file(net, locate(network, weights), what=f"faceapi {network}",
                         hint=f"expected the file 'python -m verikit_faceapi fetch' writes ({NETWORKS[network][2]})")
    return net.eval()


def convert(model_dir: str | os.PathLike, dest: str | os.PathLike | None = None) -> list[Path]:
    """Convert face-api.js's tfjs models in ``model_dir`` into safetensors files in ``dest``."""
    from safetensors.torch import save

    from .tfjs import read_tfjs_weights

    model_dir, dest = Path(model_dir), Path(dest) if dest else default_dir()
    written = []
    for network, (manifest, _, target) in NETWORKS.items():
        tensors = read_tfjs_weights(model_dir / manifest)
        net = network_class(network)()
        try:
            state = net.tfjs_state_dict(tensors)
            net.load_state_dict(state)  # strict: every parameter mapped, every shape right
        except (KeyError, RuntimeError) as exc:
            raise ModelError(f"'{model_dir / manifest}' is not face-api.js's {network} network: {one_line(exc)}") from exc
        dest.mkdir(parents=True, exist_ok=True)
        # One metadata key: safetensors writes a map's keys in no fixed order, and the same weights
        # must give the same bytes (a gallery records the file's digest).
        data = save({k: v.contiguous() for k, v in net.state_dict().items()},
                    metadata={"source": f"{PACKAGE}@{VERSION} model/{manifest}"})
        written.append(write_atomic(dest / target, data))
    return written


def check_integrity(data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if digest != expected:
        raise ModelError(f"the downloaded tarball's {algorithm} is {digest[:16]}..., expected {expected[:16]}...: "
                         "refusing it (a changed or corrupted download)")


def fetch(dest: str | os.PathLike | None = None, *, url: str = TARBALL, integrity: str = INTEGRITY,
          timeout: float = 120.0) -> list[Path]:
    """Download the pinned npm tarball, check its integrity, convert its two networks into ``dest``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot download {url}: {one_line(exc)}") from exc
    check_integrity(data, integrity)
    wanted = {f"package/model/{name}" for files in NETWORKS.values() for name in files[:2]}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                for member in tar.getmembers():
                    if member.name in wanted and member.isfile():
                        (Path(tmp) / Path(member.name).name).write_bytes(tar.extractfile(member).read())
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ModelError(f"cannot unpack {url}: {one_line(exc)}") from exc
        return convert(tmp, dest)
