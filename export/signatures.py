"""The serving signatures: the whole colorization pipeline as TensorFlow ops.

`ServingModule` wraps a trained `GCRFColorizer` in a `tf.Module` whose `tf.function`s become
the SavedModel signatures (the contract is documented in the README, "Export and serving"):

- `sample` (also `serving_default`): `image_bytes` string [B], `seed` int64 [B] ->
  `colorized_bytes` string [B, N] (PNG, input size, best first), `scores` float32 [B, N].
- `edit`: `image_bytes` string [B], `points` float32 [B, K, 2] (x, y relative), `colors` uint8
  [B, K, 3] (RGB), `num_points` int32 [B], `seed` int64 [B], `from_sample` int32 [B] ->
  `colorized_bytes` string [B].
- `edit_links`: the inputs of `edit` plus `links` float32 [B, J, 4] ((x1, y1, x2, y2) relative)
  and `num_links` int32 [B]: "same color" links (a SavedModel signature cannot have optional
  inputs, so `edit` keeps its inputs and old requests stay valid).
- `sample_tensor`: `image` uint8 [B, H, W, 3], `seed` int64 [B] -> `colorized` uint8
  [B, N, H, W, 3], `scores` float32 [B, N] (no image coding, one size per batch).

Each image goes through decode -> size check -> lightness -> resize to the model grid -> model
(MDN codes, decoder, G-CRF solve; edits: `EDIT_SOLVER`) -> edge-aware chroma upsampling to the input size (edits:
+ the full-resolution propagation of the points, `hints.propagation_correction`, and each point's
own color at its pixel) -> recombination with the input's lightness -> PNG. Images of one batch may differ in size, so the
examples are processed one by one with `tf.map_fn`. Bad requests fail with InvalidArgument
errors whose messages say what is wrong (graph assertions), never by crashing the server.
"""

import tensorflow as tf

from tfgcrf import color, fullres, hints
from tfgcrf.edit_session import EMPTY_EDIT, MAX_POINTS, has_hints
from tfgcrf.errors import UserError
from tfgcrf.decode import MAX_PIXELS, decode_image
from tfgcrf.models.points import links_to_grid, points_to_grid

# The G-CRF solver of the served edits' grid system (`GCRFColorizer.edit(..., solver=)`): "cg",
# matrix-free conjugate gradients with the model's preconditioner (`model.cg_preconditioner`, the
# default preset's "two_level": 19-30 iterations for 1-30 points), products with S only. A served
# edit is stateless: it cannot keep a factorization between requests as `Colorizer.session`
# does, and "cholesky" forms (I - S)^T (I - S) densely (a 4096^3 product at 64 x 64) and factors it
# on every request: ~5 of the ~10 CPU-s of a 256x256 edit (README "Serving speed",
# `benchmarks/served_edit_solver.py`). The same energy and answer within float32 round-off.
EDIT_SOLVER = "cg"

# Default limit on the pixels of a request image: the package's one limit (`tfgcrf.decode`), so a
# photo the CLI accepts is accepted by the served model too. `tfgcrf export --max-pixels` lowers it
# for a deployment (memory per request: about 60 bytes per pixel, one full-size sample at a time).
DEFAULT_MAX_PIXELS = MAX_PIXELS


# Values an assertion's message shows per tensor (up to 32 (x, y) points).
SUMMARIZE = 64


def _check(condition, message, *values):
    """An assertion whose error reads `assertion failed: [message] [values...]`.

    `tf.debugging.assert_less` and its kin append "Condition x < y did not hold element-wise" and
    the graph's tensor names (`map/while/TensorArrayV2Read_5/...`), which a client of the served
    model cannot act on; the message here says what was wrong and shows the offending values.
    """
    # summarize: Assert shows 3 values of each tensor by default, which cut a batch-size list
    # before the one that differs ("got [1 1 1...]").
    return tf.debugging.Assert(tf.reduce_all(condition), [message, *values], summarize=SUMMARIZE)


def _assert_pixels(height, width, max_pixels, name):
    pixels = tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
    return _check(pixels <= max_pixels,
                  f"{name}: the image has more pixels than the {max_pixels} this model accepts; got",
                  pixels)


def _same_batch(*tensors):
    """Asserts that all inputs share their first (batch) dimension."""
    sizes = tf.stack([tf.shape(t)[0] for t in tensors])
    return [_check(tf.equal(sizes, sizes[0]), "all inputs must have the same batch size (first "
                   "dimension); got", sizes)]


# Inputs of the `edit` signature; `edit_links` takes these and the links.
_EDIT_INPUTS = [
    tf.TensorSpec([None], tf.string, name="image_bytes"),
    tf.TensorSpec([None, None, 2], tf.float32, name="points"),
    tf.TensorSpec([None, None, 3], tf.uint8, name="colors"),
    tf.TensorSpec([None], tf.int32, name="num_points"),
    tf.TensorSpec([None], tf.int64, name="seed"),
    tf.TensorSpec([None], tf.int32, name="from_sample"),
]



def _pixels_of(relative, shape):
    """The pixel (x, y) int32 [..., 2] holding each relative position (x, y) in [0, 1] of an image
    of `shape` [H, W, ...]: floor(x * W) clipped to W - 1 (x = 1 is the last pixel). The Python
    side's rule is `hints.pixels_of` (pixel coordinates, same pixels)."""
    size = tf.stack([shape[1], shape[0]])
    pixels = tf.cast(tf.floor(relative * tf.cast(size, tf.float32)), tf.int32)
    return tf.minimum(pixels, size - 1)

class ServingModule(tf.Module):
    """A trained `GCRFColorizer` with the serving signatures as `tf.function`s.

    Args:
      model: the trained `GCRFColorizer` (its variables are saved with the module).
      num_samples: N, the samples per `sample` request (fixed at export).
      mode: the model's sampling mode, "top" (the N most probable mixture components, seed not
        used) or "draw" (N codes drawn from the mixture with the request's seed).
      max_pixels: the largest accepted request image, in pixels.
      propagate: edits with the full-resolution propagation (`Colorizer.edit`'s default); False
        answers `Colorizer.edit(..., propagate=False)` (faster; `benchmarks/served_edit.py`).
      edit_solver: the G-CRF solver of the edits' grid system, "cg" (`EDIT_SOLVER`), "cholesky"
        or "lu" (the same answer within float32 round-off; `benchmarks/served_edit.py`).
    """

    def __init__(self, model, num_samples, mode="top", max_pixels=DEFAULT_MAX_PIXELS,
                 propagate=True, edit_solver=EDIT_SOLVER):
        super().__init__(name="tfgcrf_serving")
        self.model = model
        # Keras 3 models do not expose their variables to tf.Module tracking: list the
        # underlying tf.Variables (not the Keras wrappers, whose exported copies TF1-style
        # session loaders such as TF Serving and `saved_model_cli run` cannot find).
        self.model_variables = [variable.value for variable in model.variables]
        self.num_samples = int(num_samples)
        self.mode = mode
        self.max_pixels = int(max_pixels)
        self.propagate = bool(propagate)
        self.edit_solver = edit_solver
        model.crf_solver(edit_solver)  # an unknown solver fails here, not at the first request
        self.grid_size = int(model.model_config.image_size)
        self.converter = model.preprocessor  # the task's GridConverter (photo -> model grid)
        if self.converter is None:
            raise UserError("the model has no preprocessor (GCRFColorizer.preprocessor is None): "
                            "the SavedModel needs one to convert photos to the model grid")

    # Plain TF control flow (tf.cond, tf.map_fn) only: autograph is not needed, and its
    # conversion of the nested branch functions fails.
    @tf.autograph.experimental.do_not_convert
    def _colorize(self, rgb, seed, encode):
        """uint8 RGB [H, W, 3] -> (N samples at the input size, scores [N]).

        The samples are PNG strings [N] when `encode`, else uint8 [N, H, W, 3]. The
        full-resolution stages (chroma upsampling, recombination, PNG) run one sample at a time:
        memory holds one full-size sample instead of N, and a request whose client stopped
        waiting stops at the next sample (TensorFlow checks cancellation between loop
        iterations, not between ops).
        """
        lightness, l_small = self.converter(rgb)
        ab_small, scores = self.model.sample(l_small, self.num_samples, seed=seed, mode=self.mode)

        def one(ab):
            image = fullres.to_photo(ab[tf.newaxis], lightness)[0]
            return tf.io.encode_png(image) if encode else image

        spec = tf.TensorSpec([], tf.string) if encode else tf.TensorSpec([None, None, 3], tf.uint8)
        samples = tf.map_fn(one, ab_small[0], fn_output_signature=spec, parallel_iterations=1)
        return samples, scores[0]

    @tf.autograph.experimental.do_not_convert
    def _edit(self, rgb, points, colors, num_points, seed, from_sample, links=None, num_links=None):
        """One edit request -> uint8 RGB [H, W, 3] (the same answer as `Colorizer.edit`)."""
        count = tf.shape(points)[0]
        valid = points[:num_points]
        checks = [
            _check(count <= MAX_POINTS, f"an edit holds at most {MAX_POINTS} points; got", count),
            _check(num_points >= 0, "num_points must be >= 0; got", num_points),
            _check(num_points <= count,
                   "num_points must be <= K, the length of the points axis; got num_points, K =",
                   num_points, count),
            _check((valid >= 0.0) & (valid <= 1.0),
                   "points must be (x, y) relative to the image width/height, in [0, 1]; got", valid),
            _check(from_sample >= -1,
                   "from_sample must be -1 (points only) or a sample index; got", from_sample),
            _check(from_sample < self.num_samples,
                   f"from_sample must be < num_samples = {self.num_samples}; got", from_sample),
        ]
        link_pairs = None
        # The one rule of `Colorizer.edit` and the CLI (`edit_session.has_hints`, same message):
        # no point, no link and no sample is refused; a sample without points is valid.
        checks.append(_check(has_hints(num_points, 0 if links is None else num_links, from_sample),
                             EMPTY_EDIT))
        pixel_ends = None
        if links is not None:
            ends = links[:num_links]
            pixel_ends = _pixels_of(tf.reshape(ends, [-1, 2, 2]), tf.shape(rgb))
            checks += [
                _check(tf.shape(links)[0] <= MAX_POINTS,
                       f"an edit holds at most {MAX_POINTS} links; got", tf.shape(links)[0]),
                _check(num_links >= 0, "num_links must be >= 0; got", num_links),
                _check(num_links <= tf.shape(links)[0],
                       "num_links must be <= J, the length of the links axis; got num_links, J =",
                       num_links, tf.shape(links)[0]),
                _check((ends >= 0.0) & (ends <= 1.0),
                       "links must be (x1, y1, x2, y2) relative to the image, in [0, 1]; got", ends),
                _check(tf.reduce_any(pixel_ends[:, 0] != pixel_ends[:, 1], axis=-1),
                       "a link must join two different pixels; got", ends),
            ]
        # Nothing is computed before every check has passed: a refusal that aborted the step
        # while a solver loop already ran (its right-hand side needs only the points) left a
        # per-step temporary variable of Grappler's AddN rewrite behind, and every later edit of
        # the loaded model failed with ALREADY_EXISTS.
        with tf.control_dependencies(checks):
            rgb, points, colors, num_points, seed, from_sample = (
                tf.identity(t) for t in (rgb, points, colors, num_points, seed, from_sample))
            if links is not None:
                links, num_links, pixel_ends = (
                    tf.identity(t) for t in (links, num_links, pixel_ends))
        valid = points[:num_points]
        if links is not None:
            link_pairs = links_to_grid(links[tf.newaxis], self.grid_size)
            num_links = num_links[tf.newaxis]
        lightness, l_small = self.converter(rgb)
        _, colors_ab = color.rgb_to_model(colors)
        mask, target_ab = points_to_grid(
            points[tf.newaxis], colors_ab[tf.newaxis], num_points[tf.newaxis], self.grid_size
        )

        similarity = self.model.similarity(l_small)  # S once, for the sample and the edit

        def on_sample():
            samples, _ = self.model.sample(
                l_small, self.num_samples, seed=seed, mode=self.mode, similarity=similarity
            )
            base = tf.gather(samples, from_sample, axis=1)
            return self.model.edit(l_small, mask, target_ab, base_ab=base, links=link_pairs,
                                   num_links=num_links, similarity=similarity,
                                   solver=self.edit_solver)

        def points_only():
            return self.model.edit(l_small, mask, target_ab, links=link_pairs, num_links=num_links,
                                   similarity=similarity, solver=self.edit_solver)

        ab_small = tf.cond(from_sample >= 0, on_sample, points_only)
        pixels = _pixels_of(valid, tf.shape(lightness))
        # The full-resolution propagation of the points (`Colorizer.edit`'s default), by the
        # TensorFlow solver of the same system as the API's sparse LU; solved a second time with
        # the colors that links carry when a link end moved (`hints.finish_edit`).
        correct = None
        if self.propagate:
            def correct(pixels_, colors_):
                return hints.propagation_correction(ab_small, lightness, pixels_, colors_)
        return hints.finish_edit(ab_small, lightness, pixels, colors_ab[:num_points],
                                 self.grid_size, links_px=pixel_ends, correct=correct)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name="image_bytes"),
        tf.TensorSpec([None], tf.int64, name="seed"),
    ])
    def sample(self, image_bytes, seed):
        def one(args):
            data, example_seed = args
            return self._colorize(decode_image(data, self.max_pixels), example_seed, encode=True)

        with tf.control_dependencies(_same_batch(image_bytes, seed)):
            pngs, scores = tf.map_fn(
                one,
                (image_bytes, seed),
                fn_output_signature=(
                    tf.TensorSpec([self.num_samples], tf.string),
                    tf.TensorSpec([self.num_samples], tf.float32),
                ),
                parallel_iterations=1,
            )
        return {"colorized_bytes": pngs, "scores": scores}

    @tf.function(input_signature=_EDIT_INPUTS)
    def edit(self, image_bytes, points, colors, num_points, seed, from_sample):
        return self._edit_batch(image_bytes, points, colors, num_points, seed, from_sample)

    @tf.function(input_signature=_EDIT_INPUTS + [
        tf.TensorSpec([None, None, 4], tf.float32, name="links"),
        tf.TensorSpec([None], tf.int32, name="num_links"),
    ])
    def edit_links(self, image_bytes, points, colors, num_points, seed, from_sample, links,
                   num_links):
        return self._edit_batch(image_bytes, points, colors, num_points, seed, from_sample, links,
                                num_links)

    def _edit_batch(self, image_bytes, points, colors, num_points, seed, from_sample, *links):
        checks = _same_batch(image_bytes, points, colors, num_points, seed, from_sample, *links)
        checks.append(
            _check(tf.equal(tf.shape(points)[1], tf.shape(colors)[1]),
                   "points and colors must have the same K (one color per point); got K =",
                   tf.shape(points)[1], tf.shape(colors)[1]))

        def one(args):
            data, *rest = args
            return tf.io.encode_png(self._edit(decode_image(data, self.max_pixels), *rest))

        with tf.control_dependencies(checks):
            pngs = tf.map_fn(
                one,
                (image_bytes, points, colors, num_points, seed, from_sample, *links),
                fn_output_signature=tf.TensorSpec([], tf.string),
                parallel_iterations=1,
            )
        return {"colorized_bytes": pngs}

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="image"),
        tf.TensorSpec([None], tf.int64, name="seed"),
    ])
    def sample_tensor(self, image, seed):
        shape = tf.shape(image)
        checks = _same_batch(image, seed) + [_assert_pixels(shape[1], shape[2], self.max_pixels, "image")]
        with tf.control_dependencies(checks):
            images, scores = tf.map_fn(
                lambda args: self._colorize(*args, encode=False),
                (image, seed),
                fn_output_signature=(
                    tf.TensorSpec([self.num_samples, None, None, 3], tf.uint8),
                    tf.TensorSpec([self.num_samples], tf.float32),
                ),
                parallel_iterations=1,
            )
        return {"colorized": images, "scores": scores}

    def signatures(self):
        """The signature map for `tf.saved_model.save`."""
        return {
            "serving_default": self.sample,
            "sample": self.sample,
            "edit": self.edit,
            "edit_links": self.edit_links,
            "sample_tensor": self.sample_tensor,
        }
