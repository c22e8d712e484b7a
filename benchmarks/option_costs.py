"""The cost of fit's options on W1, interleaved in one process.

``run.py`` measures each implementation in a process of its own, one after
another, so on a shared machine a change of load between two processes
reads as a difference of speed. This script builds the annjax
implementations the ``ema`` and ``flax-track`` workloads name (the same
factories, options and W1 data as ``run.py``), compiles each with a
one-epoch warm-up, then times them in interleaved rounds of one epoch each,
so the load hits every setting alike::

    python benchmarks/option_costs.py             # W1, 5 rounds
    python benchmarks/option_costs.py --quick     # small data, 2 rounds

It prints, per implementation, the median samples/s by wall time and by
process CPU time (the CPU column is the one to read on a loaded machine),
and each option's ratio to the same run without it: ``annjax-ema`` and
``annjax-track`` against ``annjax``, ``annjax-flax-track`` against
``annjax-flax``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import impl_annjax
from registry import IMPLEMENTATIONS, WORKLOADS
from worker import make_data

#: (option, baseline) pairs: the ratio of the first to the second.
PAIRS = (
    ("annjax-ema", "annjax"),
    ("annjax-track", "annjax"),
    ("annjax-flax-track", "annjax-flax"),
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    config = WORKLOADS["flax-track"].settings(args.quick)
    rounds = args.rounds or (2 if args.quick else 5)
    x, y, _ = make_data(config)
    names = list(dict.fromkeys(name for pair in PAIRS for name in pair))
    trains = {}
    for name in names:
        impl = IMPLEMENTATIONS[name]
        assert impl.module == "impl_annjax", name
        trains[name] = impl_annjax.make(config, x, y, **impl.options)
        trains[name](1)  # compile
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            t, c = time.perf_counter(), time.process_time()
            trains[name](1)
            wall[name].append(x.shape[0] / (time.perf_counter() - t))
            cpu[name].append(x.shape[0] / (time.process_time() - c))
    print(f"W1, {x.shape[0]:,} samples, {rounds} interleaved rounds of 1 epoch")
    print(f"{'implementation':<18} {'samples/s wall':>15} {'samples/s CPU':>14}")
    med = {n: (statistics.median(wall[n]), statistics.median(cpu[n])) for n in names}
    for name in names:
        print(f"{name:<18} {med[name][0]:>15,.0f} {med[name][1]:>14,.0f}")
    for option, base in PAIRS:
        w, c = (med[option][i] / med[base][i] for i in (0, 1))
        print(f"{option} / {base}: {w:.2f} wall, {c:.2f} CPU")


if __name__ == "__main__":
    main()
