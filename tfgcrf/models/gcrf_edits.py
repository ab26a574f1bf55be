"""User edits through the G-CRF (paper Sec. 3.2 / Fig. 4): the `edit` methods of `GCRFBackbone`.

A mixin: it reads the backbone's `model_config`, `check_gray`, `sample`, `similarity` and
`crf_solver`. The edit energy's extra terms (local smoothness, links, the model prior weight) are
in `tfgcrf.layers.edit_terms`; the factor-once session in `tfgcrf.layers.gcrf_edit_session`.
"""

import tensorflow as tf

from tfgcrf.layers import edit_terms
from tfgcrf.layers.gcrf_edit_session import EditSession
from tfgcrf.models.grid import flatten_pixels


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
        extra = edit_terms.edit_precision(
            l, links, num_links,
            edit_terms.LOCAL_WEIGHT if local_weight is None else local_weight,
            edit_terms.LINK_WEIGHT if link_weight is None else link_weight)
        crf = self.crf_solver(solver or self.model_config.edit_solver)
        if similarity is None:
            similarity = self.similarity(l)
        x = crf(similarity, unary, weights, initial=initial, extra=extra)
        return tf.reshape(x, tf.shape(target_ab))

    def edit_session(self, l, base_ab=None, prior_weight=None, local_weight=None, similarity=None):
        """The edit energy of one image with its prior system factored once, for many point sets.

        Args:
            l: gray image `[1, H, W, 1]` on the model grid.
            base_ab, prior_weight, local_weight, similarity: as for `edit`.

        Returns:
            a `tfgcrf.layers.gcrf_edit_session.EditSession` whose `solve(pixels, colors, links)`
            equals `edit` with those points (one per grid pixel, weight `beta_edit`) and links, in
            O(P^2) per new point or link.
        """
        l = self.check_gray(l)
        affinity = edit_terms.affinity_matrix(l)
        local_weight = edit_terms.LOCAL_WEIGHT if local_weight is None else local_weight
        extra = local_weight * edit_terms.local_laplacian(affinity)
        prior, weight = self.edit_prior(l, base_ab, prior_weight)
        pixels = self.model_config.image_size ** 2
        if similarity is None:
            similarity = self.similarity(l)
        return EditSession(similarity, None if prior is None else tf.fill([pixels], weight),
                           None if prior is None else prior[0], ridge=self.model_config.ridge,
                           extra=extra, point_weight=self.model_config.beta_edit,
                           affinity=affinity)

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
