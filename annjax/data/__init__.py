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

Data that does not fit on the device is streamed, a chunk of batches at a
time (:func:`stream`, chosen by type in :func:`source_of`): host arrays and
memmaps (:class:`HostArrays`), any iterable of batches (:class:`Batches`),
grain's loader (:func:`grain_source`, the extra ``annjax[data]``), each chunk
prepared and transferred in a background thread (:class:`Prefetch`).
"""

from annjax.data import augment
from annjax.data.batching import batches, epoch_batches, num_batches
from annjax.data.grain_source import grain_source
from annjax.data.host import Chunk, HostArrays
from annjax.data.iterables import Batches
from annjax.data.prefetch import Prefetch
from annjax.data.split import Splits, Standardizer, split
from annjax.data.stream import source_of, stream

__all__ = [
    "Batches",
    "Chunk",
    "HostArrays",
    "Prefetch",
    "Splits",
    "Standardizer",
    "augment",
    "batches",
    "epoch_batches",
    "grain_source",
    "num_batches",
    "source_of",
    "split",
    "stream",
]
