"""`tfgcrf.Colorizer`: colorize and edit real photos at their own resolution (the user API).

A task object in the keras-hub style: it wraps a trained `GCRFColorizer` (which works on its small
square grid) with everything a photo needs around it: decoding, the lightness/grid split,
edge-aware chroma upsampling and recombination with the photo's own lightness (`tfgcrf.fullres`).

    colorizer = tfgcrf.Colorizer.from_preset("default")
    samples = colorizer.colorize("photo.jpg", num_samples=8)           # uint8 [8, H, W, 3]
    edited = colorizer.edit("photo.jpg", [(120, 40)], [(255, 140, 0)])  # uint8 [H, W, 3]
"""

import hashlib
import itertools
import weakref

import numpy as np
import tensorflow as tf

from tfgcrf import color, fullres, hints, imageio
from tfgcrf.edit_session import EMPTY_EDIT, MAX_POINTS, EditSession, has_hints
from tfgcrf.errors import InputError, UserError
from tfgcrf.models.gcrf_colorizer import SAMPLE_MODES, GCRFColorizer
from tfgcrf.models.points import points_to_grid

# Full-resolution pixels (samples x H x W) upsampled and composed at once: bounds the memory of
# big photos (a chunk of 8M pixels needs roughly 1 GB of float temporaries).
_CHUNK_PIXELS = 8_000_000
# Outputs (samples x H x W) from which the color conversion is compiled with XLA.
_JIT_PIXELS = 2_000_000
# Chroma (model units) of user colors `[K, 3]` uint8, traced once: one eager conversion costs tens
# of ms of op dispatch, more than an edit session's grid update.
_chroma_of = tf.function(lambda rgb: color.rgb_to_model(rgb)[1], autograph=False,
                         input_signature=[tf.TensorSpec([None, 3], tf.uint8)])
# Colorizations per photo unless asked otherwise (API and CLI).
DEFAULT_SAMPLES = 8


def _as_rgb(image):
    """An image source -> uint8 `[H, W, 3]` numpy RGB.

    Sources: a path, encoded image bytes (`bytes`, `bytearray`, `memoryview`), a binary file
    object, a PIL image or a uint8 numpy array (gray or RGB).
    """
    if isinstance(image, (str, bytes, bytearray, memoryview)) or hasattr(image, "__fspath__"):
        return imageio.read_image(image)
    if callable(getattr(image, "read", None)):  # a file object
        return imageio.read_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image.Image
        # The decode rule (orientation, alpha on white, 16-bit, palettes) for PIL input too.
        return imageio.pil_to_rgb(image)
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3))
    ):
        raise InputError(
            "expected an image path, encoded image bytes, a binary file object, a PIL image or a "
            "uint8 array of shape [H, W], [H, W, 1] or [H, W, 3]; got a "
            f"{array.dtype} array of shape {array.shape}"
        )
    _check_pixels(array.shape[0], array.shape[1])
    if array.ndim == 2:
        array = array[..., None]
    return np.ascontiguousarray(np.broadcast_to(array, array.shape[:2] + (3,)))


def _check_pixels(height, width):
    if height == 0 or width == 0:
        raise InputError(f"image has no pixels ({width}x{height})")
    if height * width > imageio.MAX_PIXELS:
        raise InputError(
            f"image too large: {width}x{height} = {height * width / 1e6:.1f} megapixels, the "
            f"limit is {imageio.MAX_PIXELS / 1e6:g} megapixels"
        )


def check_edit(width, height, points, colors, links=None, from_sample=None):
    """Validates an edit's points, colors and links on a `width` x `height` photo, without a model
    (what `Colorizer.edit` checks before computing anything; `tfgcrf edit` checks it before
    loading the model). The index `from_sample` is checked against the model by `edit`.

    Returns:
      `(pixels float64 [K, 2], links float64 [J, 2, 2])`.

    Raises:
      InputError: as `Colorizer.edit`, but for `from_sample`'s index.
    """
    pixels = hints.check_points(points, width, height)
    links = hints.check_links([] if links is None else links, width, height)
    # A sample alone is a valid edit (the one rule: `edit_session.has_hints`); the sample's
    # index is checked with the sampling arguments by `edit`.
    if not has_hints(len(pixels), len(links), -1 if from_sample is None else 0):
        raise InputError(EMPTY_EDIT)
    for count, what in ((len(pixels), "points"), (len(links), "links")):
        if count > MAX_POINTS:
            raise InputError(f"an edit holds at most {MAX_POINTS} {what}, got {count}")
    hints.check_conflicts(pixels, Colorizer._point_chroma(colors, len(pixels)), width, height)
    return pixels, links


class Colorizer:
    """Diverse and user-controllable colorization of photos of any size with a `GCRFColorizer`.

    Outputs keep the input's resolution and its lightness: the model predicts chroma on its grid
    from the squeezed lightness, the chroma is upsampled guided by the full-resolution lightness
    and recombined with it.

    Args:
      model: a trained `tfgcrf.models.GCRFColorizer`; its `preprocessor` (a `GridConverter`)
        converts the photos to the model grid.

    Raises:
      UserError: the model has no preprocessor (`model.preprocessor` is None).
    """

    def __init__(self, model):
        self.model = model
        self.grid_size = model.model_config.image_size
        size = self.grid_size
        self.converter = model.preprocessor
        if self.converter is None:
            raise UserError(
                "the model has no preprocessor (GCRFColorizer.preprocessor is None), so photos "
                "cannot be converted to its grid: set model.preprocessor = "
                f"tfgcrf.preprocessing.GridConverter({size})"
            )
        self._prepare = tf.function(
            lambda rgb: self.converter(rgb),
            input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
        )
        finish_signature = [
            tf.TensorSpec([None, size, size, 2], tf.float32),
            tf.TensorSpec([None, None], tf.float32),
        ]
        # Grid chroma -> uint8 images, without and with the XLA-compiled color conversion.
        self._finish = {
            jit: tf.function(
                lambda ab, lightness, jit=jit: fullres.to_photo(ab, lightness, jit=jit),
                input_signature=finish_signature,
            )
            for jit in (False, True)
        }
        # One edit's grid chroma -> uint8 image (upsampling + the propagation's correction, point
        # refinement, links, recombination). `session` is the id of the edit session whose
        # propagation answers the links' second pass (`_session_correction`).
        self._finish_edit = {
            jit: tf.function(
                lambda ab, lightness, points, chroma, statistics, links, correction, session,
                jit=jit: hints.finish_edit(
                    ab, lightness, points, chroma, size, jit=jit, statistics=statistics,
                    links_px=links, correction=correction,
                    correct=lambda pixels, colors: self._session_correction(
                        session, ab, lightness, pixels, colors)),
                input_signature=[
                    tf.TensorSpec([1, size, size, 2], tf.float32),
                    tf.TensorSpec([None, None], tf.float32),
                    tf.TensorSpec([None, 2], tf.int32),
                    tf.TensorSpec([None, 2], tf.float32),
                    fullres.GuideStatistics(
                        tf.TensorSpec([1, None, None, 1], tf.float32),
                        *[tf.TensorSpec([1, size, size, 1], tf.float32)] * 3),
                    tf.TensorSpec([None, 2, 2], tf.int32),
                    tf.TensorSpec([None, None, 2], tf.float32),
                    tf.TensorSpec([], tf.int64),
                ],
                autograph=False,
            )
            for jit in (False, True)
        }
        self._sessions = weakref.WeakValueDictionary()  # id -> live `EditSession`
        self._session_ids = itertools.count()
        # Python arguments (num_samples, mode, use_gcrf) are part of the trace; the seed is a
        # tensor so that new seeds do not retrace. tf.linalg.lu has no XLA kernel: no
        # jit_compile. The methods branch on Python values only: autograph is not needed.
        self._sample = tf.function(model.sample, jit_compile=False, autograph=False)
        self._edit = tf.function(model.edit, jit_compile=False, autograph=False)
        self._similarity = tf.function(model.similarity, jit_compile=False, autograph=False)
        self._hint_prior = tf.function(model.hint_prior, jit_compile=False, autograph=False,
                                       reduce_retracing=True)
        # The last photo's grid input and similarity S: colorize, edit (with or without a
        # sample) and explain on the same photo compute S once.
        self._last = None

    @classmethod
    def from_preset(cls, name="default", dtype=None):
        """Loads a preset bundled with the package (no network), e.g. "default", a preset folder
        or a `.keras` file (`GCRFColorizer.from_preset`).

        Args:
          name: an installed preset's name, a folder holding `model.keras` or a `.keras` file.
          dtype: None (the global Keras policy, float32 by default), or a Keras dtype policy
            name or `keras.DTypePolicy` ("float32", "bfloat16", "mixed_bfloat16",
            "mixed_float16", ...) for the network's layers, as keras-hub's `from_preset(dtype=)`.
            The G-CRF solves (LU, Cholesky, CG), the similarity S and the color conversions stay
            float32, and the outputs are the same uint8 images: the solves factor a nearly
            singular A (smallest eigenvalues ~ the 1e-4 ridge) that half precision cannot
            resolve. The colors move a little (measured on the default preset: README, "`dtype`
            follows keras-hub..."); any speed-up depends on the hardware's half-precision kernels.

        Raises:
          UserError: one line: unknown preset, missing or broken files; `InputError` for a
            `dtype` that is not a floating-point Keras dtype policy.
        """
        return cls(GCRFColorizer.from_preset(name, dtype=dtype))

    @classmethod
    def load(cls, path, dtype=None):
        """Loads a trained model from a `.keras` file, a folder holding `model.keras` or a preset
        name (`GCRFColorizer.from_preset`: the same loader; `dtype` as for `from_preset`)."""
        return cls(GCRFColorizer.from_preset(path, dtype=dtype))

    # ------------------------------------------------------------------ on the model grid
    # The compiled functions every user path runs (API, CLI, evaluation). `l` is the model
    # input `[B, size, size, 1]` (L / 100); chroma is in model units (ab / 110).

    def similarity(self, l):
        """The learned similarity S `[B, P, P]` of grid images `l` (compiled)."""
        return self._similarity(l)

    def sample_grid(self, l, num_samples, seed=0, mode="top", use_gcrf=True, similarity=None):
        """`GCRFColorizer.sample` compiled: `(ab [B, N, size, size, 2], scores [B, N])`.

        `similarity` (S of `l`, from `similarity`) is reused instead of computed again.
        """
        seed = seed if tf.is_tensor(seed) else self._seed(seed)
        return self._sample(l, int(num_samples), seed, mode, use_gcrf, similarity=similarity)

    def edit_grid(self, l, mask, target_ab, base_ab=None, similarity=None):
        """`GCRFColorizer.edit` compiled: ab `[B, size, size, 2]` (`similarity` reused)."""
        return self._edit(l, mask, target_ab, base_ab, similarity=similarity)

    def hint_prior_grid(self, l, cells, chroma):
        """`GCRFColorizer.hint_prior` compiled, for points on grid pixels: `(alpha [P, 2], z [Z])`.

        Args:
            l: one grid image `[1, size, size, 1]`.
            cells: `[n]` flat grid pixel of each point (`points.grid_index`); chroma `[n, 2]`.
                Each grid pixel's hint is the mean of its points, weighted by their number.
        """
        pixels = self.grid_size ** 2
        cells = np.asarray(cells, np.int64).reshape(-1)
        chroma = np.asarray(chroma, np.float64).reshape(-1, 2)
        counts = np.bincount(cells, minlength=pixels).astype(np.float32)
        sums = np.stack([np.bincount(cells, chroma[:, k], minlength=pixels) for k in range(2)], -1)
        target = (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)
        alpha, z, _ = self._hint_prior(l, counts[None], target[None])
        return alpha[0], z[0]

    def edit_session_grid(self, l, base_ab=None, similarity=None, **options):
        """`GCRFColorizer.edit_session` of one grid image `l [1, size, size, 1]` (`similarity`
        reused): its prior system factored once, answering point and link sets by updates."""
        return self.model.edit_session(l, base_ab, similarity=similarity, **options)

    def _photo(self, rgb):
        """`(L_full, l_small, S)` of a uint8 RGB photo; the last photo's are kept and reused."""
        key = (rgb.shape, hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16).digest())
        if self._last is None or self._last[0] != key:
            self._last = None  # free the previous S before computing the next one
            lightness, l_small = self._prepare(rgb)
            self._last = (key, lightness, l_small, self.similarity(l_small))
        return self._last[1:]

    def default_samples(self, mode="top"):
        """N when the caller gives none: `DEFAULT_SAMPLES`, or the model's number of mixture
        components in "top" mode if it has fewer (a small trained model, e.g. 4 components)."""
        if mode == "top":
            return min(DEFAULT_SAMPLES, self.model.model_config.num_components)
        return DEFAULT_SAMPLES

    def sample_count(self, num_samples=None, mode="top", flags=None):
        """`num_samples` (None: `default_samples(mode)`), checked by `check_sampling`."""
        if num_samples is None:
            num_samples = self.default_samples(mode)
        self.check_sampling(num_samples, mode, flags)
        return num_samples

    def check_sampling(self, num_samples, mode="top", flags=None):
        """Raises `InputError` unless `num_samples` samples can be drawn in `mode`.

        `flags`: the command-line names of the count and the mode, e.g. `("--samples",
        "--mode")`, so that a command's error names its own options (None: the API's names).
        """
        if mode not in SAMPLE_MODES:
            raise InputError(f"mode must be one of {', '.join(SAMPLE_MODES)}; got {mode!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
            raise InputError(f"the number of samples must be an integer, got {num_samples!r}")
        if num_samples < 1:
            raise InputError(f"the number of samples must be at least 1, got {num_samples}")
        components = self.model.model_config.num_components
        if mode == "top" and num_samples > components:
            if flags:
                count_flag, mode_flag = flags
                raise InputError(
                    f"{mode_flag} top gives at most {components} samples (the model's mixture "
                    f"components), got {count_flag} {num_samples}; pass {count_flag} "
                    f"{components} or {mode_flag} draw"
                )
            raise InputError(
                f"mode 'top' gives at most {components} samples (the model's mixture components), "
                f"got {num_samples}; use mode 'draw' for more"
            )

    def colorize(self, image, num_samples=None, seed=0, mode="top", return_scores=False):
        """Diverse colorizations of a photo at its own resolution, most probable first.

        Args:
          image: a path, encoded image bytes (`bytes`, `bytearray`, `memoryview` of a PNG,
            JPEG, ... file), a binary file object, a PIL image, or a uint8 numpy array
            `[H, W]`, `[H, W, 1]` or `[H, W, 3]`. A color photo is reduced to its lightness
            first.
          num_samples: N, the number of colorizations; None: `default_samples(mode)` (8, or
            the model's number of mixture components in "top" mode if it has fewer).
          seed: seed of the random draws ("draw" mode; "top" mode is deterministic).
          mode: "top" decodes the N most probable mixture components (at most the model's
            number of components), "draw" samples N latent codes from the mixture.
          return_scores: also return each sample's mixture weight.

        Returns:
          uint8 `[N, H, W, 3]` sRGB images (and float `[N]` scores if `return_scores`).

        Raises:
          InputError: unreadable image or invalid `num_samples` / `mode`.
        """
        num_samples = self.sample_count(num_samples, mode)
        seed = self._seed(seed)
        lightness, l_small, similarity = self._photo(_as_rgb(image))
        ab_small, scores = self.sample_grid(l_small, num_samples, seed, mode, similarity=similarity)
        images = self._to_full(ab_small[0], lightness)
        return (images, scores[0].numpy()) if return_scores else images

    def edit(self, image, points, colors, from_sample=None, seed=0, num_samples=None, mode="top",
             links=None, propagate=True):
        """Colorizes a photo from a few user color points, propagated by the learned structure.

        Args:
          image: as for `colorize`.
          points: `(x, y)` pixel positions in the input image (x = column, y = row); at most
            `MAX_POINTS`. May be empty when `links` or `from_sample` are given.
          colors: one `(r, g, b)` color (0-255) per point. Only its chroma is used: the output
            keeps the photo's lightness. Each point's chroma is reproduced at its own pixel (up
            to the sRGB gamut at that lightness), however close the points are.
          from_sample: None to start from the model's own most probable colorization, kept
            weakly where the points do not reach; K to apply the edits on top of sample K of
            `colorize(image, num_samples, seed, mode)` instead.
          seed, num_samples, mode: the `colorize` arguments sample K comes from. In "top" mode
            sample K does not depend on them; in "draw" mode `num_samples` defaults to
            `DEFAULT_SAMPLES`, as in `colorize`.
          links: optional `[((x1, y1), (x2, y2)), ...]`: each pair of places should take the
            same color, without saying which (the paper's second kind of control).
          propagate: refine with the full-resolution propagation (`tfgcrf.hints.Propagation`,
            as the exported SavedModel's `edit` signature does with TensorFlow ops); False: the
            upsampled G-CRF answer and the point refinement only.

        Returns:
          uint8 `[H, W, 3]` sRGB image.

        Raises:
          InputError: unreadable image, a point or link end outside the image, a link from a
            place to itself, two points on one pixel with different colors, more than
            `MAX_POINTS` points or links, no point, no link and no `from_sample` (`EMPTY_EDIT`),
            a malformed color, or an invalid `from_sample`. Everything is checked before anything is computed.
        """
        rgb = _as_rgb(image)
        pixels, links = check_edit(rgb.shape[1], rgb.shape[0], points, colors, links, from_sample)
        session = self._session(rgb, from_sample, seed, num_samples, mode, interactive=False,
                                propagate=propagate)
        for (x, y), rgb_color in zip(pixels, colors):
            session.add_point(x, y, rgb_color)
        for first, second in links:
            session.link(first, second)
        return session.result()

    def session(self, image, from_sample=None, seed=0, num_samples=None, mode="top",
                propagate=True):
        """An interactive edit session on one photo (`tfgcrf.edit_session.EditSession`).

        It computes what does not depend on the points once (S, the prior, one factorization);
        then `add_point(x, y, color)`, `move_point(id, x, y)`, `remove_point(id)`,
        `link((x1, y1), (x2, y2))`, `unlink(id)` and `result()` answer incrementally, with the
        same answer as `edit` with the same points and links (within one uint8 level for photos
        of 250k pixels and more, whose session finishes with XLA kernels).

        Args:
          image, from_sample, seed, num_samples, mode, propagate: as for `edit`.

        Raises:
          InputError: unreadable image or invalid `from_sample`.
        """
        return self._session(_as_rgb(image), from_sample, seed, num_samples, mode,
                             propagate=propagate)

    def _session(self, rgb, from_sample, seed, num_samples, mode, interactive=True,
                 propagate=True):
        base = None
        if from_sample is not None:
            num_samples = self._check_from_sample(from_sample, num_samples, mode)
        lightness, l_small, similarity = self._photo(rgb)
        if from_sample is not None:
            samples, _ = self.sample_grid(l_small, num_samples, seed, mode, similarity=similarity)
            base = samples[:, int(from_sample)]
        grid = self.edit_session_grid(l_small, base, similarity=similarity)
        return EditSession(self, rgb.shape[:2], lightness, l_small, grid, interactive, propagate)

    def explain(self, image, point):
        """The attention map of one pixel: its row of the learned similarity S.

        Args:
          image: as for `colorize`.
          point: `(x, y)` pixel position in the input image.

        Returns:
          float32 `[H, W]`: the weights with which the G-CRF ties every pixel's color to the
          point's grid pixel (a row of S, summing to 1 over the grid), resized bilinearly to the
          input resolution.
        """
        rgb = _as_rgb(image)
        height, width = rgb.shape[:2]
        points_rel = self._relative_points([point], height, width)
        _, _, similarity = self._photo(rgb)
        # The point's grid pixel, located exactly as `edit` places its points.
        mask, _ = points_to_grid(points_rel[None], np.zeros([1, 1, 2], np.float32), [1], self.grid_size)
        index = tf.argmax(tf.reshape(mask, [-1]))
        row = tf.gather(similarity[0], index)
        attention = tf.reshape(row, [1, self.grid_size, self.grid_size, 1])
        return tf.image.resize(attention, [height, width], method="bilinear")[0, ..., 0].numpy()

    # ------------------------------------------------------------------------------ helpers

    def _register(self, session):
        """An id for an `EditSession`, with which `_finish_edit` finds its propagation."""
        key = next(self._session_ids)
        self._sessions[key] = session
        return key

    def _session_correction(self, session, ab_small, lightness, pixels, colors):
        """The propagation's correction `[h, w, 2]` (at its working resolution, or the photo's
        `[H, W, 2]`; `hints.finish_edit` takes either) of edit session `session` (an int64
        scalar tensor) for the points `pixels` / `colors` (`EditSession.correction`), inside
        `_finish_edit`'s graph."""
        correction = tf.py_function(
            lambda key, *args: self._sessions[int(key)].correction(*args),
            [session, ab_small, pixels, colors], tf.float32)
        return tf.ensure_shape(correction, [None, None, 2])

    def _check_from_sample(self, from_sample, num_samples, mode):
        """Validates `edit`'s sample choice; returns the number of samples to draw."""
        if isinstance(from_sample, bool) or not isinstance(from_sample, (int, np.integer)) or from_sample < 0:
            raise InputError(f"from_sample must be a sample index >= 0, got {from_sample!r}")
        components = self.model.model_config.num_components
        if num_samples is None:
            if mode == "top" and from_sample >= components:
                raise InputError(
                    f"there is no sample {from_sample}: mode 'top' gives samples 0..{components - 1} "
                    "(the model's mixture components)"
                )
            # Top-mode samples are the components by decreasing weight: K + 1 of them suffice.
            num_samples = from_sample + 1 if mode == "top" else DEFAULT_SAMPLES
        self.check_sampling(num_samples, mode)
        if from_sample >= num_samples:
            raise InputError(
                f"there is no sample {from_sample} among {num_samples} samples (0..{num_samples - 1})"
            )
        return num_samples

    @staticmethod
    def _seed(seed):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise InputError(f"seed must be an integer, got {seed!r}")
        return tf.constant(seed, tf.int64)

    @staticmethod
    def _relative_points(points, height, width):
        """Pixel `(x, y)` points -> `[K, 2]` positions of the pixel centers relative to the image."""
        array = hints.check_points(points, width, height)
        if len(array) == 0:
            raise InputError(f"points must be a non-empty list of (x, y) pairs, got {points!r}")
        return ((array + 0.5) / [width, height]).astype(np.float32)

    @staticmethod
    def _point_chroma(colors, count):
        """`(r, g, b)` colors -> `[K, 2]` chroma in model units."""
        try:
            given = np.asarray(colors)
            array = given.astype(np.float64)
        except (TypeError, ValueError):
            raise InputError(f"colors must be (r, g, b) triples, got {colors!r}") from None
        # matplotlib's to_rgb("red") is (1.0, 0.0, 0.0): taken as 0..255 it is almost black and
        # gives no color at all, so 0..1 floats are refused rather than silently misread.
        if given.dtype == bool or (given.dtype.kind == "f" and 0 < array.max(initial=0) <= 1):
            raise InputError(f"color channels must be integers in 0..255 (0..1 floats: multiply "
                             f"by 255), got {colors!r}")
        if count == 0 and array.size == 0:
            return np.zeros([0, 2], np.float32)
        if array.shape != (count, 3):
            raise InputError(f"expected one (r, g, b) color per point ({count}), got {colors!r}")
        if not (np.all(array >= 0) and np.all(array <= 255) and np.all(array == np.round(array))):
            raise InputError(f"color channels must be integers in 0..255, got {colors!r}")
        return _chroma_of(array.astype(np.uint8)).numpy()

    def _to_full(self, ab_small, lightness):
        """Grid chroma `[N, h, w, 2]` -> uint8 `[N, H, W, 3]`, in chunks that bound memory."""
        count = int(ab_small.shape[0])
        pixels = int(tf.size(lightness))
        chunk = max(1, _CHUNK_PIXELS // pixels)
        # XLA pays off (about 2x) once its compilation for this image size is amortized.
        finish = self._finish[min(count, chunk) * pixels >= _JIT_PIXELS]
        parts = [finish(ab_small[start : start + chunk], lightness) for start in range(0, count, chunk)]
        return np.concatenate([part.numpy() for part in parts], axis=0)
