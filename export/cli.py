"""`tfgcrf export`: a trained model -> a TF Serving model version folder (SavedModel)."""

from tfgcrf.commands.colorize import add_dtype_argument

HELP = "export a trained model as a TF Serving SavedModel with `sample` and `edit` signatures"


def add_arguments(parser):
    parser.add_argument(
        "--model",
        default="default",
        help="a .keras file, a folder holding model.keras, or a preset name (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="version folder to create, BASE/VERSION with an integer VERSION, e.g. models/tfgcrf/1",
    )
    parser.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="N, samples per `sample` request (default: 8, or the model's mixture components in "
        "--mode top if it has fewer)",
    )
    parser.add_argument(
        "--mode",
        choices=("top", "draw"),
        default="top",
        help="'top': the N most probable mixture components (seed unused); 'draw': N codes drawn "
        "from the mixture with the request's seed (default: top)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="largest request image accepted, in pixels (default: the package's limit, "
        "tfgcrf.imageio.MAX_PIXELS = 25,000,000)",
    )
    parser.add_argument(
        "--edit-solver",
        choices=("cg", "cholesky"),
        default="cg",
        help="G-CRF solver of the served edits' grid system: 'cg', two-level conjugate gradients on "
        "products with S (default; 19-31 iterations with the default preset); 'cholesky', a dense "
        "(I - S)^T (I - S) factored per request (~5 more CPU-s per edit), for a model whose CG "
        "needs too many iterations (README 'Serving speed')",
    )
    add_dtype_argument(parser)
    propagation = parser.add_mutually_exclusive_group()
    propagation.add_argument(
        "--propagation",
        dest="propagate",
        action="store_true",
        default=True,
        help="edits with the full-resolution propagation, as `tfgcrf edit` and Colorizer.edit "
        "(default)",
    )
    propagation.add_argument(
        "--no-propagation",
        dest="propagate",
        action="store_false",
        help="edits without it (the grid answer + point refinement, as Colorizer.edit(..., "
        "propagate=False)): less CPU per edit request, see README 'Serving speed'",
    )


def run(args):
    from tfgcrf.colorizer import Colorizer
    from tfgcrf.export.saved_model import export_saved_model, saved_model_bytes, version_folder
    from tfgcrf.export.signatures import DEFAULT_MAX_PIXELS
    from tfgcrf.models.loading import load_model

    version_folder(args.out)  # fail on a bad --out before the slow model load
    model = load_model(args.model, dtype=args.dtype)
    colorizer = Colorizer(model)
    args.num_samples = colorizer.sample_count(args.num_samples, args.mode,
                                              flags=("--num-samples", "--mode"))
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    out = export_saved_model(model, args.out, args.num_samples, args.mode, max_pixels,
                             propagate=args.propagate, edit_solver=args.edit_solver)
    size_mb = saved_model_bytes(out) / 2**20
    print(f"exported {out} ({size_mb:.1f} MiB): signatures sample (= serving_default), edit, "
          f"edit_links, sample_tensor; N={args.num_samples}, mode={args.mode}, max {max_pixels} "
          f"pixels, edits {'with' if args.propagate else 'without'} the propagation (grid solver "
          f"{args.edit_solver}), layers in "
          f"{model.backbone.dtype_policy.name}")
    return 0
