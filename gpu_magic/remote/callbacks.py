"""Callbacks for Lightning, Hugging Face ``Trainer`` and Keras that feed ``report()``.

What a library prints is not always enough for the notebook's progress bar: off a terminal
Lightning's rich bar prints only its last frame, its tqdm bar never says how many epochs there
are, and a Keras ``verbose=0`` fit prints nothing. Adding one callback, with no other change to
the training code, gives exact steps, totals, epochs and every logged metric:

    from gpu_magic.remote.callbacks import lightning_callback, hf_callback, keras_callback

    trainer = L.Trainer(max_epochs=3, callbacks=[lightning_callback()])
    trainer = Trainer(model=model, args=args, callbacks=[hf_callback()], ...)
    model.fit(x, y, epochs=3, callbacks=[keras_callback()])

Each records progress after every training step (step within the epoch, steps per epoch, epoch
and epochs; Hugging Face: the global step of ``max_steps``) and a metric only when its value
changed. The library is imported when the callback is made, so this module imports none of
them. Stdlib only, like the rest of ``gpu_magic.remote``.
"""

from __future__ import annotations

import math
import numbers

from .report import report

__all__ = ["hf_callback", "keras_callback", "lightning_callback"]


RESERVED = frozenset({"step", "total", "epoch", "epochs"})
"""``report()``'s own arguments: a logged value of that name (HF's fractional ``epoch``) is not
a metric here; the record's step and epoch say where it belongs."""


def _values(metrics) -> dict[str, float]:
    """The numeric values of a library's metrics dict, as floats."""
    found = {}
    for name, value in (metrics or {}).items():
        number = _scalar(value)
        if number is not None and isinstance(name, str) and name not in RESERVED:
            found[name] = number
    return found


class _Changes:
    """The numeric values among ``metrics`` that differ from what was reported before."""

    def __init__(self):
        self._last: dict[str, float] = {}

    def __call__(self, metrics) -> dict[str, float]:
        changed = {}
        for name, number in _values(metrics).items():
            if not _same(self._last.get(name), number):
                self._last[name] = changed[name] = number
        return changed


def _scalar(value) -> float | None:
    """A Python/numpy number or a one-element tensor as a float; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    try:
        if getattr(value, "ndim", 1) == 0 or getattr(value, "numel", lambda: 0)() == 1:
            return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return None


def _same(a: float | None, b: float) -> bool:
    return a is not None and (a == b or (math.isnan(a) and math.isnan(b)))


def _positive(value) -> int | None:
    """A count the library knows (Lightning says -1 or inf for "no limit")."""
    if isinstance(value, numbers.Real) and math.isfinite(value) and value > 0:
        return int(value)
    return None


def lightning_callback():
    """A ``lightning.pytorch.Callback`` (or ``pytorch_lightning``'s, whichever is installed)."""
    try:
        from lightning.pytorch import Callback
    except ImportError:
        from pytorch_lightning import Callback

    class GpuMagicLightning(Callback):
        def __init__(self):
            self.changes = _Changes()
            self.step = 0  # the last training batch of the epoch, 1-based

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.step = batch_idx + 1
            self._report(trainer)

        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:  # validation: at the training step it followed
                self._report(trainer)

        def _report(self, trainer):
            epoch, epochs = trainer.current_epoch + 1, _positive(trainer.max_epochs)
            total = _positive(trainer.num_training_batches)
            report(
                self.step or None, total, epoch, epochs, **self.changes(trainer.callback_metrics)
            )

    return GpuMagicLightning()


def hf_callback():
    """A ``transformers.TrainerCallback``: progress in global steps, every ``logs`` number."""
    from transformers import TrainerCallback

    class GpuMagicTrainer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                report(state.global_step, _positive(state.max_steps))

        def on_log(self, args, state, control, logs=None, **kwargs):
            values = _values(logs)
            if state.is_world_process_zero and values:
                report(state.global_step, _positive(state.max_steps), **values)

    return GpuMagicTrainer()


def keras_callback():
    """A ``keras.callbacks.Callback``: progress per batch, the epoch's logs at its end."""
    import keras

    class GpuMagicKeras(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 1

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            report(batch + 1, self._steps(), self.epoch, _positive(self.params.get("epochs")))

        def on_epoch_end(self, epoch, logs=None):
            steps, epochs = self._steps(), _positive(self.params.get("epochs"))
            report(steps, steps, epoch + 1, epochs, **_values(logs))

        def _steps(self):
            return _positive(self.params.get("steps"))

    return GpuMagicKeras()
