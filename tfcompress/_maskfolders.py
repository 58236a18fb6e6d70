"""Segmentation data from folders: ``images/`` and ``masks/`` side by side, a mask per image by file name.

Layout (``--data seg/``)::

    seg/images/0001.png   seg/masks/0001.png      (or train/, val/, test/ each holding images/ and masks/)

Images are read at the model's input size (bilinear) and kept uint8, so
``--scale auto`` divides them by 255 as it does any image. Masks are read as
one-channel images at the model's output size (nearest neighbour, so class
ids stay ids): for a one-channel output (a sigmoid map) a mask becomes 0/1
(pixels above half of 255, or above 0 for masks saved as 0/1); for a
C-channel output each pixel's value is its class id, checked below C.

Example:
    >>> data = from_mask_folders("seg/", input_shape=(64, 64, 3), output_shape=(64, 64, 1))  # doctest: +SKIP
    >>> data.train[1].shape[1:]  # doctest: +SKIP
    (64, 64, 1)
"""

from __future__ import annotations

import os

import numpy as np

from tfcompress._imagefiles import check_images, image_files
from tfcompress.errors import DataError, first_line

__all__ = ["mask_roots", "from_mask_folders"]

_SPLITS = {"train": ("train",), "validation": ("val", "valid", "validation"), "test": ("test",)}


def _pair(root: str) -> bool:
    return os.path.isdir(os.path.join(root, "images")) and os.path.isdir(os.path.join(root, "masks"))


def mask_roots(path: str) -> dict | None:
    """``{split: folder holding images/ and masks/}`` when ``path`` is laid out so, else None."""
    if _pair(path):
        return {"train": path}
    roots = {split: os.path.join(path, name) for split, names in _SPLITS.items() for name in names
             if _pair(os.path.join(path, name))}
    return roots if "train" in roots else None


def _decode(path: str, channels: int, size: tuple, method: str) -> np.ndarray:
    from tfcompress._keras import tf

    try:
        img = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    except (tf.errors.OpError, ValueError) as e:
        raise DataError(f"{path} cannot be decoded as an image ({first_line(e)}): remove or replace it.") from None
    img = tf.image.resize(img, size, method=method)
    return tf.cast(tf.round(tf.clip_by_value(img, 0, 255)), tf.uint8).numpy()


def _split(path: str, root: str, input_shape: tuple, output_shape: tuple) -> tuple:
    images = image_files(os.path.join(root, "images"), path)
    masks = {os.path.splitext(os.path.basename(m))[0]: m for m in image_files(os.path.join(root, "masks"), path)}
    if not images:
        raise DataError(f"{os.path.join(root, 'images')} holds no image: put the inputs there, one mask each in "
                        f"{os.path.join(root, 'masks')} with the same file name.")
    missing = [os.path.basename(i) for i in images if os.path.splitext(os.path.basename(i))[0] not in masks]
    if missing:
        raise DataError(f"{root}: {len(missing)} image(s) have no mask of the same name in masks/ (first: "
                        f"{missing[0]}): give every image its mask, e.g. images/0001.jpg and masks/0001.png.")
    pairs = [(i, masks[os.path.splitext(os.path.basename(i))[0]]) for i in images]
    check_images(path, [f for p in pairs for f in p])
    x = np.stack([_decode(i, input_shape[-1], input_shape[:2], "bilinear") for i, _ in pairs])
    m = np.stack([_decode(k, 1, output_shape[:2], "nearest") for _, k in pairs]).astype("int64")
    units = output_shape[-1]
    if units == 1:
        y = (m > (127 if m.max() > 1 else 0)).astype("float32")
    else:
        if m.max() >= units:
            raise DataError(f"{root}: mask values go up to {int(m.max())} but the model's output has {units} "
                            f"classes: save each pixel's class id (0..{units - 1}) in the masks.")
        y = m[..., 0]
    return x, y


def from_mask_folders(path, input_shape, output_shape, validation_fraction=0.1, test_fraction=0.2, seed=0,
                      scale="auto"):
    """A :class:`~tfcompress._userdata.Dataset` of images and their masks (see the module docstring).

    Args:
        path: the folder (``images/`` + ``masks/``, or ``train/``/``val/``/``test/`` each with both).
        input_shape: the model's input ``(h, w, c)``.
        output_shape: the model's output ``(h, w, units)``: masks are read at its size.
        validation_fraction, test_fraction, seed, scale: as :func:`~tfcompress._userdata.from_arrays`.

    Raises:
        DataError: no such layout, an image without its mask, an undecodable
            file, class ids beyond the output's channels, or a model whose
            output is not a map.
    """
    from tfcompress._userdata import from_arrays

    roots = mask_roots(path)
    if roots is None:
        raise DataError(f"{path} has no images/ and masks/ folders (nor train/ holding them).")
    if input_shape is None or output_shape is None or len(input_shape) != 3 or len(output_shape) != 3:
        raise DataError(f"{path} holds images and masks, for a model with one image input and one map output "
                        f"(height, width, channels); this model takes {input_shape} and gives {output_shape}.")
    read = {split: _split(path, root, tuple(input_shape), tuple(output_shape)) for split, root in roots.items()}
    return from_arrays(*read["train"], validation=read.get("validation"), test=read.get("test"),
                       validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed,
                       scale=scale, name=path, source="folder")
