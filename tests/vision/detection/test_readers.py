"""VOC, COCO and YOLO readers on tiny hand-written files; dataset folders; the bad-input rules."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepzen.data.paths import DatasetCorruptedError, DatasetNotFoundError
from deepzen.vision.detection.readers import (load_detection_folder, read_coco, read_voc, read_yolo, to_arrays)

# Two images; the same objects in every format. Boxes in deepzen's [x1, x2) pixels from 0.
IMAGES = {"a": (60, 80), "b": (40, 50)}  # name: (height, width)
OBJECTS = {"a": [("dog", (10, 5, 40, 35)), ("cat", (50, 20, 80, 60))], "b": []}


def write_images(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (height, width) in IMAGES.items():
        Image.new("RGB", (width, height), (200, 100, 50)).save(folder / f"{name}.png")


def voc_xml(name, objects, size=True):
    height, width = IMAGES[name]
    parts = [f"<annotation><filename>{name}.png</filename>"]
    if size:
        parts.append(f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>")
    for label, (x1, y1, x2, y2) in objects:  # VOC counts from 1, inclusive
        parts.append(f"<object><name>{label}</name><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
                     f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


def write_voc(folder: Path, objects=OBJECTS, size=True):
    write_images(folder / "JPEGImages")
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        (folder / "Annotations" / f"{name}.xml").write_text(voc_xml(name, objects[name], size))
    return sorted((folder / "Annotations").glob("*.xml"))


def coco_json(objects=OBJECTS, categories=({"id": 7, "name": "cat"}, {"id": 3, "name": "dog"})):
    ids = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for number, (name, (height, width)) in enumerate(IMAGES.items(), start=1):
        images.append({"id": number, "file_name": f"{name}.png", "height": height, "width": width})
        for label, (x1, y1, x2, y2) in objects[name]:
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": ids[label],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": list(categories)}


def check_expected(data):
    assert data.class_names == ("cat", "dog")
    assert [Path(p).name for p in data.images] == ["a.png", "b.png"]
    assert data.sizes == [(60, 80), (40, 50)]
    np.testing.assert_allclose(data.boxes[0], [[10, 5, 40, 35], [50, 20, 80, 60]])
    assert data.labels[0].tolist() == [1, 0]
    assert data.boxes[1].shape == (0, 4) and data.labels[1].shape == (0,)  # the image with no objects is kept


def test_voc_reader(tmp_path):
    check_expected(read_voc(write_voc(tmp_path), tmp_path / "JPEGImages"))
    # without <size>, the size comes from the image file
    check_expected(read_voc(write_voc(tmp_path / "nosize", size=False), tmp_path / "nosize" / "JPEGImages"))


def test_coco_reader(tmp_path):
    write_images(tmp_path)
    (tmp_path / "instances.json").write_text(json.dumps(coco_json()))
    data = read_coco(tmp_path / "instances.json", tmp_path)
    # categories in id order: dog (3) before cat (7); so the names are not sorted here
    assert data.class_names == ("dog", "cat")
    check_expected(read_coco(tmp_path / "instances.json", tmp_path, class_names=("cat", "dog")))


def test_yolo_reader(tmp_path):
    write_images(tmp_path / "images")
    (tmp_path / "labels").mkdir()
    lines = []
    for label, (x1, y1, x2, y2) in OBJECTS["a"]:
        lines.append(f"{('cat', 'dog').index(label)} {(x1 + x2) / 2 / 80} {(y1 + y2) / 2 / 60} {(x2 - x1) / 80} "
                     f"{(y2 - y1) / 60}")
    (tmp_path / "labels" / "a.txt").write_text("\n".join(lines) + "\n")  # b has no label file: no objects
    data = read_yolo(tmp_path / "labels", tmp_path / "images", ("cat", "dog"))
    check_expected(data)
    (tmp_path / "labels" / "a.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ValueError, match=r"class 5, which the dataset does not list.*\[0, 2\) \(cat, dog\)"):
        read_yolo(tmp_path / "labels", tmp_path / "images", ("cat", "dog"))
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5\n")
    with pytest.raises(DatasetCorruptedError, match="line 1.*expected 'class cx cy w h'"):
        read_yolo(tmp_path / "labels", tmp_path / "images", ("cat", "dog"))


def test_box_outside_the_image_is_clipped_with_a_warning(tmp_path):
    objects = {"a": [("dog", (-10, 5, 40, 35)), ("cat", (50, 20, 95, 70))], "b": []}
    with pytest.warns(UserWarning, match="2 boxes reached outside their image and were clipped"):
        data = read_voc(write_voc(tmp_path, objects), tmp_path / "JPEGImages")
    np.testing.assert_allclose(data.boxes[0], [[0, 5, 40, 35], [50, 20, 80, 60]])


@pytest.mark.parametrize("box, problem", [((30, 5, 20, 35), "degenerate"), ((10, 5, 10, 35), "degenerate"),
                                          ((90, 70, 120, 90), "no area inside the image")])
def test_degenerate_or_outside_box_is_refused_or_dropped(tmp_path, box, problem):
    objects = {"a": [("dog", (10, 5, 40, 35)), ("cat", box)], "b": []}
    files = write_voc(tmp_path, objects)
    with pytest.raises(ValueError, match=rf"a\.xml: object 2 \('cat'\) has box .*{problem}.*on_invalid='drop'"):
        read_voc(files, tmp_path / "JPEGImages")
    with pytest.warns(UserWarning, match="left out"):
        data = read_voc(files, tmp_path / "JPEGImages", on_invalid="drop")
    assert data.labels[0].tolist() == [0] and data.class_names == ("dog",)
    with pytest.raises(ValueError, match="on_invalid to be one of"):
        read_voc(files, tmp_path / "JPEGImages", on_invalid="ignore")


def test_unknown_class_names_are_refused(tmp_path):
    files = write_voc(tmp_path)
    with pytest.raises(ValueError, match=r"object 2 has class 'cat', which the dataset does not list. Expected one of: "
                                         r"dog, bird"):
        read_voc(files, tmp_path / "JPEGImages", class_names=("dog", "bird"))
    write_images(tmp_path / "coco")
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(coco_json()))
    with pytest.raises(ValueError, match="class 'dog', which the dataset does not list"):
        read_coco(tmp_path / "coco" / "instances.json", tmp_path / "coco", class_names=("cat",))


def test_corrupted_files_are_named(tmp_path):
    files = write_voc(tmp_path)
    files[0].write_text("<annotation><filename>a.png</filename>")
    with pytest.raises(DatasetCorruptedError, match="a.xml is not well-formed XML"):
        read_voc(files, tmp_path / "JPEGImages")
    files[0].write_text(voc_xml("a", OBJECTS["a"]).replace("<xmin>11</xmin>", "<xmin>eleven</xmin>"))
    with pytest.raises(DatasetCorruptedError, match="<bndbox/xmin> is 'eleven'; expected a number"):
        read_voc(files, tmp_path / "JPEGImages")
    (tmp_path / "bad.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetCorruptedError, match="not a COCO instances file"):
        read_coco(tmp_path / "bad.json", tmp_path)


def test_voc_folder_with_imagesets_and_to_arrays(tmp_path):
    write_voc(tmp_path)
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (tmp_path / "ImageSets" / "Main" / "test.txt").write_text("b\n")
    train, test = load_detection_folder(tmp_path)
    assert [p.name for p in train.images] == ["a.png"] and [p.name for p in test.images] == ["b.png"]
    assert test.class_names == train.class_names == ("cat", "dog")
    images, targets = to_arrays(train, 40)
    assert images.shape == (1, 3, 40, 40) and images.dtype == np.uint8 and targets.shape == (1, 2, 5)
    np.testing.assert_allclose(targets[0], [[5, 10 / 3, 20, 70 / 3, 1], [25, 40 / 3, 40, 40, 0]], rtol=1e-6)
    _, empty = to_arrays(test, 40)
    assert (empty[..., 4] == -1).all()  # no objects: all padding


def test_coco_folder_and_random_split(tmp_path):
    write_images(tmp_path / "coco" / "train")
    write_images(tmp_path / "coco" / "val")
    (tmp_path / "coco" / "annotations").mkdir()
    for split in ("train", "val"):
        (tmp_path / "coco" / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco_json()))
    train, test = load_detection_folder(tmp_path / "coco")
    assert train.images[0] == tmp_path / "coco" / "train" / "a.png" and test.images[0].parent.name == "val"
    assert train.class_names == test.class_names == ("dog", "cat")

    write_voc(tmp_path / "voc")  # no split files: a seeded random split
    first = load_detection_folder(tmp_path / "voc", test_fraction=0.5, seed=1)
    again = load_detection_folder(tmp_path / "voc", test_fraction=0.5, seed=1)
    assert [len(s) for s in first] == [1, 1] and first[1].images == again[1].images
    with pytest.raises(DatasetNotFoundError, match="neither a COCO dataset"):
        load_detection_folder(tmp_path / "coco" / "train")


def test_the_raccoon_folder_has_the_authors_split():
    folder = Path(os.environ["DEEPZEN_DATA"]) / "raccoon"
    train, test = load_detection_folder(folder)
    assert (len(train), len(test)) == (160, 40)
    assert sum(len(b) for b in train.boxes) == 173 and sum(len(b) for b in test.boxes) == 44  # as the CSVs say
    assert train.class_names == ("raccoon",) and not set(train.images) & set(test.images)
    for boxes, (height, width) in zip(train.boxes + test.boxes, train.sizes + test.sizes):
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
