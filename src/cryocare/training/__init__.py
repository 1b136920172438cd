"""The one training path: every face of cryocare trains through :func:`train`.

Noise2Noise training of a :class:`~cryocare.model.CAREModel` on pairs of
independently noisy patches: each sample maps the even half to the odd half
or, at random, the odd half to the even half; the best weights by
validation loss are kept.

The package is laid out by stage:

=================  ===========================================================
``loop``           :func:`train` and :func:`train_stagewise`
``batches``        the endless, reproducible pair stream
``objectives``     what a batch becomes and what the loss compares: Noise2Noise
                   (default), supervised, missing-wedge restoration
``schedule``       budget, clock, cosine and plateau schedules, progress bar
``checkpoints``    checkpoints after every epoch and resuming from them
``finetune``       where training starts: random, pretrained, a saved model
``precision``      ``train_precision="auto"``: measured on the training device
``stagewise``      greedy stage-by-stage training of the diffusion network
=================  ===========================================================

It imports :mod:`cryocare.model` and :mod:`cryocare.nets`; neither imports it.

Rules of a run: the budget is a property of the run (wall-clock seconds from
the call, or a :class:`Budget` the caller started), recorded in the trained
model's config; epochs × steps only cap it; ``"auto"`` precision is decided
by the device that trains, and recorded.

Examples
--------
>>> import numpy as np
>>> from cryocare.config import CareConfig
>>> from cryocare.pairs import sample_pairs
>>> rng = np.random.default_rng(0)
>>> clean = rng.normal(size=(16, 32, 32)).astype(np.float32)
>>> even, odd = (clean + rng.normal(size=clean.shape).astype(np.float32) for _ in range(2))
>>> pairs = sample_pairs([even], [odd], patch_shape=8, n_patches=20, seed=0)
>>> config = CareConfig(unet_n_depth=1, unet_n_first=2, train_epochs=2,
...                     train_steps_per_epoch=2, train_batch_size=2)
>>> model = train(pairs, config, budget=600)
>>> len(model.history["val_loss"]), model.config.train_time_budget
(2, 600.0)
"""

from .finetune import INIT_CHOICES, load_init
from .loop import train, train_stagewise
from .schedule import Budget, cosine_rate

__all__ = ["Budget", "INIT_CHOICES", "cosine_rate", "load_init", "train", "train_stagewise"]
