"""Writes docs/sweeps.md: runs each code block shown there and pastes what it prints.

Run from the repository root: ``python docs/sweeps_page.py``. Every output in
the page is printed by the code above it, in this run (scikit-learn's digits,
a few epochs: about a minute on two cores).
"""

from __future__ import annotations

import contextlib
import io
import textwrap
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "sweeps.md"

SETUP = """
import jax, optax, annjax as ann

d = ann.datasets.load_digits()
s = ann.data.split(d.X, d.y, val=0.2, test=0.2, key=jax.random.key(0))
"""

DROPOUT = """
model = ann.serial(
    ann.dense(128), ann.activation("relu"),
    ann.dropout(ann.hyper("p")),          # a named hyper-parameter
    ann.dense(10),
)
rates = [0.0, 0.2, 0.4, 0.6]
sweep = ann.fit_many(
    model, s.train, val_data=s.val,
    keys=[jax.random.key(0)] * len(rates),  # same init and batches: only p varies
    hyper={"p": rates},                     # one value per model
    optimizer=ann.adam(1e-3), epochs=15, batch_size=64,
    metrics=("accuracy",), progress=False,
)
print(sweep.table("val_accuracy"))
best = sweep.best("val_accuracy")            # a FitResult, as fit returns
print(f"best: p={rates[sweep.table('val_accuracy').rows[0]['model']]}, "
      f"val_accuracy {best.history['val_accuracy'].max():.4f}")
"""

ONE = """
# a single run is written alike: fit takes the same hyper= with one value
one = ann.fit(model, s.train, val_data=s.val, key=jax.random.key(0),
              hyper={"p": 0.2}, optimizer=ann.adam(1e-3), epochs=15,
              batch_size=64, metrics=("accuracy",), progress=False)
print(f"p=0.2 alone: val_accuracy {one.history['val_accuracy'].max():.4f}")
"""

COSINE = """
schedule = optax.cosine_decay_schedule(init_value=0.1, decay_steps=15 * 18)
sweep = ann.fit_many(
    ann.mlp([64, 10]), s.train, val_data=s.val,
    keys=[jax.random.key(0)] * 4,
    lr_scale=[0.1, 0.3, 1.0, 3.0],         # s · α(t): the whole schedule scaled
    optimizer=ann.sgd(schedule, momentum=0.9), epochs=15, batch_size=64,
    metrics=("accuracy",), progress=False,
)
print(sweep.table("val_loss"))
"""

OPTIMIZER = """
adam = optax.inject_hyperparams(optax.adamw)(learning_rate=3e-3, b1=0.9,
                                             weight_decay=1e-4)
sweep = ann.fit_many(
    ann.mlp([64, 10]), s.train, val_data=s.val,
    keys=[jax.random.key(0)] * 4,
    hyper={"b1": [0.9, 0.9, 0.5, 0.5], "weight_decay": [1e-4, 1e-2, 1e-4, 1e-2]},
    optimizer=adam, epochs=10, batch_size=64,
    metrics=("accuracy",), progress=False,
)
print(sweep.table("val_accuracy"))
"""

ERRORS = """
try:
    ann.fit_many(model, s.train, hyper={"q": [0.1, 0.2]}, progress=False)
except ValueError as error:
    print(error)
try:
    ann.fit_many(model, s.train, hyper={"p": [0.1, 1.5]}, progress=False)
except ValueError as error:
    print(error)
"""

TEXT = """# Many models at once

`ann.fit_many` trains many models of one network in one compiled program:
seeds, learning rates, penalties and any named hyper-parameter, each model
exactly as its own `ann.fit` would (same initialisation, batches and dropout
masks for the same key). `ManyResult.table(metric)` lists the configurations
against their best validation score and its epoch, best first;
`ManyResult.best(metric)` returns the winner as a `FitResult`.

Every output below is printed by the code above it (the page is written by
`python docs/sweeps_page.py`).

```python
{setup}
```

## A swept dropout rate

A layer's argument becomes a named hyper-parameter with `ann.hyper(name)`;
`hyper=` gives its value per model.

```python
{dropout}
```

```
{dropout_out}
```

```python
{one}
```

```
{one_out}
```

## A swept cosine schedule

`lr_scale` scales the learning rate; with a schedule α(t) each model trains
at s · α(t) (the updates are scaled, exact for every optimizer whose update
is α(t) times a direction).

```python
{cosine}
```

```
{cosine_out}
```

## Optimizer hyper-parameters

Any argument the optimizer injects with `optax.inject_hyperparams` (learning
rate, betas, momentum, weight decay) is swept by its name:

```python
{optimizer}
```

```
{optimizer_out}
```

## Checked before anything compiles

An unknown name, lists of different lengths, a value of the wrong type or
outside its layer's range raise at once:

```python
{errors}
```

```
{errors_out}
```

## How the models run

`fit_many(vectorize=...)` picks how the one compiled epoch runs the models:
`"vmap"` (batched kernels), `"unroll"` (the single-model program once per
model, side by side in one program) or `"map"` (`lax.map`). `"auto"` unrolls
a model with a convolution on the CPU, where XLA:CPU runs a vmapped
convolution several times slower than one convolution per model, and vmaps
everything else (and every model on a GPU: expected, not measured here). The
measurement is `benchmarks/vectorize.py` (see `benchmarks/README.md`). Every
way gives the same models.
"""


def _run(code: str, scope: dict) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<sweeps.md>", "exec"), scope)
    return out.getvalue().rstrip()


def main() -> None:
    scope: dict = {}
    blocks = {
        "setup": SETUP,
        "dropout": DROPOUT,
        "one": ONE,
        "cosine": COSINE,
        "optimizer": OPTIMIZER,
        "errors": ERRORS,
    }
    values = {}
    for name, code in blocks.items():
        code = textwrap.dedent(code).strip()
        values[name] = code
        values[f"{name}_out"] = _run(code, scope)
    PAGE.write_text(TEXT.format(**values))
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
