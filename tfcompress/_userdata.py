"""The user's own data as a :class:`Dataset`: numpy arrays, ``.npz`` files,
image folders (one subfolder per class) and ``tf.data`` datasets.

:mod:`tfcompress.datasets` re-exports everything here and adds the built-in
datasets; use it rather than this module.

Scaling is explicit: ``scale="auto"`` divides uint8 inputs by 255 (image
folders are read as uint8) and keeps any other dtype; a number multiplies the
inputs by it; None keeps them. The factor is recorded in :attr:`Dataset.scale`.
Splits that are not given are carved from the training data, seeded. The
labels are checked against the model later, once, by :func:`tfcompress._data.prepare`.

Example:
    >>> import numpy as np
    >>> data = from_arrays(np.zeros((30, 4, 4, 1), "uint8"), np.arange(30) % 3)
    >>> data.splits
    {'validation': 'carved', 'test': 'carved'}
"""

import os
from dataclasses import dataclass, field

import numpy as np

from tfcompress._imagefiles import IMAGE_EXTENSIONS, bad_images_error, check_images, image_files, undecodable
from tfcompress._nested import count, each, flat, named, shapes, take
from tfcompress._scaling import _as_float32, _check_scaled, _scale_factor
from tfcompress.errors import DataError, first_line
from tflite_export._userfiles import available_memory, read_npz

__all__ = ["Dataset", "from_arrays", "from_npz", "from_directory", "from_tf_dataset", "NPZ_KEYS"]

# The .npz key names from_npz reads, per split: the first present wins.
NPZ_KEYS = {
    "train": (("x_train", "y_train"), ("x", "y")),
    "validation": (("x_val", "y_val"), ("x_valid", "y_valid"), ("x_validation", "y_validation")),
    "test": (("x_test", "y_test"),),
}
_SPLIT_DIRS = {"train": ("train",), "validation": ("val", "valid", "validation"), "test": ("test",)}


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits as ``(x, y)`` numpy tuples.

    ``x`` is float32 NHWC (the built-ins in [0, 1]); ``y`` holds the labels
    as given (int64 class ids, or one-hot rows).

    Attributes:
        name: what reports call it (a built-in name, or a file or folder path).
        train, validation, test: ``(x, y)`` numpy tuples.
        num_classes: classes (largest class id + 1, or one-hot width).
        class_names: the class names where known (an image folder's subfolders).
        scale: the factor the raw inputs were multiplied by (``1/255`` for
            uint8 images under ``scale="auto"``), None when kept as given.
        source: ``"builtin"``, ``"arrays"``, ``"npz"``, ``"folder"`` or ``"tf.data"``.
        splits: how each split came: ``"given"`` or ``"carved"`` (seeded, from train).
        scaled_by: under ``scale="auto"``, the model's own layer that scales
            raw inputs (a leading ``Rescaling``), when that is why they were
            kept as given.
    """

    name: str
    train: tuple
    validation: tuple
    test: tuple
    num_classes: int
    class_names: tuple = ()
    scale: float | None = None
    source: str = "builtin"
    splits: dict = field(default_factory=dict)
    scaled_by: str | None = None

    @property
    def input_shape(self):
        """The input shape without the batch axis (a dict or list of them for several inputs)."""
        return shapes(self.train[0])

    def scaling(self):
        """How the inputs were scaled, in words (printed by the CLI, stored in reports)."""
        if self.scale is None:
            if self.scaled_by:
                return f"inputs kept as given (the model's own {self.scaled_by} scales them)"
            return "inputs kept as given (no scaling)"
        inverse = 1 / self.scale
        if abs(inverse - round(inverse)) < 1e-6:
            return f"inputs divided by {round(inverse)}" + (" (uint8 -> [0, 1])" if round(inverse) == 255 else "")
        return f"inputs multiplied by {self.scale:.6g}"

    def describe(self):
        return (
            f"{self.name}: {count(self.train[0])} train / {count(self.validation[0])} "
            f"validation / {count(self.test[0])} test, input {self.input_shape}, "
            f"{self.labels()}; {self.scaling()}"
        )

    def labels(self):
        """What the labels are, in words: classes, or targets of a shape (maps, regression values)."""
        if isinstance(self.train[1], (dict, list, tuple)):
            return f"targets of shapes {shapes(self.train[1])}"
        y = np.asarray(self.train[1])
        if y.ndim > 2 or (y.ndim == 2 and y.dtype.kind == "f" and not _one_hot(y)):
            return f"targets of shape {y.shape[1:]}"
        if y.ndim == 1 and y.dtype.kind == "f" and len(y) and (np.mod(y, 1) != 0).any():
            return "scalar targets"
        return f"{self.num_classes} classes"

    def info(self):
        """What a report records about the data (JSON-ready)."""
        shape = self.input_shape
        return {"name": self.name, "source": self.source,
                "input_shape": list(shape) if isinstance(shape, tuple) else each(list, shape),
                "num_classes": self.num_classes, "scale": self.scale, "scaling": self.scaling(),
                "samples": {k: count(getattr(self, k)[0]) for k in ("train", "validation", "test")},
                "splits": dict(self.splits)}


def _one_hot(y):
    return bool(len(y)) and bool(np.all((y == 0) | (y == 1))) and bool(np.all(y.sum(axis=1) == 1))


def check_fraction(what, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise DataError(f"{what} must be a number in (0, 1), got {value!r}.")


def carve(n, fraction, seed):
    """Seeded ``(keep, held_out)`` index arrays: ``fraction`` of ``n`` held out (at least one)."""
    order = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * fraction)))
    return order[k:], order[:k]


def _split(what, pair):
    from tfcompress._checks import check_array

    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise DataError(f"{what} must be an (x, y) pair of arrays, got {type(pair).__name__}.")
    def checked(side, value):
        value = each(lambda a: check_array(what, side, a), value) if isinstance(value, dict) else \
            check_array(what, side, value)
        lengths = {len(a) for a in flat(value)}
        if len(lengths) > 1:
            raise DataError(f"{what}: the {side} arrays hold {sorted(lengths)} examples; every one must hold as many.")
        return value

    x, y = checked("x", pair[0]), checked("y", pair[1])
    if count(x) != count(y):
        raise DataError(f"{what}: x has {count(x)} examples but y has {count(y)}; they must match.")
    if count(x) == 0:
        raise DataError(f"{what} is empty: pass at least one example.")
    return x, each(lambda a: a.astype("int64") if a.dtype.kind in "iub" else a, y)


def _num_classes(ys):
    if isinstance(ys[0], dict):  # several outputs: targets by name, no one class count
        return 0
    y = ys[0]
    if y.ndim == 2 and y.shape[1] > 1:
        return int(y.shape[1])
    top = max(float(np.max(v)) for v in ys if len(v))
    return int(top) + 1 if np.isfinite(top) and top >= 0 else 1


def from_arrays(x, y, validation=None, test=None, validation_fraction=0.1, test_fraction=0.2, seed=0,
                scale="auto", name="arrays", class_names=(), source="arrays"):
    """A :class:`Dataset` from numpy arrays, splits carved (seeded) where not given.

    Args:
        x: training inputs, NHWC (or whatever the model takes).
        y: training labels: class ids ``(n,)`` or one-hot rows ``(n, classes)``.
        validation: ``(x, y)`` validation split. Defaults to `None` (carved
            from the training data after the test split).
        test: ``(x, y)`` test split. Defaults to `None` (carved from the
            training data).
        validation_fraction: share carved for validation. Defaults to `0.1`.
        test_fraction: share carved for testing. Defaults to `0.2`.
        seed: seed of the carve-outs. Defaults to `0`.
        scale: ``"auto"`` divides uint8 inputs by 255 and keeps any other
            dtype; a number multiplies the inputs by it (``1/255``); None
            keeps them. The factor is recorded in :attr:`Dataset.scale`.
            Defaults to `"auto"`.
        name: what reports call the data. Defaults to `"arrays"`.
        class_names: names of the classes. Defaults to `()`.
        source: recorded in :attr:`Dataset.source`. Defaults to `"arrays"`.

    Returns:
        A :class:`Dataset` (inputs float32).

    Raises:
        DataError: non-numeric arrays, mismatched lengths, too few examples
            to carve the missing splits, splits of different input dtypes
            under ``scale="auto"``, or a bad ``scale``.

    Example:
        >>> import numpy as np
        >>> x = np.random.randint(0, 256, (50, 8, 8, 1), dtype=np.uint8)
        >>> data = from_arrays(x, np.arange(50) % 3, seed=1)
        >>> len(data.test[0]), data.num_classes, round(data.scale * 255, 6)
        (10, 3, 1.0)
    """
    train = _split("train data", (x, y))
    given = {"validation": validation, "test": test}
    splits = {k: _split(f"{k} data", v) for k, v in given.items() if v is not None}
    missing = [k for k in ("test", "validation") if k not in splits]
    if count(train[0]) < len(missing) + 1:
        raise DataError(f"{name}: {count(train[0])} example(s) cannot be split into train and "
                        f"{' and '.join(missing)}: pass more data or the splits themselves.")
    for k, fraction in (("test", test_fraction), ("validation", validation_fraction)):
        if k in missing:
            check_fraction(f"{k}check_fraction", fraction)
            keep, held = carve(count(train[0]), fraction, seed)
            if len(keep) == 0:
                keep, held = held[1:], held[:1]
            splits[k] = (take(train[0], held), take(train[1], held))
            train = (take(train[0], keep), take(train[1], keep))
    factor = _scale_factor(scale, train[0])
    out = {"train": train, **splits}
    _check_scaled(name, factor, out)
    if scale == "auto":
        kinds = {k: tuple(a.dtype == np.uint8 for a in flat(v[0])) for k, v in out.items()}
        if len(set(kinds.values())) > 1:
            raise DataError(f"{name}: some splits are uint8 and some are not ({kinds}); scale='auto' would "
                            "scale them differently: give them one dtype or pass scale explicitly.")
    with np.errstate(over="ignore", invalid="ignore"):
        out = {k: (each(lambda a: _as_float32(a, factor), v[0]), v[1]) for k, v in out.items()}
    return Dataset(name=str(name), train=out["train"], validation=out["validation"], test=out["test"],
                   num_classes=_num_classes([v[1] for v in out.values()]), class_names=tuple(class_names),
                   scale=factor, source=source,
                   splits={k: "carved" if k in missing else "given" for k in ("validation", "test")})


def from_npz(path, validation_fraction=0.1, test_fraction=0.2, seed=0, scale="auto"):
    """A :class:`Dataset` from a ``.npz`` file (``numpy.savez``), never unpickling.

    Key names (:data:`NPZ_KEYS`): ``x_train``/``y_train`` or plain ``x``/``y``
    for training; optionally ``x_val``/``y_val`` (or ``x_valid``,
    ``x_validation``) and ``x_test``/``y_test``. Missing splits are carved
    from the training data (seeded). A model with several inputs or outputs
    takes one array per input or output, named ``<key>/<name>`` after the
    model's input or output: ``x_train/image``, ``y_train/box``,
    ``y_train/cls`` (each split alike); the data then holds dicts by name.

    Args:
        path: the ``.npz`` file.
        validation_fraction, test_fraction, seed, scale: as :func:`from_arrays`.

    Returns:
        A :class:`Dataset` named by the file's path.

    Raises:
        DataError: an unreadable, truncated or corrupt file, a FIFO, an
            array header claiming more than its member holds or memory has
            (checked before numpy allocates), missing keys (the keys found are
            named), or arrays :func:`from_arrays` refuses.

    Example:
        >>> np.savez("mine.npz", x=np.zeros((20, 4, 4, 1), "uint8"), y=np.arange(20) % 2)  # doctest: +SKIP
        >>> from_npz("mine.npz").describe()  # doctest: +SKIP
    """
    path = os.fsdecode(path)
    arrays = read_npz(path, DataError)
    found = {}
    for split, layouts in NPZ_KEYS.items():
        for kx, ky in layouts:
            x, y = named(arrays, kx), named(arrays, ky)  # an array, or {name: array} saved as x_train/<input name>
            if x is not None or y is not None:
                if x is None or y is None:
                    have, miss = (kx, ky) if x is not None else (ky, kx)
                    raise DataError(f"{path} has {have} but no {miss}: save both.")
                found[split] = (x, y)
                break
    if "train" not in found:
        raise DataError(f"{path} has no x_train/y_train (or x/y) arrays; it has "
                        f"{', '.join(sorted(arrays)) or 'nothing'}: save it with numpy.savez(path, x_train=..., "
                        "y_train=..., x_test=..., y_test=...).")
    return from_arrays(*found["train"], validation=found.get("validation"), test=found.get("test"),
                       validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed,
                       scale=scale, name=path, source="npz")


def _subdirs(path):
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _list_images(path, roots, class_names):
    """Every split's image files (checked: no link loop, no FIFO, each starts like an image), none empty."""
    files = {}
    for split, root in roots.items():
        files[split] = [f for c in class_names for f in image_files(os.path.join(root, c), path)]
        if not files[split]:
            raise DataError(f"{root} holds no image ({', '.join(IMAGE_EXTENSIONS)}) in its class subfolders "
                            f"{', '.join(class_names)}: give a folder with one subfolder of images per class.")
    check_images(path, [f for fs in files.values() for f in fs])
    return files


def _available_memory():
    return available_memory()


#: Bytes a pixel channel of an image folder takes while it is read: the uint8 array and its float32 copy.
FOLDER_BYTES_PER_VALUE = 5


def _gib(n):
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _check_fits(path, n, size, channels):
    """One clear error before reading, rather than the process killed for memory halfway through."""
    need = n * size[0] * size[1] * channels * FOLDER_BYTES_PER_VALUE
    free = _available_memory()
    if free is not None and need > free:
        raise DataError(
            f"{path}: {n} images at {size[0]}x{size[1]}x{channels} need at least {_gib(need)} in memory "
            f"(tfcompress holds the data as float32), more than the {_gib(free)} available: use fewer "
            "images (a subset folder) or a smaller model input, or a machine with more memory.")


def _read_folder(path, class_names, image_size, color_mode, files=(), top=None):
    from tfcompress._keras import keras, tf

    with open(os.devnull, "w") as devnull, _redirect(devnull):  # tf_keras prints "Found N files"
        ds = keras.utils.image_dataset_from_directory(
            path, labels="inferred", label_mode="int", class_names=list(class_names), color_mode=color_mode,
            batch_size=64, image_size=tuple(image_size), shuffle=False)
    xs, ys = [], []
    try:
        for x, y in ds:  # resized pixels are floats in [0, 255]: back to uint8, so scale="auto" knows them
            xs.append(tf.cast(tf.round(tf.clip_by_value(x, 0, 255)), tf.uint8).numpy())
            ys.append(y.numpy().astype("int64"))
    except tf.errors.OpError as e:  # a file that starts like an image but does not decode
        bad = undecodable(files)
        if bad:
            raise bad_images_error(top or path, bad, len(files), "cannot be decoded as an image") from None
        raise DataError(f"{top or path}: cannot read the images ({first_line(e)}).") from None
    if not xs:
        raise DataError(f"{path} holds no image in its class subfolders {', '.join(class_names)}.")
    return np.concatenate(xs), np.concatenate(ys)


def _redirect(stream):
    import contextlib

    return contextlib.redirect_stdout(stream)


def from_directory(path, input_shape=None, validation_fraction=0.1, test_fraction=0.2, seed=0, scale="auto"):
    """A :class:`Dataset` from an image folder, through tf_keras's ``image_dataset_from_directory``.

    Layouts: ``path/<class>/*.png`` (splits carved, seeded), or
    ``path/train/<class>/...`` with optional ``path/val/`` (or ``valid``,
    ``validation``) and ``path/test/`` holding the same class folders. Class
    ids follow the sorted class folder names. Images are resized to the
    model's input (``input_shape``: height, width, and 1, 3 or 4 channels for
    grayscale, RGB, RGBA), else read at the first image's size and channels;
    pixels are read as uint8, so ``scale="auto"`` divides them by 255.

    Args:
        path: the folder.
        input_shape: the model's input shape ``(h, w, c)``. Defaults to `None`.
        validation_fraction, test_fraction, seed, scale: as :func:`from_arrays`.

    Returns:
        A :class:`Dataset` whose ``class_names`` are the subfolders.

    Raises:
        DataError: no class subfolders or images, a symbolic-link loop, files
            that are not images (the first named, with how many are bad), an
            input shape that is not an image, class folders that differ between splits, or more images
            than memory holds (checked before reading: the data is held as float32).

    Example:
        >>> data = from_directory("flowers/", input_shape=(32, 32, 3))  # doctest: +SKIP
        >>> data.class_names  # doctest: +SKIP
        ('daisy', 'rose')
    """
    from tfcompress._keras import tf

    path = os.fsdecode(path)
    subdirs = _subdirs(path)
    alias = {name: split for split, names in _SPLIT_DIRS.items() for name in names}
    split_layout = "train" in subdirs and all(d in alias for d in subdirs)
    roots = {alias[d]: os.path.join(path, d) for d in subdirs} if split_layout else {"train": path}
    class_names = _subdirs(roots["train"])
    if not class_names:
        raise DataError(f"{roots['train']} has no class subfolders: put each class's images in a subfolder "
                        "named after it (cats/, dogs/).")
    for split, root in roots.items():
        if split != "train" and _subdirs(root) != class_names:
            raise DataError(f"{root} has class folders {_subdirs(root)}, train has {class_names}: use the same.")
    if input_shape is not None:
        shape = tuple(input_shape)
        if len(shape) != 3 or shape[2] not in (1, 3, 4) or None in shape[:2]:
            raise DataError(f"the model takes inputs of shape {shape}, not images (height, width, 1/3/4 "
                            "channels): an image folder cannot feed it; pass a .npz file instead.")
        size, channels = shape[:2], shape[2]
    files = _list_images(path, roots, class_names)
    if input_shape is None:
        first = files["train"][0]
        try:
            img = tf.io.decode_image(tf.io.read_file(first), expand_animations=False)
        except (tf.errors.OpError, ValueError):
            raise bad_images_error(path, [first], len(files["train"]), "cannot be decoded as an image") from None
        size, channels = tuple(img.shape[:2]), int(img.shape[2])
        channels = channels if channels in (1, 3, 4) else 3
    mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[channels]
    _check_fits(path, sum(map(len, files.values())), size, channels)
    read = {split: _read_folder(root, class_names, size, mode, files[split], path) for split, root in roots.items()}
    return from_arrays(*read["train"], validation=read.get("validation"), test=read.get("test"),
                       validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed,
                       scale=scale, name=path, class_names=class_names, source="folder")


def _materialize(ds, what, input_shape):
    from tfcompress._data import check_spec

    spec = check_spec(ds, what)
    x_rank = spec[0].shape.rank
    # .batch() leaves the leading dimension unknown; the model's input rank settles the rest.
    batched = (len(input_shape) + 1 == x_rank) if input_shape is not None else spec[0].shape[0] is None
    if not batched:
        ds = ds.batch(256)
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    if not xs:
        raise DataError(f"{what} is empty: the dataset yielded no examples.")
    return np.concatenate(xs), np.concatenate(ys)


def from_tf_dataset(train, validation=None, test=None, input_shape=None, validation_fraction=0.1,
                    test_fraction=0.2, seed=0, scale="auto", name="tf.data"):
    """A :class:`Dataset` from finite ``tf.data.Dataset`` objects of ``(x, y)``, read once into memory.

    Args:
        train: the training dataset, batched or not.
        validation: the validation dataset. Defaults to `None` (carved).
        test: the test dataset. Defaults to `None` (carved).
        input_shape: the model's input shape, which tells a batched dataset
            from an unbatched one where the element spec cannot (a known
            leading dimension). Defaults to `None`.
        validation_fraction, test_fraction, seed, scale: as :func:`from_arrays`.
        name: what reports call the data. Defaults to `"tf.data"`.

    Returns:
        A :class:`Dataset`.

    Raises:
        DataError: a dataset that repeats forever, does not yield ``(x, y)``
            pairs of numbers, or is empty.

    Example:
        >>> import tensorflow as tf  # doctest: +SKIP
        >>> ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)  # doctest: +SKIP
        >>> from_tf_dataset(ds).describe()  # doctest: +SKIP
    """
    parts = {k: _materialize(v, f"{k} data", input_shape)
             for k, v in (("train", train), ("validation", validation), ("test", test)) if v is not None}
    return from_arrays(*parts["train"], validation=parts.get("validation"), test=parts.get("test"),
                       validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed,
                       scale=scale, name=name, source="tf.data")
