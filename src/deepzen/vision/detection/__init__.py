"""Object detection: boxes, anchors, NMS, an SSD-style detector, its loss, box-aware augmentation,
VOC/COCO/YOLO readers, COCO metrics (pycocotools) and MNIST scenes.

::

    from deepzen.vision.detection import SSD, fit_detector, evaluate_detector, load_mnist_scenes

    x_train, y_train, x_test, y_test = load_mnist_scenes(train_scenes=8000, test_scenes=1000)
    model = SSD(num_classes=10, in_channels=1, image_size=(128, 128), width=8, pyramid_channels=32)
    fit_detector(model, x_train, y_train, epochs=12, augment=DetectionAugment(scale=(0.8, 1.2)))
    evaluate_detector(model, x_test, y_test)   # {"map": ..., "map_50": ..., ...}

``fit_detector`` is ``Detector(model, ...).fit(...)`` (a :class:`~deepzen.models.Model`: callbacks,
checkpoints, exact resume) with AdamW and :class:`WarmupCosine`.

The recipes (``mnist-detection``, ``raccoon-detection``) live in :mod:`deepzen.vision.detection.recipes`.
"""

from deepzen.vision.detection.anchors import AnchorSpec, make_anchors
from deepzen.vision.detection.augment import DetectionAugment
from deepzen.vision.detection.boxes import box_area, box_iou, clip_boxes, decode, encode, to_center, to_corners
from deepzen.vision.detection.loss import MultiboxLoss, match_anchors
from deepzen.vision.detection.metrics import evaluate_detections
from deepzen.vision.detection.model import SSD, postprocess
from deepzen.vision.detection.nms import batched_nms, nms
from deepzen.vision.detection.readers import (DetectionDataset, load_detection_folder, read_coco, read_voc,
                                              read_yolo, to_arrays)
from deepzen.vision.detection.scenes import load_mnist_scenes, make_scenes
from deepzen.vision.detection.train import Detector, WarmupCosine, detect_images, evaluate_detector, fit_detector

__all__ = [
    "AnchorSpec", "make_anchors", "DetectionAugment", "box_area", "box_iou", "clip_boxes", "decode", "encode",
    "to_center", "to_corners", "MultiboxLoss", "match_anchors", "evaluate_detections", "SSD", "postprocess",
    "batched_nms", "nms", "DetectionDataset", "load_detection_folder", "read_coco", "read_voc", "read_yolo",
    "to_arrays", "load_mnist_scenes", "make_scenes", "Detector", "WarmupCosine", "detect_images",
    "evaluate_detector", "fit_detector",
]
