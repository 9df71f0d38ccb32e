"""Video readers: folders of frames, ``.npy`` arrays and video files, as clips ``(C, T, H, W)``.

Every reader returns a uint8 clip in PyTorch's layout for 3D convolutions, ``(C, T, H, W)``
(channels, frames, height, width); stack clips into ``(N, C, T, H, W)`` for the video models of
:mod:`deepzen.vision.video`. :func:`read_video` picks the reader from the path:

- a folder of image files (``frame_1.png``, ``frame_2.png``, ... ``frame_10.png``: sorted with the
  numbers compared as numbers), all of one size;
- a ``.npy`` file holding ``(T, H, W)`` grey frames, ``(T, H, W, C)`` (what most tools write) or
  ``(C, T, H, W)``; ``layout`` says which when the shape leaves it open;
- any other file is decoded with PyAV (FFmpeg), the optional ``video`` extra:
  ``pip install 'deepzen[video]'``. A file that cannot be decoded raises :class:`VideoDecodeError`
  naming it.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "clip.npy"
    >>> np.save(path, np.zeros((20, 64, 64), np.uint8))       # (T, H, W) grey frames
    >>> read_video(path).shape                                  # (C, T, H, W)
    (1, 20, 64, 64)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from deepzen.data.images import IMAGE_SUFFIXES
from deepzen.data.paths import PathLike

LAYOUTS = ("THW", "THWC", "CTHW")
"""The ``.npy`` layouts :func:`read_npy_clip` reads."""


class VideoDecodeError(ValueError):
    """A video file that could not be decoded; the message names the file and the decoder's reason."""


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _as_channels(frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, C)`` uint8 -> ``(C, T, H, W)``."""
    return np.ascontiguousarray(frames.transpose(3, 0, 1, 2))


def read_frames_folder(folder: PathLike, *, mode: str | None = None) -> np.ndarray:
    """The image files of ``folder`` as one clip, in natural order (``frame_2`` before ``frame_10``).

    Args:
        folder: a folder of image files (``.png``, ``.jpg``, ...); other files are ignored.
        mode: PIL mode every frame is converted to ("L" grey, "RGB"); default: the first frame's,
            grey for "L" / "1" / "I" frames, else RGB.

    Returns:
        uint8 ``(C, T, H, W)``, C = 1 for grey, 3 for RGB.

    Raises:
        FileNotFoundError: no folder, or no image files in it.
        ValueError: a frame that cannot be read, or whose size differs from the first frame's (named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder of frames at {folder}")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise FileNotFoundError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}): expected one per frame")
    frames = []
    for file in files:
        try:
            with Image.open(file) as image:
                if mode is None:
                    mode = "L" if image.mode in ("L", "1", "I", "I;16") else "RGB"
                frame = np.asarray(image.convert(mode))
        except (OSError, ValueError) as error:
            raise ValueError(f"Frame {file} cannot be read as an image: {error}") from error
        if frames and frame.shape != frames[0].shape:
            raise ValueError(f"Frame {file} is {frame.shape[1]}x{frame.shape[0]}, but {files[0].name} is "
                             f"{frames[0].shape[1]}x{frames[0].shape[0]}: expected frames of one size")
        frames.append(frame)
    clip = np.stack(frames)  # (T, H, W) or (T, H, W, C)
    return _as_channels(clip[..., None] if clip.ndim == 3 else clip)


def read_npy_clip(path: PathLike, layout: str | None = None) -> np.ndarray:
    """A clip saved with ``np.save``.

    Args:
        path: the ``.npy`` file (loaded without pickles).
        layout: "THW" (grey frames), "THWC" or "CTHW"; default: "THW" for a 3-d array, and for a
            4-d one the layout whose channel axis holds 1, 3 or 4 channels, when only one does.

    Returns:
        ``(C, T, H, W)`` with the file's dtype.

    Raises:
        ValueError: a file that is not a 3-d or 4-d array, a layout that does not fit it, or a 4-d
            shape that fits both "THWC" and "CTHW" without ``layout``.
    """
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a NumPy .npy array: {error}") from error
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"read_npy_clip expects layout in {LAYOUTS}. Received: layout={layout!r}")
    if layout is None and array.ndim == 3:
        layout = "THW"
    elif layout is None and array.ndim == 4:
        fits = [name for name, channels in (("THWC", array.shape[3]), ("CTHW", array.shape[0]))
                if channels in (1, 3, 4)]
        if len(fits) != 1:
            reading = "either THWC or CTHW" if fits else "neither THWC nor CTHW (1, 3 or 4 channels)"
            raise ValueError(f"{path}: a clip of shape {array.shape} fits {reading}; pass layout=\"THWC\" or "
                             f"layout=\"CTHW\"")
        layout = fits[0]
    if layout is None or array.ndim != len(layout):
        expected = f"a {len(layout)}-d clip ({layout})" if layout else f"a clip in one of the layouts {LAYOUTS}"
        raise ValueError(f"{path} holds an array of shape {array.shape}; expected {expected}")
    if layout == "THW":
        return array[None]
    return np.ascontiguousarray(array.transpose(3, 0, 1, 2)) if layout == "THWC" else array


def decode_video_file(path: PathLike, *, grey: bool = False, max_frames: int | None = None) -> np.ndarray:
    """The frames of a video file, decoded by PyAV (FFmpeg): ``.mp4``, ``.avi``, ``.mkv``, ``.webm``, ...

    Args:
        path: the file.
        grey: decode to grey (C = 1) instead of RGB (C = 3).
        max_frames: stop after this many frames (None: all).

    Returns:
        uint8 ``(C, T, H, W)``.

    Raises:
        ImportError: PyAV is not installed (the message says how to install it).
        FileNotFoundError: no file at ``path``.
        VideoDecodeError: the file is not a video FFmpeg can decode, or has no video frames.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No video file at {path}")
    try:
        import av  # optional: the `video` extra
    except ImportError as error:
        raise ImportError(f"Reading the video file {path} needs PyAV: pip install 'deepzen[video]' "
                          f"(or pip install av). Folders of frames and .npy clips need nothing extra") from error
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"Cannot decode video {path}: it has no video stream")
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="gray" if grey else "rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.FFmpegError as error:
        raise VideoDecodeError(f"Cannot decode video {path}: {error}") from error
    if not frames:
        raise VideoDecodeError(f"Cannot decode video {path}: no frames were decoded")
    clip = np.stack(frames)  # (T, H, W) or (T, H, W, 3)
    return _as_channels(clip[..., None] if clip.ndim == 3 else clip)


def read_video(path: PathLike, *, layout: str | None = None, grey: bool = False) -> np.ndarray:
    """A clip ``(C, T, H, W)`` from a folder of frames, a ``.npy`` array or a video file (see the module docstring).

    Args:
        path: the folder or file.
        layout: for ``.npy`` files: see :func:`read_npy_clip`.
        grey: for folders and video files: read the frames as grey (C = 1).
    """
    path = Path(path)
    if path.is_dir():
        return read_frames_folder(path, mode="L" if grey else None)
    if path.suffix.lower() == ".npy":
        return read_npy_clip(path, layout)
    return decode_video_file(path, grey=grey)
