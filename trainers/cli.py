"""`tfgcrf train`: the three-stage training of the G-CRF VAE-MDN colorizer."""

from pathlib import Path

HELP = "train the G-CRF VAE-MDN model (stages vae -> hoc -> mdn), resumable"


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
    parser.add_argument(
        "--run-dir",
        help="run directory holding checkpoints, logs and model.keras; re-running the same "
        "command resumes there (default: runs/CONFIG_NAME)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-batch progress bar")


def run(args):
    import sys

    from tfgcrf.config import load_config
    from tfgcrf.trainers.training import train

    config = load_config(args.config)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / config.name

    def log(message):
        print(f"tfgcrf train: {message}", file=sys.stderr, flush=True)

    log(f"config {config.name}, run dir {run_dir}")
    train(config, run_dir, stage=args.stage, data_source=args.data,
          verbose=2 if args.quiet else "auto", log=log)
    return 0
