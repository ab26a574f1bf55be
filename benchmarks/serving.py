"""Serving benchmark: the exported `sample` signature in process vs through gRPC (`tfgcrf serve`).

    .venv/bin/python benchmarks/serving.py [--model default|PATH.keras] [--requests 16]
    .venv/bin/python benchmarks/serving.py --model-dir models/tfgcrf   # an existing export

Each request colorizes one 256x256 photo (tests/data/fullres/skimage_astronaut.jpg resized, sent
as PNG) into N = 8 PNG samples. Rows:
  * in-process: `tf.saved_model.load(...).signatures["sample"]` called directly (the baseline);
  * gRPC, 1 client: `tfgcrf.serving.Client` -> `tfgcrf serve` (a separate process), one request at
    a time (latency incl. PNG transfer and protobuf conversion);
  * gRPC, 4 and 8 clients: threads with their own Client, concurrently (8 clients on 2 cores is
    an overload test: p99 shows the queueing).
Each row makes `--requests` timed requests after 2 warm-up requests. Throughput is requests over
the wall time of the row; latency percentiles are per request. Ratios are against the in-process
row of the same run. The server and the benchmark share the machine's cores.
"""

import argparse
import concurrent.futures
import io
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

PHOTO = pathlib.Path(__file__).parents[1] / "tests" / "data" / "fullres" / "skimage_astronaut.jpg"
WARMUP_REQUESTS = 2


def photo_png(size):
    buffer = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((size, size), Image.BICUBIC).save(buffer, format="PNG")
    return buffer.getvalue()


def export(model_spec, num_samples, base):
    """Exports `model_spec` to `base/1` (draw mode when N exceeds the mixture components)."""
    from tfgcrf.export.saved_model import export_saved_model
    from tfgcrf.models.loading import load_model

    model = load_model(model_spec)
    mode = "top" if num_samples <= model.model_config.num_components else "draw"
    return export_saved_model(model, os.path.join(base, "1"), num_samples=num_samples, mode=mode)


def timed(calls, requests):
    """Runs `requests` calls spread over one thread per callable of `calls`.

    Returns:
      (wall seconds, per-request seconds).
    """
    def worker(call, count):
        latencies = []
        for _ in range(count):
            start = time.perf_counter()
            call()
            latencies.append(time.perf_counter() - start)
        return latencies

    threads = len(calls)
    shares = [requests // threads + (i < requests % threads) for i in range(threads)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        latencies = [t for part in pool.map(worker, calls, shares) for t in part]
    return time.perf_counter() - start, np.array(latencies)


def row(name, clients, wall, latencies):
    return {
        "name": name,
        "clients": clients,
        "requests": len(latencies),
        "rps": len(latencies) / wall,
        "p50": 1000 * np.percentile(latencies, 50),
        "p99": 1000 * np.percentile(latencies, 99),
    }


def in_process_row(version_dir, image, requests):
    import tensorflow as tf

    sample = tf.saved_model.load(version_dir).signatures["sample"]
    inputs = {"image_bytes": tf.constant([image]), "seed": tf.constant([0], tf.int64)}
    for _ in range(WARMUP_REQUESTS):
        sample(**inputs)
    return row("in-process signature", 1, *timed([lambda: sample(**inputs)], requests))


def grpc_rows(base, image, requests, client_counts):
    from tfgcrf.serving import Client
    from tfgcrf.serving.launcher import ServeProcess

    rows = []
    with ServeProcess(base) as server:
        for clients in client_counts:
            pool = [Client(server.grpc_target, timeout=600) for _ in range(clients)]
            for client in pool:
                for _ in range(WARMUP_REQUESTS):
                    client.sample(image, seed=0)
            calls = [lambda client=client: client.sample(image, seed=0) for client in pool]
            name = f"gRPC, {clients} client{'s' if clients > 1 else ''}"
            rows.append(row(name, clients, *timed(calls, requests)))
            for client in pool:
                client.close()
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="preset name or .keras file to export")
    parser.add_argument("--model-dir", help="serve this existing export base path instead")
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="side of the square request photo")
    parser.add_argument("--requests", type=int, default=16, help="timed requests per row")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8],
                        help="concurrent gRPC clients of each gRPC row (default: 1 4 8)")
    args = parser.parse_args(argv)

    from tfgcrf.export.saved_model import saved_model_bytes
    from tfgcrf.serving.repository import list_versions

    with tempfile.TemporaryDirectory() as scratch:
        base = args.model_dir or os.path.join(scratch, "tfgcrf")
        if not args.model_dir:
            export(args.model, args.num_samples, base)
        versions = list_versions(base)
        if not versions:
            sys.exit(f"no SavedModel version under {base}")
        version_dir = os.path.join(base, str(versions[-1]))
        image = photo_png(args.size)
        rows = [in_process_row(version_dir, image, args.requests)]
        rows += grpc_rows(base, image, args.requests, args.clients)
        size_mb = saved_model_bytes(version_dir) / 2**20

    baseline = rows[0]["rps"]
    print(f"\nsample: {args.size}x{args.size} PNG photo, N={args.num_samples}, "
          f"{args.requests} timed requests per row; SavedModel {size_mb:.2f} MiB ({version_dir})\n")
    print("| path | clients | requests | req/s | p50 ms | p99 ms | req/s vs in-process |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['name']} | {r['clients']} | {r['requests']} | {r['rps']:.2f} | {r['p50']:.0f} | "
              f"{r['p99']:.0f} | {r['rps'] / baseline:.2f}x |")


if __name__ == "__main__":
    main()
