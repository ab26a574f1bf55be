"""Images of any TensorFlow Datasets (TFDS) image dataset, `tfds:NAME[/CONFIG][:VERSION]`.

The dataset is read from `data_dir` (TFDS's default, `~/tensorflow_datasets`, when None). If it is
not prepared there and `download` is true, it is downloaded and prepared; files that TFDS would
download can be put beforehand in `manual_dir` under their archive name (e.g. LFW's `lfw.tgz`),
and TFDS then uses them after checking their registered checksum, without network access.

Splits: the dataset's own `validation` and `test` splits are used when it has them; a missing one is
carved out of the end of `train` (contiguous example ranges, by the split ratios), so `tfds:lfw`,
which only has `train`, gives an 80/10/10 split by default.
"""

import tensorflow as tf

from tfgcrf.data import folders
from tfgcrf.errors import UserError

TFDS_PREFIX = "tfds:"
_IMAGE_KEY = "image"


def _tfds():
    import tensorflow_datasets as tfds  # heavy import, only for TFDS sources

    return tfds


def _first_line(err):
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def load_builder(name, data_dir=None, manual_dir=None, download=True):
    """The prepared TFDS builder of `name` (prepares it when allowed)."""
    tfds = _tfds()
    if name.split("/")[0].split(":")[0] == "tfgcrf_offline":
        import tfgcrf.data.tfds_offline  # noqa: F401  (registers the builder)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UserError(f"unknown TFDS dataset {name!r} (see `tfds build --help` for the catalog)") from None
    if builder.is_prepared():
        return builder
    where = f"in {data_dir}" if data_dir else "in the default TFDS data_dir"
    if not download:
        raise UserError(f"TFDS dataset {name!r} is not prepared {where}; prepare it or allow download")
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except Exception as err:  # TFDS raises many types (network, checksum, manual-dir errors)
        raise UserError(
            f"could not prepare TFDS dataset {name!r} {where}: {_first_line(err)} "
            f"(without network, put the downloaded archive, e.g. lfw.tgz, in manual_dir)"
        ) from None
    return builder


def image_feature_key(builder):
    """The name of the dataset's image feature ('image' when there are several)."""
    tfds = _tfds()
    features = builder.info.features
    keys = [key for key, feature in features.items() if isinstance(feature, tfds.features.Image)]
    if not keys:
        raise UserError(f"TFDS dataset {builder.info.full_name} has no image feature")
    return _IMAGE_KEY if _IMAGE_KEY in keys else keys[0]


def split_spec(builder, split, ratios):
    """TFDS split string for our split string, carving missing splits out of 'train'.

    `split` is `train`, `validation` (`val`) or `test`, optionally sliced (`train[:90%]`,
    `test[:50]`); a slice of a carved split applies within the carved range.
    """
    name, slicing = folders.parse_split(split)
    if not slicing:
        return _carved_spec(builder, name, ratios)
    base = _carved_spec(builder, name, ratios)
    if base == name:
        folders.slice_split(range(builder.info.splits[name].num_examples), name, slicing)  # checks
        return f"{name}{slicing}"
    start, end = (int(x) for x in base[len("train[") : -1].split(":"))
    chosen = folders.slice_split(range(start, end), name, slicing)
    first, last = (chosen[0], chosen[-1] + 1) if chosen else (start, start)
    return f"train[{first}:{last}]"


def _carved_spec(builder, split, ratios):
    available = builder.info.splits
    carved = [name for name in ("validation", "test") if name not in available]
    if split in available and not (split == "train" and carved):
        return split
    if "train" not in available:
        raise UserError(f"TFDS dataset {builder.info.full_name} has no {split!r} or 'train' split")
    names = ["train"] + carved
    weights = {"train": ratios[0], "validation": ratios[1], "test": ratios[2]}
    total = sum(weights[name] for name in names)
    count = available["train"].num_examples
    index = names.index(split)
    start = round(count * sum(weights[name] for name in names[:index]) / total)
    end = round(count * sum(weights[name] for name in names[: index + 1]) / total)
    return f"train[{start}:{end}]"


def load_images(name, split, ratios, data_dir=None, manual_dir=None, download=True, shuffle_seed=None):
    """A dataset of uint8 `[H, W, 3]` images from the TFDS dataset `name`.

    With `shuffle_seed`, the order of the dataset's files is shuffled with that seed.
    """
    tfds = _tfds()
    builder = load_builder(name, data_dir=data_dir, manual_dir=manual_dir, download=download)
    key = image_feature_key(builder)
    spec = split_spec(builder, split, ratios)
    examples = builder.as_dataset(
        split=spec,
        shuffle_files=shuffle_seed is not None,
        read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed),
    )
    return examples.map(lambda example: to_rgb_uint8(example[key]), num_parallel_calls=tf.data.AUTOTUNE)


def to_rgb_uint8(image):
    """A decoded TFDS image `[H, W, 1 | 3 | 4]` (uint8 or uint16) -> uint8 `[H, W, 3]`.

    Gray is repeated to RGB, alpha is composited on white, 16-bit values are scaled to 8 bits:
    the same conventions as `tfgcrf.imageio.read_image`.
    """
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.uint16:
        image = tf.cast(tf.round(tf.cast(image, tf.float32) / 257.0), tf.uint8)
    elif image.dtype != tf.uint8:
        raise UserError(f"unsupported TFDS image dtype {image.dtype.name} (expected uint8 or uint16)")
    channels = image.shape[-1]
    if channels == 1:
        return tf.tile(image, [1, 1, 3])
    if channels == 4:
        rgb = tf.cast(image[..., :3], tf.float32)
        alpha = tf.cast(image[..., 3:], tf.float32) / 255.0
        return tf.cast(tf.round(rgb * alpha + 255.0 * (1.0 - alpha)), tf.uint8)
    if channels == 3:
        return image
    raise UserError(f"unsupported TFDS image with {channels} channels")
