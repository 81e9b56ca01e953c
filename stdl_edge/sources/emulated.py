"""Frames (a folder of images) or a video, turned into events by the DVS emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from stdl_edge.emulator import Emulator, EmulatorConfig
from stdl_edge.events import SensorSize

from .base import EventSource, ReadOptions, SourceError, optional_import
from .registry import Format, register_format

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".gif", ".webm")


class EmulatedSource(EventSource):
    """Frames from a folder of images or a video, turned into events by the DVS emulator,
    one frame at a time (memory: one frame plus the emulator's state)."""

    wrap_errors = True  # an image or video library's own error becomes one SourceError line

    def __init__(self, path: Path, fps: float = 30.0, sensor_size: tuple[int, ...] | None = None,
                 emulator_config: EmulatorConfig | None = None) -> None:
        if not path.exists():
            raise FileNotFoundError(f"frames {path} do not exist")
        if path.is_file() and path.suffix.lower() in _IMAGE_SUFFIXES:
            raise SourceError(f"{path}: a single image is not a stream; pass the folder of frames")
        if not fps > 0:
            raise SourceError(f"fps={fps} must be > 0")
        self.path, self.name, self.fps, self.config = path, str(path), float(fps), emulator_config
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not self.files:
                raise SourceError(f"{path}: no image files ({', '.join(_IMAGE_SUFFIXES)}) in the folder")
        else:
            self.files = []
            self._imageio = optional_import("imageio.v3", f"reading the video {path}",
                                            "pip install imageio imageio-ffmpeg (or pass a folder of PNG frames)")
        first = next(self._frames())
        self.native_size = SensorSize(first.shape[1], first.shape[0])
        if sensor_size is not None and tuple(sensor_size[:2]) != tuple(self.native_size[:2]):
            raise SourceError(f"{path}: frames are {first.shape[1]}x{first.shape[0]}, not {sensor_size[:2]}; "
                              "use crop/downsample instead of sensor_size")

    @classmethod
    def open(cls, spec: str | Path, options: ReadOptions) -> EmulatedSource:
        return cls(Path(spec), fps=options.fps, sensor_size=options.sensor_size,
                   emulator_config=options.extra.get("emulator"))

    def _frames(self) -> Iterator[np.ndarray]:
        if self.files:
            from PIL import Image

            for f in self.files:
                try:
                    with Image.open(f) as im:
                        yield np.asarray(im.convert("L"), dtype=np.float32) / 255.0
                except OSError as e:
                    raise SourceError(f"{f}: not a readable image ({e})") from None
        else:
            for frame in self._imageio.imiter(self.path):
                frame = np.asarray(frame, dtype=np.float32)
                if frame.ndim == 3:
                    frame = frame[..., :3].mean(axis=-1)
                yield frame / 255.0

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        config = self.config if self.config is not None else EmulatorConfig()
        em = Emulator(config, (self.native_size.height, self.native_size.width))
        period = 1e6 / self.fps
        for i, frame in enumerate(self._frames()):
            if frame.shape != (self.native_size.height, self.native_size.width):
                raise SourceError(f"{self.name}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, the first was "
                                  f"{self.native_size.width}x{self.native_size.height}")
            ev = em.step(frame, int(round(i * period)))
            yield ev if len(ev) < 2 or (np.diff(ev["t"]) >= 0).all() else np.sort(ev, order="t", kind="stable")


register_format(Format("frames", _IMAGE_SUFFIXES, EmulatedSource.open, None,
                       "a folder of images (PNG, JPEG, ...) through the DVS emulator, fps= apart "
                       "(one image alone is refused: it is not a stream)", claims=lambda spec: Path(spec).is_dir()))
register_format(Format("video", _VIDEO_SUFFIXES, EmulatedSource.open, None,
                       "a video through the DVS emulator (needs imageio)"))
