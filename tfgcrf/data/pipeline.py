"""tf.data pipelines from real photos to `(l, ab)` batches in model units.

Sources (`make_dataset(source=...)`):
- a folder tree of JPEG/PNG/WebP/BMP files, split by `tfgcrf.data.folders.split_of`;
- `tfds:NAME[/CONFIG]`: any TFDS image dataset (see `tfgcrf.data.tfds_source`);
- `offline`: the offline photo collection folder (`tfgcrf.data.folders.offline_dir`).

Stages: decode -> downscale (shorter side at most `CACHE_SIDE_FACTOR * image_size`) -> cache ->
training: shuffle, several random square crops per photo (side between half the shorter side and
all of it, never below `image_size` when the photo allows), horizontal flip, resize to
`image_size`; evaluation: one centered square crop of the whole shorter side, resized -> batch ->
Lab model units -> prefetch. Resizing is antialiased. All randomness derives from `seed`.
"""

import logging
import numbers
import os
import random

import tensorflow as tf

from tfgcrf import color
from tfgcrf.data import folders, tfds_source
from tfgcrf.errors import InputError, UserError
from tfgcrf.imageio import MAX_PIXELS, read_image

logger = logging.getLogger("tfgcrf.data")

OFFLINE_SOURCE = "offline"
# Cached photos keep a shorter side of at most this many model sizes: room for varied crops while
# bounding the cache (about 0.4 MB per photo at the default 64 px).
CACHE_SIDE_FACTOR = 4
IMAGE_SHUFFLE_BUFFER = 256
CROP_SHUFFLE_BUFFER = 1024


def make_dataset(
    source,
    split="train",
    image_size=64,
    batch_size=16,
    training=True,
    crops_per_image=4,
    cache=True,
    seed=0,
    data_dir=None,
    manual_dir=None,
    split_ratios=folders.DEFAULT_SPLIT_RATIOS,
    download=True,
    max_pixels=MAX_PIXELS,
):
    """Builds the `(l, ab)` batches of a photo source.

    Args:
      source: an image folder path, `tfds:NAME[/CONFIG]`, or `offline`.
      split: 'train', 'validation' (or 'val') or 'test'.
      image_size: side of the square model images.
      batch_size: images per batch. Training drops the last partial batch (static batch shape).
      training: random crops, flips and shuffling if true; one deterministic center crop per
        photo, in source order, otherwise.
      crops_per_image: training crops taken from each photo per epoch. Photos whose shorter side is
        below `k * image_size` give at most `k * k` crops (a 64 px photo gives one).
      cache: True caches the decoded, downscaled photos in memory; a string caches them in files
        with that prefix; False decodes every epoch.
      seed: seed of the file order, shuffles, crops and flips.
      data_dir: TFDS data directory for `tfds:` sources; the collection folder for `offline`.
      manual_dir: TFDS manual download directory (e.g. holding `lfw.tgz`).
      split_ratios: (train, validation, test) ratios for folders and for carving TFDS splits.
      download: allow TFDS to download and prepare a dataset missing from `data_dir`.
      max_pixels: larger files in folders are skipped (see `tfgcrf.imageio.read_image`).

    Returns:
      `tf.data.Dataset` of `(l [B, S, S, 1], ab [B, S, S, 2])` float32 in model units.

    Raises:
      UserError: unknown source or split, bad argument values, empty split, TFDS failures.
    """
    _check_positive(image_size=image_size, batch_size=batch_size, crops_per_image=crops_per_image)
    split = folders.canonical_split(split)
    ratios = folders.check_split_ratios(split_ratios)
    source = os.fspath(source)
    shuffle_seed = seed if training else None
    if source.startswith(tfds_source.TFDS_PREFIX):
        name = source[len(tfds_source.TFDS_PREFIX) :]
        images = tfds_source.load_images(
            name, split, ratios, data_dir=data_dir, manual_dir=manual_dir, download=download,
            shuffle_seed=shuffle_seed,
        )
    else:
        folder = folders.offline_dir(data_dir) if source == OFFLINE_SOURCE else source
        images = _folder_images(folder, split, ratios, shuffle_seed=shuffle_seed, max_pixels=max_pixels)
    return _batches(images, image_size, batch_size, training, crops_per_image, cache, seed)


def _check_positive(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")


def _folder_images(folder, split, ratios, shuffle_seed, max_pixels):
    """Decoded uint8 photos of one split of a folder; unreadable files are skipped and counted."""
    if not os.path.isdir(folder):
        raise UserError(f"data source {folder!r} is not a folder, 'offline' or tfds:NAME")
    paths = folders.split_images(folder, split, ratios)
    if not paths:
        raise UserError(f"no images in the {split!r} split of {folder} (JPEG/PNG/WebP/BMP files)")
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(paths)
    reported = []

    def decode_all():
        skipped = []
        for path in paths:
            try:
                yield read_image(path, max_pixels=max_pixels)
            except InputError as err:
                skipped.append(str(err))
        if skipped and not reported:
            reported.append(len(skipped))
            logger.warning(
                "skipped %d of %d image files of %s that could not be read (first: %s)",
                len(skipped), len(paths), folder, skipped[0],
            )

    signature = tf.TensorSpec([None, None, 3], tf.uint8)
    return tf.data.Dataset.from_generator(decode_all, output_signature=signature)


def _batches(images, image_size, batch_size, training, crops_per_image, cache, seed):
    images = images.map(lambda image: _downscale(image, CACHE_SIDE_FACTOR * image_size),
                        num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        images = images.cache("" if cache is True else os.fspath(cache))
    if training:
        images = images.shuffle(IMAGE_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        repeated = images.flat_map(
            lambda image: tf.data.Dataset.from_tensors(image).repeat(_crop_count(image, image_size, crops_per_image))
        )
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        crops = tf.data.Dataset.zip(repeated, seeds).map(
            lambda image, crop_seed: _random_crop(image, crop_seed, image_size), num_parallel_calls=tf.data.AUTOTUNE
        )
        crops = crops.shuffle(CROP_SHUFFLE_BUFFER, seed=seed + 1, reshuffle_each_iteration=True)
    else:
        crops = images.map(lambda image: _center_crop(image, image_size), num_parallel_calls=tf.data.AUTOTUNE)
    batches = crops.batch(batch_size, drop_remainder=training)
    return batches.map(color.rgb_to_model, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _shorter_side(image):
    shape = tf.shape(image)
    return tf.minimum(shape[0], shape[1])


def _downscale(image, max_side):
    """Shrinks a uint8 photo so that its shorter side is at most `max_side` (never enlarges)."""
    shape = tf.shape(image)
    scale = tf.minimum(1.0, max_side / tf.cast(_shorter_side(image), tf.float32))
    size = tf.maximum(1, tf.cast(tf.round(tf.cast(shape[:2], tf.float32) * scale), tf.int32))
    resized = tf.image.resize(image, size, antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def _crop_count(image, image_size, crops_per_image):
    per_side = tf.maximum(1, _shorter_side(image) // image_size)
    return tf.cast(tf.minimum(crops_per_image, per_side * per_side), tf.int64)


def _resize_to_model(square, image_size):
    """uint8 square crop -> float RGB [image_size, image_size, 3] in [0, 1]."""
    resized = tf.image.resize(square, [image_size, image_size], antialias=True) / 255.0
    return tf.clip_by_value(resized, 0.0, 1.0)


def _random_crop(image, seed, image_size):
    side_seed, y_seed, x_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    shape = tf.shape(image)
    shorter = _shorter_side(image)
    smallest = tf.minimum(shorter, tf.maximum(image_size, shorter // 2))
    side = tf.random.stateless_uniform([], side_seed, smallest, shorter + 1, dtype=tf.int32)
    y = tf.random.stateless_uniform([], y_seed, 0, shape[0] - side + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], x_seed, 0, shape[1] - side + 1, dtype=tf.int32)
    square = image[y : y + side, x : x + side]
    square = tf.cond(
        tf.random.stateless_uniform([], flip_seed) < 0.5, lambda: tf.reverse(square, axis=[1]), lambda: square
    )
    return _resize_to_model(square, image_size)


def _center_crop(image, image_size):
    shape = tf.shape(image)
    side = _shorter_side(image)
    y = (shape[0] - side) // 2
    x = (shape[1] - side) // 2
    return _resize_to_model(image[y : y + side, x : x + side], image_size)
