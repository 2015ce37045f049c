"""Detection metrics against hand-computed cases, and the three annotation formats."""

from __future__ import annotations

import numpy as np
import pytest

from verikit.evaluate.detection.annotations import load_annotations
from verikit.evaluate.detection.metrics import average_precision, detection_metrics, iou_matrix
from verikit.errors import DataError


def test_iou_by_hand():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [21, 21, 31, 31], [20, 20, 30, 30], [5, 0, 15, 10]])
    assert iou_matrix(a, b)[0].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0, 50 / 150])
    assert iou_matrix(b[3:4], b[2:3])[0, 0] == pytest.approx(81 / 119)
    assert iou_matrix(np.zeros((0, 4)), a).shape == (0, 1)


def test_two_images_by_hand():
    # A: gt g1=[0,0,10,10], g2=[20,20,30,30]; B: gt [0,0,10,10].
    # Ranked: B .95 (no overlap: FP), A .9 (=g1: TP), A .8 (IoU .5 with g1, taken: FP), A .7 (IoU 81/119 g2: TP).
    # Precision 2/4, recall 2/3; precision envelope .5 over recall 0..2/3 -> AP 1/3.
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([[0, 0, 10, 10]])]
    preds = [np.array([[0, 0, 10, 10], [0, 0, 10, 5], [21, 21, 31, 31]]), np.array([[50, 50, 60, 60]])]
    scores = [np.array([0.9, 0.8, 0.7]), np.array([0.95])]
    m = detection_metrics(preds, scores, gt)
    assert (m.true_positives, m.false_positives, m.ground_truth) == (2, 2, 3)
    assert m.precision == pytest.approx(0.5) and m.recall == pytest.approx(2 / 3)
    assert m.average_precision == pytest.approx(1 / 3)
    # At IoU 0.7 the shifted box (0.68) no longer counts: 1 TP of 4, AP = 1/3 recall at precision 1/2.
    m7 = detection_metrics(preds, scores, gt, iou_threshold=0.7)
    assert (m7.true_positives, m7.false_positives) == (1, 3) and m7.average_precision == pytest.approx(1 / 6)


def test_best_iou_match_and_ignored_ground_truth():
    gt = [np.array([[0, 0, 10, 10], [4, 0, 14, 10]])]
    # The one detection overlaps g2 more (IoU 1) than g1 (.43): it must take g2, leaving g1 missed.
    m = detection_metrics([np.array([[4, 0, 14, 10]])], [np.array([1.0])], gt)
    assert (m.true_positives, m.false_positives, m.recall) == (1, 0, 0.5)
    # With g2 ignored, the same detection is neither TP nor FP, and g2 is not counted.
    m = detection_metrics([np.array([[4, 0, 14, 10]])], [np.array([1.0])], gt, [np.array([False, True])])
    assert (m.true_positives, m.false_positives, m.ground_truth) == (0, 0, 1)


def test_average_precision_perfect_and_empty():
    assert average_precision(np.array([True, True]), 2) == pytest.approx(1.0)
    assert average_precision(np.array([True, False, True]), 4) == pytest.approx(0.25 + 0.25 * 2 / 3)
    assert average_precision(np.array([], bool), 3) == 0.0


def test_three_formats_read_the_same_boxes(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "dlib.xml").write_text(
        "<dataset><images><image file='a.jpg'><box top='10' left='20' width='30' height='40'/>"
        "<box top='0' left='0' width='5' height='5' ignore='1'/></image>"
        "<image file='b.jpg'/></images></dataset>")
    (tmp_path / "a.csv").write_text("path,x1,y1,x2,y2\na.jpg,20,10,50,50\nb.jpg,,,,\n")
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>face</name><difficult>0</difficult>"
        "<bndbox><xmin>21</xmin><ymin>11</ymin><xmax>50</xmax><ymax>50</ymax></bndbox></object>"
        "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
        "</annotation>")
    dlib = load_annotations(tmp_path / "dlib.xml")
    csv = load_annotations(tmp_path / "a.csv")
    vocs = load_annotations(voc, images_root=tmp_path, label="face")
    assert [d.path.name for d in dlib] == ["a.jpg", "b.jpg"] == [c.path.name for c in csv]
    assert dlib[0].boxes.tolist() == [[20, 10, 50, 50], [0, 0, 5, 5]] and dlib[0].ignore.tolist() == [False, True]
    assert csv[0].boxes.tolist() == [[20, 10, 50, 50]] and csv[1].boxes.shape == (0, 4)
    assert vocs[0].boxes.tolist() == [[20, 10, 50, 50]] and vocs[0].path == tmp_path / "a.jpg"
    assert len(load_annotations(voc / "a.xml", images_root=tmp_path)[0].boxes) == 2  # no --label: every object


def test_malformed_annotations_are_one_line_data_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a.jpg,1,2,3\n")
    with pytest.raises(DataError, match="line 1: expected path,x1,y1,x2,y2"):
        load_annotations(bad)
    xml = tmp_path / "x.xml"
    xml.write_text("<dataset><images><image file='a.jpg'><box top='x' left='0' width='1' height='1'/></image></images></dataset>")
    with pytest.raises(DataError, match="non-numeric 'top'"):
        load_annotations(xml)
    with pytest.raises(DataError, match="unknown format"):
        (tmp_path / "y.xml").write_text("<other/>")
        load_annotations(tmp_path / "y.xml")
