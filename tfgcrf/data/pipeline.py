"""tf.data pipelines from real photos to `(l, ab)` batches in model units.

Sources (`make_dataset(source=...)`):
- a folder tree of JPEG/PNG/WebP/BMP files, split by `tfgcrf.data.folders.split_of`;
- `tfds:NAME[/CONFIG]`: any TFDS image dataset (see `tfgcrf.data.tfds_source`);
- `offline`: the offline photo collection folder (`tfgcrf.data.folders.offline_dir`).

Stages: decode -> downscale (shorter side at most `CACHE_SIDE_FACTOR * image_size`) -> sampling
weight -> cache -> training: shuffle, several random resized crops per photo (area and aspect
jitter, never below `image_size` when the photo allows), horizontal flip, resize to a square of
`image_size`; evaluation: one centered square crop of the whole shorter side, resized -> batch ->
Lab model units -> prefetch. Resizing is antialiased. No color jitter: hue or saturation changes
would teach wrong colors. All randomness derives from `seed`.

Balance (training only): a photo's expected number of crops per epoch is `crops_per_image` times
its sampling weight, the product of
- a source factor `n ** -source_balance` (n: photos of its source, the top-level folder of the
  split), normalized to a mean of 1 over the split's photos: 0 weighs every photo alike, 0.5 gives
  a source of n photos sqrt(n) times the crops of a single photo, 1 every source alike;
- `white_weight` when at least `WHITE_BORDER_FRACTION` of its border ring (`BORDER_WIDTH` of the
  shorter side) is near white (every channel >= `NEAR_WHITE`): cut-outs composited on white and
  studio shots, else 1.
The count is rounded stochastically (floor, plus one with the probability of the remainder), so the
crop frequencies over epochs are proportional to the weights; a photo too small for distinct crops
gives at most `per_side ** 2 * max(1, weight)` of them (per_side = shorter side // image_size).
"""

import logging
import math
import numbers
import os
import random

import tensorflow as tf

from tfgcrf import color
from tfgcrf.data import folders, tfds_source
from tfgcrf.data.balance import Augmentation, source_factors
from tfgcrf.errors import InputError, UserError
from tfgcrf.imageio import MAX_PIXELS, read_image

logger = logging.getLogger("tfgcrf.data")

OFFLINE_SOURCE = "offline"
# Cached photos keep a shorter side of at most this many model sizes: room for varied crops while
# bounding the cache (about 0.4 MB per photo at the default 64 px).
CACHE_SIDE_FACTOR = 4
IMAGE_SHUFFLE_BUFFER = 256
CROP_SHUFFLE_BUFFER = 1024
# Border test of the white-background down-weighting (see the module docstring).
BORDER_WIDTH = 0.05
NEAR_WHITE = 240
WHITE_BORDER_FRACTION = 0.5


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
    crop_scale=(0.25, 1.0),
    crop_aspect=(1.0, 1.0),
    flip=True,
    source_balance=0.0,
    white_weight=1.0,
):
    """Builds the `(l, ab)` batches of a photo source.

    Args:
      source: an image folder path, `tfds:NAME[/CONFIG]`, or `offline`.
      split: 'train', 'validation' (or 'val') or 'test', optionally sliced as in TFDS
        ('train[:90%]', 'test[:50]'; see `tfgcrf.data.folders.parse_split`).
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
      crop_scale: (min, max) area of a training crop as a fraction of the photo's largest square
        (shorter side squared), drawn uniformly; (0.25, 1) gives sides from half the shorter side
        to all of it.
      crop_aspect: (min, max) width / height of a training crop before it is resized to a square,
        drawn log-uniformly; (1, 1) takes square crops only.
      flip: mirror half of the training crops left-right.
      source_balance: exponent b of the source factor `n ** -b` of the sampling weight (0 to 1).
      white_weight: weight factor (0, 1] of photos with a mostly white border.

    Returns:
      `tf.data.Dataset` of `(l [B, S, S, 1], ab [B, S, S, 2])` float32 in model units.

    Raises:
      UserError: unknown source or split, bad argument values, empty split, TFDS failures.
    """
    _check_positive(image_size=image_size, batch_size=batch_size, crops_per_image=crops_per_image)
    augment = Augmentation.checked(crop_scale, crop_aspect, flip, source_balance, white_weight)
    folders.parse_split(split)  # validates the split string (sliced splits are fine)
    ratios = folders.check_split_ratios(split_ratios)
    source = os.fspath(source)
    shuffle_seed = seed if training else None
    folder = source_folder(source, data_dir)
    if folder is None:
        name = source[len(tfds_source.TFDS_PREFIX) :]
        images = tfds_source.load_images(
            name, split, ratios, data_dir=data_dir, manual_dir=manual_dir, download=download,
            shuffle_seed=shuffle_seed,
        ).map(lambda image: (image, tf.constant(1.0)))
    else:
        images = _folder_images(
            folder, split, ratios, shuffle_seed=shuffle_seed, max_pixels=max_pixels,
            source_balance=augment.source_balance if training else 0.0,
        )
    return _batches(images, image_size, batch_size, training, crops_per_image, cache, seed, augment)


def source_folder(source, data_dir=None):
    """The image folder a source reads (`offline` resolved), or None for a `tfds:` source."""
    source = os.fspath(source)
    if source.startswith(tfds_source.TFDS_PREFIX):
        return None
    return folders.offline_dir(data_dir) if source == OFFLINE_SOURCE else source


def evaluation_crop(image, image_size):
    """The evaluation view of one decoded photo, exactly as `make_dataset(training=False)` makes it.

    Args:
      image: uint8 `[H, W, 3]` photo.
      image_size: side of the square output.

    Returns:
      float32 `[image_size, image_size, 3]` RGB in [0, 1]: the photo downscaled as for the
      cache, then its centered square of the whole shorter side, resized with antialiasing.
    """
    return _center_crop(_downscale(image, CACHE_SIDE_FACTOR * image_size), image_size)


def _check_positive(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")


def split_paths(folder, split, ratios=folders.DEFAULT_SPLIT_RATIOS):
    """The image files of one split of a data folder (`folders.split_images`), for training and
    evaluation alike.

    Raises:
      UserError: the folder is missing (for the offline collection's folder, the message says
        how to build it) or its split holds no image.
    """
    if not os.path.isdir(folder):
        hint = ""
        if os.path.abspath(folder) == os.path.abspath(folders.offline_dir()):
            hint = (" (the offline collection: build it with `make data` or `tfgcrf data "
                    f"build-offline DIR` and set {folders.OFFLINE_DIR_ENV}=DIR)")
        raise UserError(f"data source {folder!r} is not a folder, 'offline' or tfds:NAME{hint}")
    paths = folders.split_images(folder, split, ratios)
    if not paths:
        raise UserError(f"no images in the {split!r} split of {folder} (JPEG/PNG/WebP/BMP files)")
    return paths


def _folder_images(folder, split, ratios, shuffle_seed, max_pixels, source_balance=0.0):
    """(decoded uint8 photo, source factor) of one split of a folder; unreadable files are
    skipped and counted."""
    paths = split_paths(folder, split, ratios)
    factors = source_factors([folders.relative_key(path, folder) for path in paths], source_balance)
    pairs = list(zip(paths, factors))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(pairs)
    reported = []

    def decode_all():
        skipped = []
        for path, factor in pairs:
            try:
                yield read_image(path, max_pixels=max_pixels), factor
            except InputError as err:
                skipped.append(str(err))
        if skipped and not reported:
            reported.append(len(skipped))
            logger.warning(
                "skipped %d of the %d image files of the %r split of %s that could not be read "
                "(first: %s)",
                len(skipped), len(paths), split, folder, skipped[0],
            )

    signature = (tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([], tf.float32))
    return tf.data.Dataset.from_generator(decode_all, output_signature=signature)


def prepare_photo(image, source_factor, image_size, augment):
    """What the pipeline caches for a decoded uint8 photo: `(photo downscaled to a shorter side of
    at most CACHE_SIDE_FACTOR * image_size, sampling weight)` = source factor x (`white_weight`
    if `white_border` else 1), float32 scalar."""
    image = _downscale(image, CACHE_SIDE_FACTOR * image_size)
    white = tf.where(white_border(image), augment.white_weight, 1.0)
    return image, tf.cast(source_factor, tf.float32) * white


def _batches(images, image_size, batch_size, training, crops_per_image, cache, seed, augment):
    images = images.map(lambda image, factor: prepare_photo(image, factor, image_size, augment),
                        num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        images = images.cache("" if cache is True else os.fspath(cache))
    if training:
        images = images.shuffle(IMAGE_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        count_seeds = tf.data.Dataset.random(seed=seed + 2, rerandomize_each_iteration=True).batch(2)
        repeated = tf.data.Dataset.zip(images, count_seeds).flat_map(
            lambda pair, count_seed: tf.data.Dataset.from_tensors(pair[0]).repeat(
                crop_count(pair[0], pair[1], count_seed, image_size, crops_per_image))
        )
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        crops = tf.data.Dataset.zip(repeated, seeds).map(
            lambda image, crop_seed: _resize_to_model(random_crop(image, crop_seed, image_size, augment), image_size),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        crops = crops.shuffle(CROP_SHUFFLE_BUFFER, seed=seed + 1, reshuffle_each_iteration=True)
    else:
        crops = images.map(lambda image, _: _center_crop(image, image_size), num_parallel_calls=tf.data.AUTOTUNE)
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


def white_border(image):
    """True when at least `WHITE_BORDER_FRACTION` of the border ring of a uint8 photo [H, W, 3] is
    near white (every channel >= `NEAR_WHITE`); the ring is `BORDER_WIDTH` of the shorter side
    wide (at least one pixel)."""
    shape = tf.shape(image)
    width = tf.maximum(1, tf.cast(tf.round(BORDER_WIDTH * tf.cast(_shorter_side(image), tf.float32)), tf.int32))
    rows = tf.range(shape[0])[:, None]
    cols = tf.range(shape[1])[None, :]
    ring = (rows < width) | (rows >= shape[0] - width) | (cols < width) | (cols >= shape[1] - width)
    white = tf.reduce_all(image >= NEAR_WHITE, axis=-1)
    fraction = tf.reduce_sum(tf.cast(white & ring, tf.float32)) / tf.reduce_sum(tf.cast(ring, tf.float32))
    return fraction >= WHITE_BORDER_FRACTION


def crop_count(image, weight, seed, image_size, crops_per_image):
    """Crops of one photo this epoch: `crops_per_image * weight` rounded stochastically with the
    stateless `seed`, at most `per_side ** 2 * max(1, weight)` (int64 scalar)."""
    expected = tf.cast(crops_per_image, tf.float32) * weight
    whole = tf.floor(expected)
    extra = tf.cast(tf.random.stateless_uniform([], seed) < expected - whole, tf.float32)
    per_side = tf.cast(tf.maximum(1, _shorter_side(image) // image_size), tf.float32)
    cap = tf.math.ceil(per_side * per_side * tf.maximum(1.0, weight))
    return tf.cast(tf.minimum(whole + extra, cap), tf.int64)


def _resize_to_model(square, image_size):
    """uint8 square crop -> float RGB [image_size, image_size, 3] in [0, 1]: the model grid, by
    the one preprocessing object (`tfgcrf.preprocessing.GridConverter`) the API and export use."""
    from tfgcrf.preprocessing import GridConverter

    return GridConverter(image_size).squeeze(square)


def crop_box(shape, seed, image_size, augment):
    """A random crop box (y, x, height, width) of a photo of `shape` [H, W, ...].

    Area: uniform in `augment.crop_scale` times the shorter side squared; width / height:
    log-uniform in `augment.crop_aspect`. Each side is clipped to the photo and kept at least
    `image_size` (or the photo's side when smaller); the position is uniform. int32 scalars.
    """
    area_seed, aspect_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    height, width = shape[0], shape[1]
    shorter = tf.cast(tf.minimum(height, width), tf.float32)
    area = tf.random.stateless_uniform([], area_seed, *augment.crop_scale) * shorter * shorter
    log_aspect = tf.random.stateless_uniform(
        [], aspect_seed, math.log(augment.crop_aspect[0]), math.log(augment.crop_aspect[1]) + 1e-12
    )
    aspect = tf.exp(log_aspect)

    def side(value, limit):
        limit = tf.cast(limit, tf.float32)
        value = tf.clip_by_value(tf.round(value), tf.minimum(float(image_size), limit), limit)
        return tf.cast(value, tf.int32)

    crop_height = side(tf.sqrt(area / aspect), height)
    crop_width = side(tf.sqrt(area * aspect), width)
    y = tf.random.stateless_uniform([], y_seed, 0, height - crop_height + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], x_seed, 0, width - crop_width + 1, dtype=tf.int32)
    return y, x, crop_height, crop_width


def random_crop(image, seed, image_size, augment):
    """A random crop of a uint8 photo (`crop_box`), mirrored left-right with probability 1/2 when
    `augment.flip`; uint8 [h, w, 3], not yet resized."""
    box_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    y, x, height, width = crop_box(tf.shape(image), box_seed, image_size, augment)
    crop = image[y : y + height, x : x + width]
    if augment.flip:
        crop = tf.cond(
            tf.random.stateless_uniform([], flip_seed) < 0.5, lambda: tf.reverse(crop, axis=[1]), lambda: crop
        )
    return crop


def _center_crop(image, image_size):
    shape = tf.shape(image)
    side = _shorter_side(image)
    y = (shape[0] - side) // 2
    x = (shape[1] - side) // 2
    return _resize_to_model(image[y : y + side, x : x + side], image_size)
