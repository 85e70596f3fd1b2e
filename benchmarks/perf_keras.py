"""``fit`` against tf.keras and Keras 3, same model, same data, epochs interleaved.

The textbook's model (100 dense SELU layers of 100, LeCun normal, softmax output), SGD lr 1e-3
with momentum 0.9, batch 32, the same 4000 random samples (784 features, 10 classes; NumPy seed 0)
in every framework: 125 steps an epoch. Each framework runs in a worker process of its own,
started once; the driver asks the workers for one epoch each in turn, round after round, so the
shared machine's noise hits all alike. Every worker runs on the same number of threads. An
epoch's time is the training loop's own (``History`` seconds for ``fit``, a callback's for Keras),
the first round (tracing, compilation) is dropped, medians of the rest.

Workers: ``fit`` as users call it (defaults; ``optimizer="sgd"``), ``fit(compile=True)``, ``fit``
with the monitor off, the hand-written PyTorch loop, and Keras 3 on each backend installed
(tensorflow, jax, torch). In TensorFlow 2.16 and later ``tf.keras`` *is* Keras 3 on the
TensorFlow backend, so the tf.keras worker is the textbook's stack as it installs today.
Needs the ``bench`` extra (``pip install -e '.[bench]'``): without TensorFlow/Keras those
workers are skipped, and the script says so.

Target: ``fit`` faster than tf.keras and than Keras 3 on its fastest backend.
Run: python benchmarks/perf_keras.py [--rounds 6] [--threads 1] [--quick]
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _checks import Check, context, emit, parser, setup, table

SAMPLES, FEATURES, CLASSES = 4000, 784, 10
TORCH_WORKERS = ("fit (defaults)", "fit, monitor=False", "fit(compile=True)", "hand-written PyTorch loop")
KERAS_BACKENDS = ("tensorflow", "jax", "torch")


def data(samples: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.standard_normal((samples, FEATURES), dtype=np.float32), rng.integers(0, CLASSES, samples)


# -- workers: each reads "epoch" lines and answers with the epoch's seconds -----------------------
def torch_worker(kind: str, threads: int, depth: int, samples: int) -> None:
    import torch

    from trainability import Monitor, fit, mlp
    from trainability.training import make_optimizer

    torch.set_num_threads(threads)
    x, y = (torch.from_numpy(a) for a in data(samples))
    torch.manual_seed(0)
    model = mlp(FEATURES, CLASSES, depth=depth, width=100, activation="selu")
    if kind == "hand-written PyTorch loop":
        sys.path.insert(0, str(Path(__file__).parent))
        from perf_fit_loop import loop_epoch

        sgd = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def epoch(e: int) -> float:
            return loop_epoch(model, sgd, x, y)
    else:
        opt = make_optimizer("sgd", model, lr=1e-3, momentum=0.9)  # what fit(optimizer="sgd") builds
        compiled = kind == "fit(compile=True)"
        # one Monitor across the one-epoch calls, so that its default schedule runs as in one long fit
        monitor = Monitor(model) if kind == "fit (defaults)" else False

        def epoch(e: int) -> float:
            history = fit(model, (x, y), epochs=1, batch_size=32, optimizer=opt, seed=e, progress=False,
                          monitor=monitor, compile=compiled)  # fmt: skip
            return history.epochs[0]["seconds"]

    serve(epoch)


def keras_worker(backend: str, threads: int, depth: int, samples: int) -> None:
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend == "jax" and threads == 1:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        keras = tf.keras  # the textbook's spelling; Keras 3 in TensorFlow >= 2.16
    else:
        import keras
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    x, y = data(samples)
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(100, activation="selu", kernel_initializer="lecun_normal") for _ in range(depth)]
    model = keras.Sequential([keras.Input((FEATURES,)), *layers, keras.layers.Dense(CLASSES, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  optimizer=keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9))  # fmt: skip

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    timer = Timer()

    def epoch(e: int) -> float:
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[timer])
        return timer.seconds

    serve(epoch)


def serve(epoch) -> None:
    print("ready", flush=True)
    for e, line in enumerate(sys.stdin):
        if line.strip() != "epoch":
            break
        print(f"{epoch(e):.6f}", flush=True)


# -- driver ---------------------------------------------------------------------------------------
class Worker:
    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.proc = subprocess.Popen([sys.executable, __file__, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        self.error = ""

    def wait_ready(self) -> None:
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.error = ((self.proc.stderr.read() or line).strip().splitlines() or ["exited"])[-1]

    def epoch(self) -> float:
        self.proc.stdin.write("epoch\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=60)


def available_backends() -> tuple[list[str], list[str]]:
    found, missing = [], []
    if importlib.util.find_spec("keras") is None:
        return [], ["keras is not installed (pip install -e '.[bench]')"]
    for backend, module in (("tensorflow", "tensorflow"), ("jax", "jax"), ("torch", "torch")):
        (found if importlib.util.find_spec(module) else missing).append(backend)
    return found, [f"Keras 3 on {b}: {b} is not installed" for b in missing]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=6, help="epochs per worker, the first one a warm-up")
    p.add_argument("--worker", help=argparse_hidden())
    args = p.parse_args()
    depth, samples = (5, 640) if args.quick else (100, SAMPLES)
    if args.worker:
        kind, _, backend = args.worker.partition(":")
        if kind == "keras":
            keras_worker(backend, args.threads, depth, samples)
        else:
            torch_worker(kind, args.threads, depth, samples)
        return
    from _results import machine, write_section

    started = setup(args)
    rounds = 2 if args.quick else args.rounds
    flag = ["--quick"] if args.quick else []
    backends, skipped = available_backends()
    names = {k: [f"--worker={k}"] for k in TORCH_WORKERS}
    names |= {("tf.keras (TensorFlow backend)" if b == "tensorflow" else f"Keras 3, {b} backend"): [f"--worker=keras:{b}"] for b in backends}
    if args.quick:
        del names["fit(compile=True)"]  # its warm-up alone outlasts a smoke run; perf_compile.py times it
    started_workers = [Worker(name, [*argv, f"--threads={args.threads}", *flag]) for name, argv in names.items()]
    workers = []
    for w in started_workers:  # they start (imports, model building) side by side; timing starts later
        w.wait_ready()
        if w.error:
            skipped.append(f"{w.name}: {w.error}")
            w.close()
        else:
            workers.append(w)
    times: dict[str, list[float]] = {w.name: [] for w in workers}
    for r in range(rounds):
        for w in workers[r % len(workers):] + workers[: r % len(workers)]:  # each round starts one worker later
            times[w.name].append(w.epoch())
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()), flush=True)
    for w in workers:
        w.close()
    med = {n: statistics.median(t[1:]) for n, t in times.items()}
    fit_s = med["fit (defaults)"]
    rows = "\n".join(f"| {n} | {times[n][0]:.2f} | {med[n]:.3f} | {min(times[n][1:]):.3f}-{max(times[n][1:]):.3f} | {med[n] / fit_s:.2f}x |"
                     for n in sorted(med, key=med.get))  # fmt: skip
    checks = []
    tf_name = "tf.keras (TensorFlow backend)"
    keras_names = [n for n in med if n.startswith(("tf.keras", "Keras 3"))]
    if tf_name in med:
        checks.append(Check("fit (defaults) vs tf.keras: speed (tf.keras time / fit time)", "> 1.00x (faster)",
                            f"{med[tf_name] / fit_s:.2f}x", med[tf_name] / fit_s > 1))  # fmt: skip
    if keras_names:
        fastest = min(keras_names, key=med.get)
        checks.append(Check(f"fit (defaults) vs Keras 3 on its fastest backend here ({fastest})", "> 1.00x (faster)",
                            f"{med[fastest] / fit_s:.2f}x", med[fastest] / fit_s > 1))  # fmt: skip
        best = min((n for n in med if n.startswith("fit")), key=med.get)
        if tf_name in med:
            checks.append(Check(f"fastest fit variant ({best}) vs tf.keras", "reported", f"{med[tf_name] / med[best]:.2f}x", None))
        checks.append(Check(f"fastest fit variant ({best}) vs {fastest}", "reported", f"{med[fastest] / med[best]:.2f}x", None))
    for c in checks:
        if c.passed is False:
            c.note = ("per-op overhead: eager PyTorch dispatches every op of the step from Python, where Keras "
                      "runs the whole step as one compiled graph (tf.function / XLA)")  # fmt: skip
    emit("perf_keras", checks)
    skip_text = ("\n\nNot measured: " + "; ".join(skipped) + ".") if skipped else ""
    body = f"""## `fit` vs tf.keras and Keras 3 (`benchmarks/perf_keras.py`)

The textbook's model ({depth} dense SELU layers of 100, LeCun normal), SGD lr 1e-3 momentum 0.9,
batch 32, the same {samples} random samples everywhere ({samples // 32} steps an epoch); one worker
process per framework, {args.threads} thread(s) each, epochs interleaved round by round; the first
round (tracing/compiling) dropped, medians of {rounds - 1} epochs. "vs fit": time per epoch over
`fit`'s (above 1: slower than `fit`).

| framework | first epoch s | s / epoch (median) | range | vs fit |
|---|---|---|---|---|
{rows}

{table(checks) if checks else "No Keras worker ran: the comparison needs the bench extra."}{skip_text}

What was tried to close the gap, each a row above: a fused optimizer step (`fit(optimizer="sgd")`
now builds `torch.optim.SGD(..., fused=True)`; the hand-written loop with torch's default SGD
shows what it saves), the monitor off (fewer per-step Python operations), and `compile=True`
(its warm-up, and the cache that shortens it on a rerun, in `benchmarks/perf_compile.py`).

{context(started, machine())}
"""
    write_section("perf_keras", body)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
