"""Distribution strategies of `tfgcrf train` and the rules of multi-worker training.

`resolve_strategy(name)` builds the `tf.distribute` strategy of `--strategy`:

    auto          MultiWorkerMirroredStrategy when TF_CONFIG names more than one task, else
                  MirroredStrategy when the host has several GPUs, else the default strategy
    one_device    OneDeviceStrategy on the first GPU (or the CPU)
    mirrored      MirroredStrategy over the GPUs of this host (synchronous, all-reduce)
    multi_worker  MultiWorkerMirroredStrategy over the hosts of TF_CONFIG (synchronous)
    tpu           TPUStrategy on the TPU of TPU_NAME / the local TPU VM (construction only:
                  untested here, no TPU)

Multi-worker rules (TensorFlow's "Multi-worker training with Keras" guide): every worker runs the
same program on its shard of the data and all of them take part in every collective; only the
chief (task `chief`, or `worker` 0 when the cluster has no chief) writes the run's outputs
(checkpoints, TensorBoard logs, `model.keras`). The other workers write theirs into a temporary
folder that is deleted right after (`Worker.output_root`), and keep only the state they need to
resume (their own `BackupAndRestore` backups and stage markers) under
`RUN_DIR/workers/<task>-<index>/`. After a restart the chief's state wins: the stage to run, the
epoch to continue from and the weights are broadcast from the chief (`sync_from_chief`).
"""

import json
import os
import shutil
import socket
import time
from pathlib import Path

try:
    import fcntl  # POSIX; elsewhere runs are not locked
except ImportError:  # pragma: no cover
    fcntl = None

import tensorflow as tf

from tfgcrf.config import LEGACY_STRATEGIES, STRATEGIES
from tfgcrf.errors import UserError
WORKERS_DIR = "workers"
TEMP_DIR = "workertemp"
LOCK_FILE = "train.lock"


def cluster_from_env():
    """The `TF_CONFIG` cluster as `(cluster dict, task dict)`, or `(None, None)` when unset."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None, None
    try:
        config = json.loads(raw)
        cluster, task = config.get("cluster") or {}, config.get("task") or {}
    except (ValueError, AttributeError):
        raise UserError("TF_CONFIG is not a JSON object with 'cluster' and 'task'") from None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UserError("TF_CONFIG is not a JSON object with 'cluster' and 'task'")
    return cluster, task


def cluster_size(cluster):
    """Number of tasks that train (chief + workers) in a TF_CONFIG cluster."""
    return sum(len(cluster.get(kind, ())) for kind in ("chief", "worker"))


def resolve_strategy(name, tpu=None):
    """The `tf.distribute.Strategy` named `name` (one of `STRATEGIES`, or "default").

    Args:
        name: the strategy name.
        tpu: TPU address or name for "tpu" (default: $TPU_NAME, else the local TPU VM).

    Raises:
        UserError: unknown name, a TF_CONFIG that does not describe this task, or no TPU.
    """
    if name not in STRATEGIES + LEGACY_STRATEGIES:
        raise UserError(f"strategy must be one of {list(STRATEGIES)}, got {name!r}")
    if name == "auto":
        cluster, _ = cluster_from_env()
        if cluster and cluster_size(cluster) > 1:
            name = "multi_worker"
    # Collective ops must be configured before TensorFlow's runtime starts, so the multi-worker
    # strategy is built before anything lists the devices.
    if name == "multi_worker":
        return _multi_worker_strategy()
    if name == "tpu":
        return _tpu_strategy(tpu)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _multi_worker_strategy():
    cluster, task = cluster_from_env()
    if cluster is not None:
        kind, index = task.get("type"), task.get("index", 0)
        if kind not in ("chief", "worker") or not isinstance(index, int) or not (
            0 <= index < len(cluster.get(kind, ()))
        ):
            raise UserError(
                f"TF_CONFIG task {task!r} is not a chief or worker of its cluster {cluster!r}"
            )
    try:
        # Without TF_CONFIG this is a one-worker cluster (the local devices), as in TensorFlow.
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (ValueError, tf.errors.OpError, RuntimeError) as err:
        raise UserError(f"could not start the multi-worker cluster of TF_CONFIG: {_first_line(err)}") from None


def _tpu_strategy(tpu):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError, RuntimeError) as err:
        raise UserError(f"no TPU available for --strategy tpu: {_first_line(err)}") from None
    return tf.distribute.TPUStrategy(resolver)


def _first_line(err):
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def is_multi_worker(strategy):
    """True for a MultiWorkerMirroredStrategy with more than one worker."""
    extended = strategy.extended
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        getattr(extended, "_in_multi_worker_mode", lambda: False)()
    )


class Worker:
    """This process's role in the cluster and where it may write.

    Args:
        strategy: the training strategy.
        run_dir: the run folder given on the command line (the chief's outputs go there).
    """

    def __init__(self, strategy, run_dir):
        resolver = getattr(strategy, "cluster_resolver", None)
        self.task_type = getattr(resolver, "task_type", None)
        self.task_id = getattr(resolver, "task_id", None) or 0
        self.multi_worker = is_multi_worker(strategy)
        self.is_chief = bool(strategy.extended.should_checkpoint) or not self.multi_worker
        self.run_dir = Path(run_dir)
        if self.is_chief:
            self.state_root = self.run_dir
        else:
            self.state_root = self.run_dir / WORKERS_DIR / f"{self.task_type}-{self.task_id}"

    @property
    def name(self):
        return "chief" if self.is_chief else f"{self.task_type} {self.task_id}"

    @property
    def output_root(self):
        """Where outputs go: the run folder (chief), or a temporary folder (other workers)."""
        return self.state_root if self.is_chief else self.state_root / TEMP_DIR

    def lock(self):
        """Holds this process's state folder for the run (`RunLock`); each worker locks its own."""
        return RunLock(self.state_root)

    def discard_outputs(self):
        """Deletes a non-chief worker's temporary outputs (no-op on the chief)."""
        if not self.is_chief:
            shutil.rmtree(self.output_root, ignore_errors=True)


class RunLock:
    """An exclusive lock on a run's state folder for one training process (a context manager).

    Two `tfgcrf train` processes on one folder would resume from each other's backups and
    overwrite each other's stage results (a retried job, a run thought hung): the second is
    refused in one line naming the holder. The lock is the kernel's (`flock` on `train.lock`),
    released when the process ends however it ends, so a killed run leaves no stale lock.

    Raises:
        UserError: another process holds the folder.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self._file = None

    def __enter__(self):
        if fcntl is None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_FILE, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process (BlockingIOError)
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(
                f"{self.folder} is in use by another training run ({holder}); wait for it to end "
                "or stop it, or give another --run-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc):
        if self._file is not None:
            self._file.close()  # closing releases the flock
            self._file = None


_BROADCASTS = {}


def _broadcast_function(strategy):
    """One traced broadcast of a float64 vector per strategy (`[None]`: traced once)."""
    key = id(strategy)
    if key not in _BROADCASTS:

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float64)])
        def broadcast(vector):
            def step(vector):
                context = tf.distribute.get_replica_context()
                first = tf.equal(context.replica_id_in_sync_group, 0)
                masked = tf.where(first, vector, tf.zeros_like(vector))
                return context.all_reduce(tf.distribute.ReduceOp.SUM, masked)

            return strategy.run(step, args=(vector,))

        _BROADCASTS[key] = (strategy, broadcast)
    return _BROADCASTS[key][1]


def broadcast_from_chief(strategy, tensors):
    """The chief's values of `tensors` (a list of tensors of this worker), on every worker.

    Replica 0 of the sync group lives on the chief; every replica contributes the tensors
    (flattened into one float64 vector: exact for float32 and for integers below 2^53) if it is
    replica 0 and zeros otherwise, and the sum is all-reduced. Every worker must call it at the
    same point (it is a collective). Without several replicas the tensors come back unchanged.
    """
    tensors = [tf.convert_to_tensor(t) for t in tensors]
    if strategy.num_replicas_in_sync < 2 or not tensors:
        return tensors
    vector = tf.concat([tf.reshape(tf.cast(t, tf.float64), [-1]) for t in tensors], axis=0)
    summed = strategy.experimental_local_results(_broadcast_function(strategy)(vector))[0]
    parts = tf.split(summed, [int(tf.size(t)) for t in tensors])
    return [tf.cast(tf.reshape(part, tf.shape(t)), t.dtype) for part, t in zip(parts, tensors)]


def sync_from_chief(strategy, variables):
    """Assigns the chief's values of `variables` (model or optimizer state) on every worker."""
    kinds = (tf.float16, tf.float32, tf.float64, tf.int32, tf.int64)
    variables = [v for v in variables if v.dtype in kinds]
    values = broadcast_from_chief(strategy, [v.value for v in variables])
    if strategy.num_replicas_in_sync < 2:
        return
    for variable, value in zip(variables, values):
        variable.assign(value)


def chief_value(strategy, value):
    """The chief's value of the Python int `value`, on every worker."""
    (result,) = broadcast_from_chief(strategy, [tf.constant(int(value), tf.int64)])
    return int(result.numpy())
