"""MRC images (the cryo-EM image format) through ``mrcfile``: atomic writes with the pixel size in the header,
reads that fail with the file's name on anything corrupt or truncated."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from cryorl.fileio import atomic_path

__all__ = ["MrcError", "write_mrc", "read_mrc", "MRC_DTYPES"]

# dtypes MRC stores natively (mode 0, 1, 2, 6, 12); others are refused rather than silently converted
MRC_DTYPES = (np.int8, np.int16, np.float32, np.uint16, np.float16)


class MrcError(ValueError):
    """A corrupt, truncated or unexpected MRC file; the message names the file."""

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


def write_mrc(path: str | os.PathLike, data: np.ndarray, pixel_size_angstrom: float) -> Path:
    """Write a 2D image or a 3D stack (frames, rows, columns) with its pixel size (Å) in the header, atomically."""
    import mrcfile

    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise ValueError(f"{path}: MRC data must be 2D or 3D, got shape {data.shape}")
    if data.dtype.type not in MRC_DTYPES:
        raise ValueError(f"{path}: dtype {data.dtype} is not an MRC mode; use one of "
                         f"{', '.join(np.dtype(t).name for t in MRC_DTYPES)}")
    if not pixel_size_angstrom > 0:
        raise ValueError(f"{path}: pixel size must be positive, got {pixel_size_angstrom}")
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data))
            mrc.voxel_size = float(pixel_size_angstrom)
            if data.ndim == 3:
                mrc.set_image_stack()
            mrc.header.label[0] = "Created by cryorl".ljust(80)         # no timestamp: same input, same bytes
            mrc.header.nlabl = 1
    return Path(path)


def read_mrc(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """The image (or stack) and its pixel size in Å. Raises :class:`MrcError` naming the file when it is not a
    valid MRC file, is truncated, or has no pixel size; ``FileNotFoundError`` when it does not exist."""
    import mrcfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no MRC file {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")           # mrcfile warns (rather than fails) on some corruption
            with mrcfile.open(path, permissive=False) as mrc:
                data = np.array(mrc.data)
                pixel = float(mrc.voxel_size.x)
    except (ValueError, OSError, EOFError, RuntimeWarning) as error:
        raise MrcError(path, f"not a valid MRC file ({error})") from None
    if data.size == 0:
        raise MrcError(path, "no image data")
    if not pixel > 0:
        raise MrcError(path, "no pixel size in the header (voxel size is 0)")
    return data, pixel
