"""What MNIST is, for every module that needs to know: ten digit classes."""

from __future__ import annotations

N_CLASSES = 10  # digits 0..9: class labels, a conditional G's labels, the label reader's outputs
