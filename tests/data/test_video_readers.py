"""Video readers: round trips through folders of frames, .npy arrays and (lossless) video files, and bad input."""

from __future__ import annotations

import doctest
import sys

import numpy as np
import pytest
from PIL import Image

from deepzen.data import video
from deepzen.data.video import VideoDecodeError, read_frames_folder, read_npy_clip, read_video

av = pytest.importorskip("av")  # the `video` extra; installed with the `test` extra

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (12, 16, 24), dtype=np.uint8)  # (T, H, W)
RGB = RNG.integers(0, 256, (12, 16, 24, 3), dtype=np.uint8)  # (T, H, W, C)


def write_frames(folder, frames, suffix=".png"):
    folder.mkdir()
    for index, frame in enumerate(frames, start=1):  # frame_1 ... frame_12: order by number, not by text
        Image.fromarray(frame).save(folder / f"frame_{index}{suffix}")
    return folder


def write_lossless_video(path, frames):
    """FFV1 (lossless) in Matroska: the decoded pixels must equal the written ones."""
    grey = frames.ndim == 3
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "gray" if grey else "bgr0"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="gray" if grey else "rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_frames_folder_round_trip_in_natural_order(tmp_path):
    clip = read_frames_folder(write_frames(tmp_path / "grey", GREY))
    assert clip.shape == (1, 12, 16, 24) and clip.dtype == np.uint8
    np.testing.assert_array_equal(clip[0], GREY)  # frame_10 after frame_9, not after frame_1
    (tmp_path / "grey" / "notes.txt").write_text("not a frame")  # other files are ignored
    np.testing.assert_array_equal(read_video(tmp_path / "grey")[0], GREY)
    rgb = read_frames_folder(write_frames(tmp_path / "rgb", RGB))
    np.testing.assert_array_equal(rgb, RGB.transpose(3, 0, 1, 2))  # (C, T, H, W)
    np.testing.assert_array_equal(read_video(tmp_path / "rgb", grey=True)[0],
                                  np.stack([np.asarray(Image.fromarray(f).convert("L")) for f in RGB]))


def test_frames_folder_errors_name_the_frame(tmp_path):
    folder = write_frames(tmp_path / "frames", GREY[:3])
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "frame_4.png")
    with pytest.raises(ValueError, match=r"frame_4\.png is 8x8, but frame_1\.png is 24x16"):
        read_frames_folder(folder)
    (folder / "frame_4.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"Frame .*frame_4\.png cannot be read as an image"):
        read_frames_folder(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image files"):
        read_frames_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="No folder of frames"):
        read_frames_folder(tmp_path / "missing")


@pytest.mark.parametrize("layout, array, expected", [
    ("THW", GREY, GREY[None]),
    ("THWC", RGB, RGB.transpose(3, 0, 1, 2)),
    ("CTHW", RGB.transpose(3, 0, 1, 2), RGB.transpose(3, 0, 1, 2)),
])
def test_npy_round_trip(tmp_path, layout, array, expected):
    path = tmp_path / "clip.npy"
    np.save(path, array)
    np.testing.assert_array_equal(read_video(path), expected)  # layout read from the shape
    np.testing.assert_array_equal(read_npy_clip(path, layout=layout), expected)


def test_npy_refuses_what_it_cannot_read(tmp_path):
    path = tmp_path / "clip.npy"
    np.save(path, np.zeros((3, 5, 8, 3), np.uint8))  # 3 frames of RGB, or RGB of 3 frames: ambiguous
    with pytest.raises(ValueError, match=r"fits either THWC or CTHW; pass layout"):
        read_npy_clip(path)
    assert read_npy_clip(path, layout="THWC").shape == (3, 3, 5, 8)
    with pytest.raises(ValueError, match=r"expected a 3-d clip \(THW\)"):
        read_npy_clip(path, layout="THW")
    with pytest.raises(ValueError, match=r"layout in \('THW', 'THWC', 'CTHW'\)\. Received: layout='HWT'"):
        read_npy_clip(path, layout="HWT")
    np.save(path, np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(4, 5\); expected a clip in one of the layouts"):
        read_npy_clip(path)
    np.save(path, np.zeros((2, 5, 8, 2), np.uint8))
    with pytest.raises(ValueError, match=r"fits neither THWC nor CTHW"):
        read_npy_clip(path)
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.npy is not a NumPy \.npy array"):
        read_video(tmp_path / "junk.npy")


def test_video_file_round_trip(tmp_path):
    rgb = read_video(write_lossless_video(tmp_path / "clip.mkv", RGB))
    np.testing.assert_array_equal(rgb, RGB.transpose(3, 0, 1, 2))
    grey = read_video(write_lossless_video(tmp_path / "grey.mkv", GREY), grey=True)
    np.testing.assert_array_equal(grey[0], GREY)
    assert video.decode_video_file(tmp_path / "clip.mkv", max_frames=5).shape == (3, 5, 16, 24)


def test_an_undecodable_video_is_named(tmp_path):
    path = tmp_path / "holiday.mp4"
    path.write_bytes(b"this is not a video" * 50)
    with pytest.raises(VideoDecodeError, match=r"Cannot decode video .*holiday\.mp4"):
        read_video(path)
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(VideoDecodeError, match=r"Cannot decode video .*empty\.avi"):
        read_video(tmp_path / "empty.avi")
    with pytest.raises(FileNotFoundError, match=r"No video file at .*missing\.mp4"):
        read_video(tmp_path / "missing.mp4")


def test_missing_pyav_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x")
    with pytest.raises(ImportError, match=r"clip\.mp4 needs PyAV: pip install 'deepzen\[video\]'"):
        read_video(path)


def test_docstring_examples():
    result = doctest.testmod(video)
    assert result.failed == 0 and result.attempted > 0
