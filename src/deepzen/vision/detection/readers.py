"""Detection dataset readers: PASCAL VOC XML, COCO JSON and YOLO txt, and whole dataset folders.

Every reader returns a :class:`DetectionDataset`: image paths, and per image the true boxes as
``(x1, y1, x2, y2)`` in pixels of the image file with their class ids. :func:`to_arrays` resizes the
images to the detector's input size (scaling the boxes with them).

Coordinates. VOC files count pixels from 1 and include the last one; deepzen's boxes are
``[x1, x2) x [y1, y2)`` from 0, so a VOC box becomes ``(xmin - 1, ymin - 1, xmax, ymax)``. COCO's
``[x, y, width, height]`` and YOLO's normalized ``class cx cy w h`` convert exactly.

Bad input, and what happens to it:

- a box that reaches outside its image is clipped to the image (a warning counts them);
- a degenerate box (``x2 <= x1`` or ``y2 <= y1``, also after clipping, so a box entirely outside
  the image is one) or a coordinate that is not a finite number: ``ValueError`` naming the file, the
  object and its coordinates; with ``on_invalid="drop"`` the box is left out with a warning;
- an image with no objects is kept: it teaches the detector the background (its target is empty);
- a class name that ``class_names`` does not list: ``ValueError`` naming it, the file and the
  names expected. Without ``class_names`` a VOC reader takes the sorted names its files use (a
  dataset folder: the names of both splits), a COCO reader the file's categories in id order.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.xml").write_text(
    ...     "<annotation><filename>a.jpg</filename><size><width>100</width><height>80</height></size>"
    ...     "<object><name>cat</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>50</xmax><ymax>60</ymax>"
    ...     "</bndbox></object></annotation>")
    >>> data = read_voc([folder / "a.xml"], images=folder)
    >>> data.class_names, data.boxes[0].tolist(), data.sizes[0]
    (('cat',), [[10.0, 20.0, 50.0, 60.0]], (80, 100))
"""

from __future__ import annotations

import csv
import json
import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from deepzen.data.images import IMAGE_SUFFIXES
from deepzen.data.paths import DatasetCorruptedError, DatasetNotFoundError, PathLike

INVALID_POLICIES = ("raise", "drop")


@dataclass
class DetectionDataset:
    """Images and their true boxes.

    Attributes:
        images: path of each image file.
        sizes: ``(height, width)`` of each image file.
        boxes: per image, float32 ``(M, 4)`` corner boxes in pixels of the file.
        labels: per image, int64 ``(M,)`` class ids into ``class_names``.
        class_names: the names of the classes.
    """

    images: list[Path] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    class_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Iterable[int]) -> "DetectionDataset":
        indices = list(indices)
        return DetectionDataset([self.images[i] for i in indices], [self.sizes[i] for i in indices],
                                [self.boxes[i] for i in indices], [self.labels[i] for i in indices], self.class_names)


class _Collector:
    """Checks boxes and class names as records are read, and builds the dataset (see the module docstring)."""

    def __init__(self, class_names: Sequence[str] | None, on_invalid: str):
        if on_invalid not in INVALID_POLICIES:
            raise ValueError(f"Expected on_invalid to be one of {INVALID_POLICIES}. Received: on_invalid={on_invalid!r}")
        self.fixed = class_names is not None
        self.names = list(class_names) if class_names is not None else []
        self.on_invalid = on_invalid
        self.records: list[tuple[Path, tuple[int, int], list[tuple[float, ...]], list[str]]] = []
        self.clipped = 0
        self.dropped = 0

    def add(self, source: str, image: Path, size: tuple[int, int], objects: list[tuple[str, Sequence[float]]]) -> None:
        height, width = size
        if height <= 0 or width <= 0:
            raise DatasetCorruptedError(f"{source}: image size {width}x{height}; expected a positive width and height")
        boxes, names = [], []
        for number, (name, box) in enumerate(objects, start=1):
            if self.fixed and name not in self.names:
                raise ValueError(f"{source}: object {number} has class {name!r}, which the dataset does not list. "
                                 f"Expected one of: {', '.join(self.names)}")
            x1, y1, x2, y2 = (float(v) for v in box)
            problem = None
            if not all(np.isfinite((x1, y1, x2, y2))):
                problem = "a coordinate that is not a finite number"
            else:
                clipped = (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
                           min(max(x2, 0.0), width), min(max(y2, 0.0), height))
                if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                    problem = ("no area inside the image" if x2 > x1 and y2 > y1 else
                               "x2 <= x1 or y2 <= y1 (a degenerate box)")
                elif clipped != (x1, y1, x2, y2):
                    self.clipped += 1
            if problem is not None:
                message = (f"{source}: object {number} ({name!r}) has box (x1, y1, x2, y2) = ({x1:g}, {y1:g}, {x2:g}, "
                           f"{y2:g}) in a {width}x{height} image: {problem}")
                if self.on_invalid == "raise":
                    raise ValueError(message + ". Fix the file, or pass on_invalid='drop' to leave such boxes out")
                self.dropped += 1
                warnings.warn(message + "; left out", stacklevel=3)
                continue
            boxes.append(clipped)
            names.append(name)
        self.records.append((image, size, boxes, names))

    def dataset(self, what: str) -> DetectionDataset:
        if self.clipped:
            warnings.warn(f"{what}: {self.clipped} boxes reached outside their image and were clipped to it",
                          stacklevel=3)
        names = self.names if self.fixed else sorted({n for *_, record_names in self.records for n in record_names})
        index = {name: i for i, name in enumerate(names)}
        data = DetectionDataset(class_names=tuple(names))
        for image, size, boxes, record_names in self.records:
            data.images.append(image)
            data.sizes.append(size)
            data.boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
            data.labels.append(np.asarray([index[n] for n in record_names], np.int64))
        return data


def _text(element: ElementTree.Element, path: str, source: str) -> str:
    found = element.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise DatasetCorruptedError(f"{source}: missing <{path}>; expected a PASCAL VOC annotation")
    return found.text.strip()


def _number(element: ElementTree.Element, path: str, source: str) -> float:
    text = _text(element, path, source)
    try:
        return float(text)
    except ValueError:
        raise DatasetCorruptedError(f"{source}: <{path}> is {text!r}; expected a number") from None


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:  # reads the header only
        return image.height, image.width


def read_voc(annotations: Sequence[PathLike], images: PathLike, class_names: Sequence[str] | None = None, *,
             on_invalid: str = "raise") -> DetectionDataset:
    """PASCAL VOC XML files (one per image).

    Args:
        annotations: the XML files.
        images: the folder of the image files their ``<filename>`` names.
        class_names: the classes, in id order (default: the sorted names found).
        on_invalid: "raise" or "drop" for degenerate boxes (see the module docstring).
    """
    images = Path(images)
    collector = _Collector(class_names, on_invalid)
    for path in annotations:
        source = str(path)
        try:
            root = ElementTree.parse(path).getroot()
        except ElementTree.ParseError as error:
            raise DatasetCorruptedError(f"{source} is not well-formed XML: {error}") from None
        image = images / _text(root, "filename", source)
        if root.find("size/width") is not None:
            size = (int(_number(root, "size/height", source)), int(_number(root, "size/width", source)))
        elif image.is_file():
            size = _image_size(image)
        else:
            raise DatasetCorruptedError(f"{source} gives no <size> and its image {image} is missing")
        objects = []
        for element in root.findall("object"):
            name = _text(element, "name", source)
            box = [_number(element, f"bndbox/{k}", source) for k in ("xmin", "ymin", "xmax", "ymax")]
            objects.append((name, (box[0] - 1, box[1] - 1, box[2], box[3])))  # 1-based inclusive -> [x1, x2)
        collector.add(source, image, size, objects)
    return collector.dataset(f"VOC files in {Path(annotations[0]).parent}" if annotations else "VOC files")


def read_coco(annotation_file: PathLike, images: PathLike, class_names: Sequence[str] | None = None, *,
              on_invalid: str = "raise") -> DetectionDataset:
    """A COCO ``instances`` JSON file.

    Args:
        annotation_file: the JSON file (``images``, ``annotations``, ``categories``).
        images: the folder the ``file_name`` of its images are relative to.
        class_names: the classes in id order (default: the file's categories, sorted by id).
        on_invalid: "raise" or "drop" for degenerate boxes.

    ``iscrowd`` annotations are left out (COCO's evaluation ignores them too).
    """
    source = str(annotation_file)
    try:
        content = json.loads(Path(annotation_file).read_text(encoding="utf-8"))
        categories = {c["id"]: c["name"] for c in content["categories"]}
        records = {image["id"]: (image["file_name"], (int(image["height"]), int(image["width"])), [])
                   for image in content["images"]}
        for annotation in content["annotations"]:
            if annotation.get("iscrowd", 0):
                continue
            if annotation["image_id"] not in records or annotation["category_id"] not in categories:
                raise DatasetCorruptedError(f"{source}: annotation {annotation.get('id')} names image "
                                            f"{annotation['image_id']} or category {annotation['category_id']}, "
                                            f"which the file does not list")
            x, y, w, h = (float(v) for v in annotation["bbox"])
            records[annotation["image_id"]][2].append((categories[annotation["category_id"]], (x, y, x + w, y + h)))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        if isinstance(error, DatasetCorruptedError):
            raise
        raise DatasetCorruptedError(f"{source} is not a COCO instances file: {error!r}") from None
    names = class_names if class_names is not None else [categories[k] for k in sorted(categories)]
    collector = _Collector(names, on_invalid)
    for file_name, size, objects in records.values():
        collector.add(f"{source} ({file_name})", Path(images) / file_name, size, objects)
    return collector.dataset(source)


def read_yolo(labels: PathLike, images: PathLike, class_names: Sequence[str], *,
              on_invalid: str = "raise") -> DetectionDataset:
    """YOLO txt labels: one ``class cx cy w h`` line per object, normalized to [0, 1] by the image size.

    Args:
        labels: the folder of ``.txt`` files, one per image of the same stem (a missing file: no objects).
        images: the folder of the images.
        class_names: the classes in id order (YOLO files hold only the ids).
        on_invalid: "raise" or "drop" for degenerate boxes.
    """
    labels, images = Path(labels), Path(images)
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    collector = _Collector(class_names, on_invalid)
    for image in files:
        height, width = _image_size(image)
        label_file = labels / f"{image.stem}.txt"
        objects = []
        if label_file.is_file():
            for number, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                fields = line.split()
                try:
                    class_id, cx, cy, w, h = int(fields[0]), *(float(v) for v in fields[1:5])
                    if len(fields) != 5:
                        raise ValueError
                except (ValueError, IndexError):
                    raise DatasetCorruptedError(f"{label_file}, line {number}: {line!r}; expected "
                                                f"'class cx cy w h' (an integer and four numbers)") from None
                if not 0 <= class_id < len(class_names):
                    raise ValueError(f"{label_file}, line {number}: class {class_id}, which the dataset does not "
                                     f"list. Expected an id in [0, {len(class_names)}) ({', '.join(class_names)})")
                objects.append((class_names[class_id], ((cx - w / 2) * width, (cy - h / 2) * height,
                                                        (cx + w / 2) * width, (cy + h / 2) * height)))
        collector.add(str(label_file), image, (height, width), objects)
    return collector.dataset(str(labels))


# -- whole folders ---------------------------------------------------------------------------------------
def _split_names(folder: Path) -> tuple[list[str], list[str]] | None:
    """The train and test image stems a folder's own split files name, if it has any."""
    imagesets = folder / "ImageSets" / "Main"
    for train, test in (("train", "test"), ("trainval", "test"), ("train", "val")):
        if (imagesets / f"{train}.txt").is_file() and (imagesets / f"{test}.txt").is_file():
            return tuple([line.split()[0] for line in (imagesets / f"{name}.txt").read_text().splitlines()
                          if line.strip()] for name in (train, test))
    csvs = folder / "data" / "train_labels.csv", folder / "data" / "test_labels.csv"  # the raccoon set's split
    if all(path.is_file() for path in csvs):
        return tuple(sorted({Path(row["filename"]).stem for row in csv.DictReader(path.open(encoding="utf-8"))})
                     for path in csvs)
    return None


def _first_folder(folder: Path, names: Sequence[str]) -> Path | None:
    return next((folder / name for name in names if (folder / name).is_dir()), None)


def load_detection_folder(folder: PathLike, class_names: Sequence[str] | None = None, *, test_fraction: float = 0.2,
                          seed: int = 0, on_invalid: str = "raise") -> tuple[DetectionDataset, DetectionDataset]:
    """The train and test splits of a VOC or COCO dataset folder.

    Layouts recognised:

    - COCO: ``annotations/instances_<split>.json`` (or ``<split>.json`` files) with the images in
      ``<split>/`` or ``images/``; the split whose name holds "train" trains, one holding "val" or
      "test" tests.
    - PASCAL VOC: ``Annotations/*.xml`` and ``JPEGImages/`` (or ``annotations/`` and ``images/``),
      split by ``ImageSets/Main/{train,test}.txt`` (or trainval/test, train/val) or, as in the
      raccoon set, ``data/{train,test}_labels.csv``.

    A folder without split files is split at random (seeded) with ``test_fraction`` of its images
    for testing.

    Returns:
        ``(train, test)`` datasets sharing one list of class names: ``class_names``, else the COCO
        training file's categories, else the sorted names used in the VOC files of both splits.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"No detection dataset folder at {folder}: expected a VOC folder "
                                   f"(Annotations/ + JPEGImages/) or a COCO folder (annotations/*.json)")
    jsons = sorted((folder / "annotations").glob("*.json")) if (folder / "annotations").is_dir() else []
    jsons += sorted(folder.glob("*.json"))
    if jsons:
        train_files = [p for p in jsons if "train" in p.stem]
        test_files = [p for p in jsons if "val" in p.stem or "test" in p.stem]
        if not train_files or not test_files:
            raise DatasetNotFoundError(f"{folder}: found {', '.join(p.name for p in jsons)}; expected a COCO file "
                                       f"whose name holds 'train' and one whose name holds 'val' or 'test'")

        def coco(path: Path, names):
            split = path.stem.removeprefix("instances_")
            images = _first_folder(folder, (split, "images")) or folder
            return read_coco(path, images, names, on_invalid=on_invalid)

        train = coco(train_files[0], class_names)
        return train, coco(test_files[0], train.class_names)

    annotations = _first_folder(folder, ("Annotations", "annotations"))
    images = _first_folder(folder, ("JPEGImages", "images"))
    if annotations is None or images is None:
        raise DatasetNotFoundError(f"{folder} holds neither a COCO dataset (annotations/*.json) nor a VOC one "
                                   f"(Annotations/ or annotations/ with XML files, and JPEGImages/ or images/)")
    files = sorted(annotations.glob("*.xml"))
    if not files:
        raise DatasetNotFoundError(f"{annotations} holds no .xml annotation files")
    split = _split_names(folder)
    if split is None:
        order = np.random.default_rng(seed).permutation(len(files))
        test_count = max(1, int(round(test_fraction * len(files))))
        test_files, train_files = [files[i] for i in sorted(order[:test_count])], [files[i] for i in sorted(order[test_count:])]
    else:
        by_stem = {p.stem: p for p in files}
        missing = [stem for stem in split[0] + split[1] if stem not in by_stem]
        if missing:
            raise DatasetCorruptedError(f"{folder}: the split names {len(missing)} images with no annotation in "
                                        f"{annotations}, e.g. {missing[0]}")
        train_files, test_files = [by_stem[s] for s in split[0]], [by_stem[s] for s in split[1]]
    if class_names is None:  # the sorted names of every split, so that no split has a class the other lacks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the splits below warn about the same boxes
            class_names = read_voc(train_files + test_files, images, on_invalid=on_invalid).class_names
    return (read_voc(train_files, images, class_names, on_invalid=on_invalid),
            read_voc(test_files, images, class_names, on_invalid=on_invalid))


def load_image(path: PathLike, size: int | None = None) -> np.ndarray:
    """An image file as uint8 ``(3, H, W)`` RGB (grey images are converted), resized to ``size x size``."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if size is not None:
            image = image.resize((size, size), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def to_arrays(data: DetectionDataset, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images resized (stretched) to ``size x size`` and their boxes scaled alike.

    Returns:
        ``(images, targets)``: uint8 ``(N, 3, size, size)`` and float32 ``(N, M, 5)`` rows
        ``x1, y1, x2, y2, class`` padded with class -1 (M: the most objects in one image, at least 1).
    """
    most = max([len(b) for b in data.boxes] + [1])
    images = np.zeros((len(data), 3, size, size), np.uint8)
    targets = np.full((len(data), most, 5), -1.0, np.float32)
    for i, (path, (height, width), boxes, labels) in enumerate(zip(data.images, data.sizes, data.boxes, data.labels)):
        if not Path(path).is_file():
            raise DatasetNotFoundError(f"Missing image {path} (named by the dataset's annotations)")
        images[i] = load_image(path, size)
        scale = np.array([size / width, size / height] * 2, np.float32)
        targets[i, :len(boxes), :4] = boxes * scale
        targets[i, :len(boxes), 4] = labels
    return images, targets
