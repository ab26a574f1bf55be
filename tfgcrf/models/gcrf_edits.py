"""User edits through the G-CRF (paper Sec. 3.2 / Fig. 4): the `edit` methods of `GCRFBackbone`.

A mixin: it reads the backbone's `model_config`, `check_gray`, `sample`, `similarity` and
`crf_solver`. The edit energy's extra terms (local smoothness, links, the model prior weight) are
in `tfgcrf.layers.edit_terms`; the factor-once session in `tfgcrf.layers.gcrf_edit_session`.
"""

import functools

import tensorflow as tf

from tfgcrf.layers import edit_terms
from tfgcrf.layers.gaussian_crf import LowRank
from tfgcrf.layers.gcrf_edit_session import EditSession
from tfgcrf.models.grid import flatten_pixels

# The latent fitted to the hints (`hint_prior`): posterior inference of z given the revealed colors,
# E(z) = sum_p h_p |alpha_p(z) - t_p|^2 / (2 FIT_SIGMA^2) - log p(z | g), started at the mixture mean
# that minimizes it and refined by FIT_STEPS Adam steps of FIT_RATE (chosen on validation).
FIT_SIGMA = 0.1  # the VAE's reconstruction sigma (training.recon_sigma), model ab units
FIT_STEPS = 40
FIT_RATE = 0.05


def _is_zero(weight):
    """True for a Python number 0 (a term left out when the graph is built); False for tensors."""
    return isinstance(weight, (int, float)) and weight == 0


class EditMethods:
    """`edit`, `edit_session`, `edit_prior` and `edit_weights` of `GCRFBackbone`."""

    def edit(self, l, mask, target_ab, base_ab=None, prior_weight=None, solver=None, links=None,
             num_links=None, local_weight=None, link_weight=None, similarity=None):
        """Propagates user edits with the G-CRF (paper Sec. 3.2 / Fig. 4) and edit terms.

        Solves the edit energy of `tfgcrf.layers.edit_terms`: the learned structure term, local
        edge-aware smoothness, the points (weight `beta_edit`), a weak prior where the points do
        not reach and optional "same color" links.

        Args:
            l: gray images `[B, H, W, 1]` on the model grid.
            mask: `[B, H, W]`, > 0 at edited pixels (values are clipped to [0, 1] and act as the
                per-pixel confidence h).
            target_ab: `[B, H, W, 2]` edit colors (read where mask > 0).
            base_ab: optional `[B, H, W, 2]` colorization (e.g. a chosen sample) kept where the
                edits do not reach, with weight `prior_weight`. Without it the prior is the
                model's own most probable colorization (the unary of the top mixture component)
                with weight `edit_terms.MODEL_PRIOR_WEIGHT`, so that hints win near them and the
                model fills what they do not reach.
            prior_weight: weight of the prior (default `config.prior_weight` with `base_ab`,
                `edit_terms.MODEL_PRIOR_WEIGHT` without); 0 leaves the prior out, so that the
                colors come from the points alone (the paper's Fig. 6).
            solver: G-CRF solver, "lu", "cholesky" or "cg" (default `config.edit_solver`).
            links: optional `[B, J, 2]` int flat grid pixel pairs that should take the same
                color (`tfgcrf.models.points.links_to_grid`).
            num_links: optional `[B]` int, the valid links per image (the rest is padding).
            local_weight: weight of the local smoothness term (default
                `edit_terms.LOCAL_WEIGHT`; 0 leaves it out).
            link_weight: weight of each link (default `edit_terms.LINK_WEIGHT`).
            similarity: optional S `[B, P, P]` of these images (`similarity(l)`), reused instead
                of computed again.

        Returns:
            ab `[B, H, W, 2]`: edited pixels get weight `beta_edit`.
        """
        l = self.check_gray(l)
        edited = flatten_pixels(tf.clip_by_value(tf.cast(mask, tf.float32), 0.0, 1.0)[..., None])
        edited = edited[..., 0]
        target = flatten_pixels(tf.cast(target_ab, tf.float32))
        weights, unary, initial = self.edit_weights(l, edited, target, base_ab, prior_weight)
        local_weight = edit_terms.LOCAL_WEIGHT if local_weight is None else local_weight
        link_weight = edit_terms.LINK_WEIGHT if link_weight is None else link_weight
        if not _is_zero(local_weight):
            extra = edit_terms.edit_precision(l, links, num_links, local_weight, link_weight)
        elif links is not None:  # links alone (the default): link_weight U U^T, never formed by CG
            extra = LowRank(edit_terms.link_vectors_of(l, links, num_links), link_weight)
        else:  # no term to add (the default without links): no [P, P] matrix
            extra = None
        crf = self.crf_solver(solver or self.model_config.edit_solver)
        if similarity is None:
            similarity = self.similarity(l)
        x = crf(similarity, unary, weights, initial=initial, extra=extra)
        return tf.reshape(x, tf.shape(target_ab))

    def edit_session(self, l, base_ab=None, prior_weight=None, local_weight=None, similarity=None,
                     last=None):
        """The edit energy of one image with its prior system factored once, for many point sets.

        Args:
            l: gray image `[1, H, W, 1]` on the model grid.
            base_ab, prior_weight, local_weight, similarity: as for `edit`.
            last: optional grid pixels of point sets known in advance (`EditSession`'s `last`:
                nested sets answered without Woodbury columns).

        Returns:
            a `tfgcrf.layers.gcrf_edit_session.EditSession` whose `solve(pixels, colors, links)`
            equals `edit` with those points (one per grid pixel, weight `beta_edit`) and links, in
            O(P^2) per new point or link.
        """
        l = self.check_gray(l)
        local_weight = edit_terms.LOCAL_WEIGHT if local_weight is None else local_weight
        if _is_zero(local_weight):
            # No local term: the dense [1, P, P] affinities are built only if a link needs them.
            extra, affinity = None, functools.partial(edit_terms.affinity_matrix, l)
        else:
            affinity = edit_terms.affinity_matrix(l)
            extra = local_weight * edit_terms.local_laplacian(affinity)
        prior, weight = self.edit_prior(l, base_ab, prior_weight)
        pixels = self.model_config.image_size ** 2
        if similarity is None:
            similarity = self.similarity(l)
        return EditSession(similarity, None if prior is None else tf.fill([pixels], weight),
                           None if prior is None else prior[0], ridge=self.model_config.ridge,
                           extra=extra, point_weight=self.model_config.beta_edit,
                           affinity=affinity, last=last)

    def edit_prior(self, l, base_ab=None, prior_weight=None):
        """The edit prior `(prior_ab [B, P, 2] or None, weight)` (see `edit`)."""
        if base_ab is None:
            weight = edit_terms.MODEL_PRIOR_WEIGHT if prior_weight is None else prior_weight
            if isinstance(weight, (int, float)) and weight == 0:
                return None, 0.0
            base_ab = self.sample(l, 1, mode="top", use_gcrf=False)[0][:, 0]
        else:
            weight = self.model_config.prior_weight if prior_weight is None else prior_weight
        return flatten_pixels(tf.cast(base_ab, tf.float32)), weight

    def hint_prior(self, l, edited, target, steps=FIT_STEPS, rate=FIT_RATE):
        """The decoder's colors for a latent code fitted to the hints (ideepcolor's "the model's
        prior fills what no hint reaches", as posterior inference of z given the revealed colors).

        Minimizes `latent_fit_objective` over z: first over the M mixture means (decoded in one
        batch), then `steps` Adam steps (learning rate `rate`) from the best mean, with the
        decoder's gradient (TensorFlow ops only: traced into the SavedModel's `edit`).

        Args:
            l: gray images `[B, H, W, 1]` on the model grid.
            edited: `[B, P]` >= 0 weight of each grid pixel's hint (e.g. how many hinted photo
                pixels fall on it; 0 where there is none).
            target: `[B, P, 2]` hint chroma (model units, read where `edited` > 0).
            steps: Adam steps after the choice among the means (0: the best mean).
            rate: Adam's learning rate (latent units).

        Returns:
            `(alpha [B, P, 2], z [B, latent_dim], component [B] int)`: the unary colors of the fitted
            code, the code and the mixture component it started from. Without hints (`edited` all
            0) the component is the most probable one and z its mean: the top sample's colors.
        """
        l = self.check_gray(l)
        edited = tf.cast(edited, tf.float32)
        target = tf.cast(target, tf.float32)
        features = self.features(l)
        logits, means = self.mixture_parameters(features)
        batch, count = tf.shape(means)[0], tf.shape(means)[1]
        repeated = [tf.repeat(feature, count, axis=0) for feature in features]
        alphas = flatten_pixels(self.decoder(tf.reshape(means, [batch * count, -1]), repeated))
        alphas = tf.reshape(alphas, [batch, count, -1, 2])
        misfit = tf.reduce_sum(edited[:, None] * tf.reduce_sum(
            tf.square(alphas - target[:, None]), axis=-1), axis=-1)  # [B, M]
        scores = misfit / (2.0 * FIT_SIGMA ** 2) - tf.nn.log_softmax(logits, axis=-1)
        component = tf.argmin(scores, axis=-1, output_type=tf.int32)
        z = tf.gather(means, component, batch_dims=1)
        alpha = tf.gather(alphas, component, batch_dims=1)
        if not (isinstance(steps, int) and steps == 0):
            z = self._adam_fit(z, features, logits, means, edited, target, steps, rate)
            alpha = flatten_pixels(self.decoder(z, features))
        return alpha, z, component

    def latent_fit_objective(self, z, features, logits, means, edited, target):
        """`(E [B], dE/dz [B, Z])` of `hint_prior`'s objective at codes `z [B, Z]` (`features`, `logits`,
        `means` of `features(l)` and `mdn(features)`; `edited`, `target` as in `hint_prior`)."""
        with tf.GradientTape() as tape:
            tape.watch(z)
            alpha = flatten_pixels(self.decoder(z, features))
            misfit = tf.reduce_sum(edited * tf.reduce_sum(tf.square(alpha - target), axis=-1), -1)
            energy = (misfit / (2.0 * FIT_SIGMA ** 2)
                      - self.mdn.distribution(logits, means).log_prob(z))
        return energy, tape.gradient(energy, z)

    def _adam_fit(self, z, features, logits, means, edited, target, steps, rate):
        """`steps` Adam steps (beta 0.9 / 0.999) on `latent_fit_objective` from `z`."""
        def body(step, z, first, second):
            _, gradient = self.latent_fit_objective(z, features, logits, means, edited, target)
            first = 0.9 * first + 0.1 * gradient
            second = 0.999 * second + 0.001 * tf.square(gradient)
            t = tf.cast(step + 1, tf.float32)
            update = (first / (1.0 - 0.9 ** t)) / (tf.sqrt(second / (1.0 - 0.999 ** t)) + 1e-8)
            return step + 1, z - rate * update, first, second

        zeros = tf.zeros_like(z)
        _, z, _, _ = tf.while_loop(lambda step, *_: step < steps, body,
                                   (tf.constant(0), z, zeros, zeros))
        return z

    def edit_weights(self, l, edited, target, base_ab=None, prior_weight=None):
        """G-CRF `(weights [B, P], unary [B, P, 2], initial)` of edits `edited [B, P]`, `target`."""
        base, prior_weight = self.edit_prior(l, base_ab, prior_weight)
        edit_weight = self.model_config.beta_edit * edited
        if base is None:
            return edit_weight, target, None
        prior = prior_weight * (1.0 - edited)
        weights = edit_weight + prior
        # A x = weights * unary must equal beta h target + prior (1 - h) base.
        unary = tf.math.divide_no_nan(
            edit_weight[..., None] * target + prior[..., None] * base, weights[..., None])
        return weights, unary, base
