"""`tfgcrf serve`: TF Serving's gRPC and REST APIs for an exported model, for development."""

import errno
import logging
import os
import signal
import socket
import sys
import threading

from tfgcrf.errors import UserError

HELP = "serve an exported model with TF Serving's gRPC and REST APIs (local development server)"

# The line printed once the server listens (parsed by `tfgcrf.serving.launcher` with port 0).
READY_LINE = "serving model {name} version {version} on grpc={host}:{grpc_port} rest=http://{host}:{rest_port}"
READY_PATTERN = (
    r"serving model (?P<name>\S+) version (?P<version>\S+) on grpc=(?P<grpc>\S+) rest=(?P<rest>\S+)"
)


def add_arguments(parser):
    parser.add_argument(
        "--model-dir",
        default="models/tfgcrf",
        help="model base path holding numeric version folders; the newest is served and a newer "
        "one is picked up without a restart (default: %(default)s)",
    )
    parser.add_argument(
        "--model-name", help="model name in requests (default: the model dir's folder name)"
    )
    parser.add_argument("--grpc-port", type=int, default=8500, help="gRPC port, 0 = any free port")
    parser.add_argument("--rest-port", type=int, default=8501, help="REST port, 0 = any free port")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default: loopback only; use 0.0.0.0 to expose it)",
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=1.0, help="how often to look for a new version"
    )
    # Named after TF Serving's flags and BatchingParameters, with their defaults where they apply.
    parser.add_argument(
        "--max-num-load-retries", type=int, default=5,
        help="retries of a version that failed to load, as TF Serving (default: %(default)s); a "
        "version whose files change is tried again anyway",
    )
    parser.add_argument(
        "--load-retry-interval-micros", type=int, default=60_000_000,
        help="wait between two load attempts of a version (default: %(default)s = 1 minute)",
    )
    parser.add_argument(
        "--batching-parameters-file",
        help="TF Serving's text BatchingParameters (e.g. serving/batching.config): its "
        "max_batch_size, num_batch_threads and max_enqueued_batches become the defaults of the "
        "three flags below",
    )
    parser.add_argument(
        "--max-batch-size", type=int,
        help="largest batch (first dimension) one request may carry (default: 64)",
    )
    parser.add_argument(
        "--num-batch-threads", type=int,
        help=f"requests computed at the same time (default: CPU count, {os.cpu_count() or 1})",
    )
    parser.add_argument(
        "--max-enqueued-batches", type=int,
        help="requests that may wait for a free thread; beyond, RESOURCE_EXHAUSTED / HTTP 429 "
        "(default: 10)",
    )
    parser.add_argument(
        "--rest-api-timeout-in-ms", type=int, default=30_000,
        help="deadline of a REST request; work stops when it passes (default: %(default)s)",
    )
    parser.add_argument(
        "--rest-api-num-threads", type=int, default=4 * (os.cpu_count() or 1),
        help="REST worker threads (default: 4 per CPU, %(default)s)",
    )
    parser.add_argument(
        "--rest-max-body-bytes", type=int, default=64 * 1024 * 1024,
        help="largest REST request body, larger ones get HTTP 413 (default: %(default)s)",
    )
    parser.add_argument(
        "--stop-grace-seconds", type=float, default=5.0,
        help="on SIGTERM / SIGINT, how long running requests may finish before they are "
        "cancelled (UNAVAILABLE / HTTP 503); new ones are refused at once (default: %(default)s)",
    )


def _batching(args):
    """max_batch_size, num_batch_threads, max_enqueued_batches: flag, else file, else default."""
    values = {"max_batch_size": 64, "num_batch_threads": os.cpu_count() or 1, "max_enqueued_batches": 10}
    if args.batching_parameters_file:
        from tfgcrf.serving.limits import read_batching_parameters

        values.update(read_batching_parameters(args.batching_parameters_file)[1])
    for name in values:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return values


def run(args):
    for flag in ("grpc_port", "rest_port"):
        if not 0 <= getattr(args, flag) <= 65535:
            raise UserError(f"--{flag.replace('_', '-')} must be in 0..65535")
    if args.poll_seconds < 0:
        raise UserError("--poll-seconds must be >= 0")
    if not args.stop_grace_seconds >= 0:
        raise UserError("--stop-grace-seconds must be >= 0")
    batching = _batching(args)
    for flag, minimum in (("max_num_load_retries", 0), ("load_retry_interval_micros", 0),
                          ("max_batch_size", 1), ("num_batch_threads", 1),
                          ("max_enqueued_batches", 0), ("rest_api_timeout_in_ms", 1),
                          ("rest_api_num_threads", 1), ("rest_max_body_bytes", 1)):
        value = batching.get(flag, getattr(args, flag, None))
        if value < minimum:
            raise UserError(f"--{flag.replace('_', '-')} must be >= {minimum}")
    if os.path.exists(args.model_dir) and not os.path.isdir(args.model_dir):
        raise UserError(f"model dir {args.model_dir} is a file, not a folder: pass the folder holding "
                        "the numbered versions (e.g. models/tfgcrf for models/tfgcrf/1)")
    if not os.path.isdir(args.model_dir):
        raise UserError(f"model dir {args.model_dir} does not exist (export a model with `tfgcrf export`)")
    if os.path.isfile(os.path.join(args.model_dir, "saved_model.pb")):
        parent = os.path.dirname(os.path.normpath(args.model_dir)) or "."
        raise UserError(f"model dir {args.model_dir} is a model version (it holds saved_model.pb): "
                        f"pass the folder holding the numbered versions, --model-dir {parent}")
    model_name = args.model_name or os.path.basename(os.path.normpath(os.path.abspath(args.model_dir)))

    # The ports are tried before the model is loaded (minutes for a big model): a port in use
    # is one line and exit code 1 at once, not a gRPC traceback after the load.
    for port in (args.grpc_port, args.rest_port):
        check_port_free(args.host, port)

    from tfgcrf.serving.limits import BatchingParameters
    from tfgcrf.serving.server import ModelServer

    logging.basicConfig(level=logging.INFO, format="tfgcrf serve: %(message)s")
    server = ModelServer(
        args.model_dir,
        model_name,
        host=args.host,
        grpc_port=args.grpc_port,
        rest_port=args.rest_port,
        poll_seconds=args.poll_seconds,
        batching=BatchingParameters(**batching),
        max_num_load_retries=args.max_num_load_retries,
        load_retry_interval_seconds=args.load_retry_interval_micros / 1e6,
        rest_timeout_seconds=args.rest_api_timeout_in_ms / 1000,
        rest_num_threads=args.rest_api_num_threads,
        rest_max_body_bytes=args.rest_max_body_bytes,
        stop_grace_seconds=args.stop_grace_seconds,
    )
    try:
        server.start()
    except RuntimeError as err:  # grpcio >= 1.6x: "Failed to bind to address ..." (a race with
        # the check above); an OSError (the REST port) goes to the CLI's one-line exit code 1
        raise OSError(errno.EADDRINUSE, str(err), f"{args.host}:{args.grpc_port}") from None
    version = server.repository.refresh()
    waiting = "" if version is not None else f" (no version under {args.model_dir} yet: waiting)"
    ready = READY_LINE.format(name=model_name, version=version, host=args.host,
                              grpc_port=server.grpc_port, rest_port=server.rest_port)
    print(ready + waiting, flush=True)
    received = wait_for_stop_signal()
    running, waiting = server.predictor.queue.load
    logging.getLogger("tfgcrf.serve").info(
        "%s: stopping; new requests are refused, %d running and %d waiting get up to %g s, "
        "then are cancelled", received.name, running, waiting, args.stop_grace_seconds)
    server.stop()
    # Nothing is left to save: skip the interpreter's teardown of TensorFlow and gRPC (seconds,
    # more with a big model loaded).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if received == signal.SIGTERM else 128 + received)


def check_port_free(host, port):
    """Raises OSError (EADDRINUSE, naming host:port) when `port` cannot be bound on `host`; port 0
    (any free port) and None (no server) pass."""
    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except OSError as err:
            raise OSError(err.errno, err.strerror, f"{host}:{port}") from None


def wait_for_stop_signal():
    """Blocks until SIGTERM or SIGINT arrives; returns it. A second one exits at once (code 1)."""
    arrived = []
    done = threading.Event()

    def handler(number, frame):
        if arrived:
            os._exit(1)
        arrived.append(signal.Signals(number))
        done.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, handler)
    while not done.wait(0.5):
        pass
    return arrived[0]
