"""Data: train/validation/test split, standardisation, batching, augmentation.

The lecture's protocol, as functions:

1. :func:`split` the examples once into train, validation and test sets
   (optionally stratified by class);
2. fit a :class:`Standardizer` on the **training split only** and apply it to
   all three, so that nothing about the validation or test data leaks into
   training (not even their mean);
3. every epoch, draw a new order of the training examples:
   :func:`epoch_batches` for a compiled ``lax.scan`` over equal-shaped batches,
   :func:`batches` for a plain Python loop;
4. optionally augment each training batch inside the compiled step
   (:mod:`annjax.data.augment`, also ``ann.augment``).
"""

from annjax.data import augment
from annjax.data.batching import batches, epoch_batches, num_batches
from annjax.data.split import Splits, Standardizer, split

__all__ = [
    "Splits",
    "Standardizer",
    "augment",
    "batches",
    "epoch_batches",
    "num_batches",
    "split",
]
