"""`tfgcrf train`: the three-stage training of the G-CRF VAE-MDN colorizer."""

import dataclasses
from pathlib import Path

HELP = "train the G-CRF VAE-MDN model (stages vae -> hoc -> mdn), resumable, on 1..N devices/hosts"

STRATEGY_HELP = (
    "distribution (default: the config's, auto): auto (multi_worker when TF_CONFIG names several "
    "tasks, mirrored with several GPUs, else one device), one_device, mirrored (the GPUs of this "
    "host), multi_worker (the hosts of TF_CONFIG; run the same command on each) or tpu "
    "(TPUStrategy; untested)"
)


def add_arguments(parser):
    parser.add_argument(
        "--config",
        required=True,
        help="experiment YAML file, or the name of a packaged config "
        "(smoke, default64, lfw64, church64, imagenet64)",
    )
    parser.add_argument(
        "--stage",
        default="all",
        choices=["vae", "hoc", "mdn", "all"],
        help="train up to and including this stage (default: all); completed stages are skipped",
    )
    parser.add_argument(
        "--data", help="override the config's data source (folder, tfds:NAME[/CONFIG], offline)"
    )
    parser.add_argument("--data-dir", metavar="DIR",
                        help="TFDS data folder (tfds: sources) or collection folder (offline)")
    parser.add_argument("--manual-dir", metavar="DIR",
                        help="TFDS manual-download folder (e.g. holding lfw.tgz, or the built "
                        "offline collection for tfds:tfgcrf_offline)")
    parser.add_argument("--train-split", metavar="SPLIT",
                        help="training split, a TFDS split string (e.g. train, train[:90%%])")
    parser.add_argument("--val-split", metavar="SPLIT",
                        help="validation split (e.g. validation, train[90%%:]; '' for none)")
    parser.add_argument(
        "--run-dir",
        help="run directory holding checkpoints, logs and model.keras; re-running the same "
        "command resumes there (default: runs/CONFIG_NAME)",
    )
    parser.add_argument(
        "--init-weights", metavar="MODEL",
        help="start every stage from the weights of a trained model of the same architecture "
        "(a preset name such as default, a model folder or a .keras file) instead of random "
        "ones: fine-tuning (completed stages and resume state still win)",
    )
    parser.add_argument("--strategy", choices=("auto", "one_device", "mirrored", "multi_worker", "tpu"),
                        help=STRATEGY_HELP)
    parser.add_argument("--tpu", metavar="NAME", help="TPU name or address for --strategy tpu "
                        "(default: $TPU_NAME or the local TPU VM)")
    parser.add_argument("--mixed-precision", action="store_true", default=None,
                        help="mixed_float16 compute with float32 variables and loss scaling "
                        "(GPUs/TPUs); the G-CRF solve stays float32")
    parser.add_argument("--quiet", action="store_true", help="no per-batch progress bar")


def overrides(config, args):
    """`config` with the command line's data, split, strategy and precision options applied."""
    data = {}
    for flag, field in (("data", "source"), ("data_dir", "data_dir"), ("manual_dir", "manual_dir"),
                        ("train_split", "train_split"), ("val_split", "val_split")):
        value = getattr(args, flag, None)
        if value is not None:
            data[field] = value
    top = {}
    if getattr(args, "strategy", None):
        top["strategy"] = args.strategy
    if getattr(args, "mixed_precision", None):
        top["mixed_precision"] = True
    return dataclasses.replace(config, data=dataclasses.replace(config.data, **data), **top)


def run(args):
    import sys
    import warnings

    from tfgcrf.config import load_config
    from tfgcrf.trainers.training import train

    def log(message):
        print(f"tfgcrf train: {message}", file=sys.stderr, flush=True)

    with warnings.catch_warnings(record=True) as notices:
        warnings.simplefilter("always", FutureWarning)
        config = overrides(load_config(args.config), args)
    for notice in notices:  # e.g. training keys of an older config under model:, one line each
        log(f"note: {notice.message}")
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / config.name

    strategy = None
    if config.strategy == "tpu":
        from tfgcrf.trainers.distribute import resolve_strategy

        strategy = resolve_strategy("tpu", tpu=args.tpu)
    # Keras's progress bar redraws one line with color codes: only for a terminal.
    interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    verbose = 1 if interactive and not args.quiet else 2
    log(f"config {config.name}, run dir {run_dir}")
    train(config, run_dir, stage=args.stage, strategy=strategy, verbose=verbose, log=log,
          init_weights=args.init_weights)
    return 0
