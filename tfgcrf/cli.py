"""The `tfgcrf` command line: one sub-command per module.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Command modules import TensorFlow inside `run`, so `tfgcrf --help` does not load it.
"""

import argparse
import errno
import importlib
import os
import re
import sys
import tempfile

from tfgcrf import __version__
from tfgcrf.errors import UserError

# name -> module; the order is the order of `tfgcrf --help`.
COMMANDS = {
    "demo": "tfgcrf.commands.demo",
    "colorize": "tfgcrf.commands.colorize",
    "edit": "tfgcrf.commands.edit",
    "studio": "tfgcrf.commands.studio",
    "train": "tfgcrf.trainers.cli",
    "evaluate": "tfgcrf.commands.evaluate",
    "export": "tfgcrf.export.cli",
    "serve": "tfgcrf.serving.cli",
    "data": "tfgcrf.commands.data",
}


def _load_commands():
    modules = {}
    for name, module_name in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # A command whose module is not written yet is simply not offered.
            if err.name != module_name:
                raise
    return modules


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfgcrf",
        description="Diverse, structurally consistent and controllable image colorization "
        "(G-CRF VAE-MDN, Messaoud et al., ECCV 2018).",
    )
    parser.add_argument("--version", action="version", version=f"tfgcrf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _load_commands().items():
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


# Lines TensorFlow's C++ runtime writes to fd 2 at start-up, before any logging setting applies
# (TF_CPP_MIN_LOG_LEVEL does not silence them in TF 2.21): start-up chatter, not user information.
# Two of them are ERROR lines although nothing is wrong: the failed cuInit of a machine without a
# GPU driver (TensorFlow then runs on the CPU, as its INFO line just before says) and oneDNN's
# one-time note that uint8 ops fall back to Eigen on CPUs without AVX-512.
_STARTUP_NOISE = re.compile(
    rb"^(I0000 |WARNING: All log messages before absl|To enable the following"
    rb"|E0000 [\d:.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit"
    rb"|E0000 [\d:.]+ +\d+ util\.cc:\d+\] oneDNN supports DT_)")


def _import_tensorflow_quietly(warm_up=True):
    """Imports TensorFlow with its start-up chatter (`_STARTUP_NOISE`) filtered out of stderr; the
    rest passes.

    Inside the same filter it lists the devices (where TensorFlow logs a failed cuInit) and, with
    `warm_up`, runs one uint8 graph op (where oneDNN logs its one-time uint8 note, which would
    otherwise precede the first photo's output or error line). The warm-up initializes
    TensorFlow's runtime context, so `tfgcrf train` skips it: its `tf.distribute` strategies
    configure the context first.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
            if warm_up:
                tf.function(tf.transpose)(tf.zeros([2, 3], tf.uint8))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [ln for ln in captured.read().splitlines(True) if not _STARTUP_NOISE.match(ln)]
            if kept:
                sys.stderr.write(b"".join(kept).decode(errors="replace"))


# Infrastructure failures a user can act on, as one line (no traceback).
_OS_ERRORS = {
    errno.EADDRINUSE: "address already in use (another server or worker on this port?)",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a parent of the path is a file, not a folder",
}
# TensorFlow runtime errors that are about the machine or the cluster, not about the program.
_TF_INFRASTRUCTURE_ERRORS = (
    "UnavailableError", "ResourceExhaustedError", "PermissionDeniedError", "DataLossError",
    "DeadlineExceededError", "AbortedError",
)


def infrastructure_error(err):
    """One line describing an OS or TensorFlow infrastructure error, or None for other errors."""
    if isinstance(err, OSError):
        what = _OS_ERRORS.get(err.errno) or err.strerror or _first_line(err)
        if err.errno is None and "errno = 28" in str(err):  # HDF5 wraps ENOSPC in its own text
            what = _OS_ERRORS[errno.ENOSPC]
        where = err.filename or ""
        if err.filename2:
            where += f" -> {err.filename2}"
        return f"{what}: {where}" if where else what
    if type(err).__name__ in _TF_INFRASTRUCTURE_ERRORS and type(err).__module__.startswith("tensorflow"):
        return f"{type(err).__name__}: {_first_line(err)}"
    return None


def _first_line(err):
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


# Options whose value is a list of pixel coordinates, which may start with a minus sign.
_COORDINATE_OPTIONS = ("--point", "--link")


def _attach_coordinate_values(argv):
    """`--point -5,10,#ff0000` -> `--point=-5,10,#ff0000`: argparse takes a value starting with
    '-' for an option unless it is a plain number, which would make a negative coordinate an
    "expected one argument" usage error instead of the command's "outside the image" message."""
    attached = []
    for arg in argv:
        if attached and attached[-1] in _COORDINATE_OPTIONS and re.match(r"-\d", arg):
            attached[-1] = f"{attached[-1]}={arg}"
        else:
            attached.append(arg)
    return attached


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    parser = build_parser()
    try:  # option types (e.g. `edit --point`) refuse malformed values with a UserError
        args = parser.parse_args(_attach_coordinate_values(sys.argv[1:] if argv is None else argv))
    except UserError as err:
        print(f"tfgcrf: error: {err}", file=sys.stderr)
        return err.exit_code
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        _import_tensorflow_quietly(warm_up=args.command != "train")
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"tfgcrf: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("tfgcrf: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # only infrastructure errors; anything else keeps its traceback
        line = infrastructure_error(err)
        if line is None or os.environ.get("TFGCRF_DEBUG"):
            raise
        print(f"tfgcrf: error: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
