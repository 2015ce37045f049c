"""The Haar plugin on real photos: its figures on dlib_faces/testing.xml equal raw OpenCV's."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("verikit_haar", reason="plugins/verikit-haar is not installed (run make)")

from verikit.evaluate.detection.annotations import load_annotations  # noqa: E402
from verikit.evaluate.detection.run import evaluate_detector  # noqa: E402
from verikit.evaluate.detection.metrics import detection_metrics  # noqa: E402
from verikit.registry import detectors  # noqa: E402

DATA = Path(os.environ.get("VERIKIT_DATA") or Path(__file__).resolve().parents[3].parent / "shared" / "data")
PARAMS = {"scale_factor": 1.1, "min_neighbors": 5, "min_size": [30, 30]}


def _raw_opencv(items, cascade: str):
    """Boxes and neighbour counts straight from cv2, reading the files with cv2 itself."""
    clf = cv2.CascadeClassifier(cv2.data.haarcascades + f"haarcascade_{cascade}.xml")
    boxes, scores = [], []
    for item in items:
        grey = cv2.cvtColor(cv2.imread(str(item.path)), cv2.COLOR_BGR2GRAY)
        kw = dict(scaleFactor=PARAMS["scale_factor"], minNeighbors=PARAMS["min_neighbors"],
                  minSize=tuple(PARAMS["min_size"]))
        found, counts = clf.detectMultiScale2(grey, **kw)
        plain = clf.detectMultiScale(grey, **kw)  # the classic call finds the very same boxes
        as_set = lambda a: sorted(map(tuple, np.asarray(a).reshape(-1, 4).tolist()))  # noqa: E731 - order varies by thread
        assert as_set(plain) == as_set(found)
        xyxy = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        xyxy[:, 2:] += xyxy[:, :2]
        boxes.append(xyxy)
        scores.append(np.asarray(counts, dtype=np.float64).reshape(-1))
    return boxes, scores


@pytest.mark.parametrize("cascade", ["frontalface_default", "frontalface_alt2"])
def test_haar_figures_equal_raw_opencv_on_dlib_testing(cascade):
    xml = DATA / "dlib_faces" / "testing.xml"
    if not xml.is_file():
        pytest.skip(f"{xml} not found")
    items = load_annotations(xml)
    ours = evaluate_detector(detectors.create(f"haar:{cascade}", eyes=False, **PARAMS), items).metrics
    raw_boxes, raw_scores = _raw_opencv(items, cascade)
    raw = detection_metrics(raw_boxes, raw_scores, [i.boxes for i in items], [i.ignore for i in items])
    assert ours == raw
    assert ours.ground_truth == 25 and ours.true_positives > 0  # the set is what the README says, and Haar finds faces
