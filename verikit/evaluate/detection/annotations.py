"""Box annotation files -> a list of images with their ground-truth boxes.

Reads four formats, chosen by content (:func:`load_annotations`):

* dlib XML (``<dataset><images><image file=...><box top left width height [ignore='1']/>``),
  as written by dlib's imglab and used by ``dlib_faces/training.xml``;
* Pascal VOC XML (``<annotation><filename>``, ``<object><name><difficult><bndbox>``), one file per
  image, or a folder of them; VOC's 1-based inclusive pixel corners become 0-based edges;
* CSV rows ``path,x1,y1,x2,y2`` (an optional header line; ``path,,,,`` lists an image with no box);
* FDDB's ellipse lists (``FDDB-fold-NN-ellipseList.txt``, or the ``FDDB-folds`` folder holding
  them), read by :mod:`verikit.evaluate.detection.fddb`: faces are ellipses, scored by region
  overlap (:mod:`verikit.evaluate.detection.regions`).

Image paths are relative to the annotation file's folder (VOC also tries ``../JPEGImages``) unless
``images_root`` is given. Boxes come out as float x1, y1, x2, y2 in pixels. Malformed files raise
:class:`DataError` with one line naming the file and the problem.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError


@dataclass(frozen=True)
class AnnotatedImage:
    path: Path
    boxes: np.ndarray    # (N, 4) float64 x1, y1, x2, y2
    ignore: np.ndarray   # (N,) bool: dlib ignore='1' / VOC difficult
    # (N, 5) FDDB ellipses (major_radius, minor_radius, angle, center_x, center_y), or None. When
    # given, they are the faces (scored by region overlap) and ``boxes`` are their bounding boxes.
    ellipses: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
            raise DataError(f"annotation for '{self.path}' has an empty or inverted box")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "ignore", np.asarray(self.ignore, dtype=bool).reshape(-1))
        if self.ellipses is not None:
            ellipses = np.asarray(self.ellipses, dtype=np.float64).reshape(-1, 5)
            if len(ellipses) != len(boxes):
                raise DataError(f"annotation for '{self.path}' has {len(ellipses)} ellipses for {len(boxes)} boxes")
            object.__setattr__(self, "ellipses", ellipses)


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"cannot read annotations '{path}': {' '.join(str(exc).split())}") from exc


def _num(element: ET.Element | None, attr_or_tag: str, source: Path, *, attr: bool) -> float:
    raw = (element.get(attr_or_tag) if attr else element.findtext(attr_or_tag)) if element is not None else None
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"annotations '{source}': missing or non-numeric {attr_or_tag!r} ({raw!r})") from None


def read_dlib_xml(path: Path, images_root: Path | None = None) -> list[AnnotatedImage]:
    root = _parse_xml(path)
    base = images_root or path.parent
    out = []
    for image in root.iter("image"):
        file = image.get("file")
        if not file:
            raise DataError(f"annotations '{path}': an <image> has no file attribute")
        boxes, ignore = [], []
        for box in image.findall("box"):
            top, left = _num(box, "top", path, attr=True), _num(box, "left", path, attr=True)
            width, height = _num(box, "width", path, attr=True), _num(box, "height", path, attr=True)
            boxes.append([left, top, left + width, top + height])
            ignore.append(box.get("ignore", "0") not in ("0", "", "false"))
        out.append(AnnotatedImage(base / file, np.array(boxes).reshape(-1, 4), np.array(ignore, bool)))
    return out


def _voc_image_path(xml: Path, filename: str, images_root: Path | None) -> Path:
    if images_root is not None:
        return images_root / filename
    for candidate in (xml.parent / filename, xml.parent.parent / "JPEGImages" / filename):
        if candidate.exists():
            return candidate
    return xml.parent / filename


def read_voc_xml(path: Path, images_root: Path | None = None, label: str | None = None) -> AnnotatedImage:
    root = _parse_xml(path)
    filename = root.findtext("filename")
    if not filename:
        raise DataError(f"annotations '{path}': no <filename> in this VOC file")
    boxes, ignore = [], []
    for obj in root.findall("object"):
        if label is not None and (obj.findtext("name") or "").strip() != label:
            continue
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(f"annotations '{path}': an <object> has no <bndbox>")
        xmin, ymin = _num(bb, "xmin", path, attr=False), _num(bb, "ymin", path, attr=False)
        xmax, ymax = _num(bb, "xmax", path, attr=False), _num(bb, "ymax", path, attr=False)
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])  # 1-based inclusive pixels -> 0-based edges
        ignore.append((obj.findtext("difficult") or "0").strip() not in ("0", ""))
    return AnnotatedImage(_voc_image_path(path, filename.strip(), images_root), np.array(boxes).reshape(-1, 4),
                          np.array(ignore, bool))


def read_csv(path: Path, images_root: Path | None = None) -> list[AnnotatedImage]:
    base = images_root or path.parent
    grouped: dict[str, list[list[float]]] = {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read annotations '{path}': {exc}") from exc
    for lineno, row in enumerate(rows, 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 5:
            raise DataError(f"annotations '{path}' line {lineno}: expected path,x1,y1,x2,y2, got {len(row)} fields")
        name, coords = row[0].strip(), [c.strip() for c in row[1:]]
        if lineno == 1 and not _is_number(coords[0]) and coords[0]:
            continue  # header
        boxes = grouped.setdefault(name, [])
        if all(c == "" for c in coords):
            continue  # an image with no box
        try:
            boxes.append([float(c) for c in coords])
        except ValueError:
            raise DataError(f"annotations '{path}' line {lineno}: non-numeric coordinate in {row[1:]}") from None
    return [AnnotatedImage(base / name, np.array(b).reshape(-1, 4), np.zeros(len(b), bool)) for name, b in grouped.items()]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def load_annotations(path: str | Path, *, images_root: str | Path | None = None,
                     label: str | None = None) -> list[AnnotatedImage]:
    """Read dlib XML, VOC XML (a file or a folder of them), CSV or FDDB ellipse lists (a file or
    the folder of folds); format chosen by content."""
    from .fddb import is_fddb, read_fddb

    path = Path(path)
    root_dir = Path(images_root) if images_root is not None else None
    if is_fddb(path):
        return read_fddb(path, root_dir)
    if path.is_dir():
        files = sorted(path.glob("*.xml"))
        if not files:
            raise DataError(f"no VOC .xml files or FDDB *-ellipseList.txt files in folder '{path}'")
        return [read_voc_xml(f, root_dir, label) for f in files]
    if not path.is_file():
        raise DataError(f"annotations file '{path}' does not exist")
    if path.suffix.lower() == ".csv":
        items = read_csv(path, root_dir)
    else:
        tag = _parse_xml(path).tag
        if tag == "dataset":
            items = read_dlib_xml(path, root_dir)
        elif tag == "annotation":
            items = [read_voc_xml(path, root_dir, label)]
        else:
            raise DataError(f"annotations '{path}': unknown format (root <{tag}>; expected dlib <dataset>, "
                            "VOC <annotation>, or a .csv file)")
    if not items:
        raise DataError(f"annotations '{path}' list no images")
    return items
