"""ganlab: train, compare and understand GANs on MNIST.

From Python, the same runs as the command line: ``from ganlab.api import train``, then
``train(["model=mlp", "trainer.steps=3000"])`` returns the run's results (``ganlab.api``).
Your own loss, penalty, model, auxiliary term or metric: ``ganlab.register_loss`` and its
siblings, in a module named by ``GANLAB_PLUGINS`` (``ganlab.plugins``).
"""

from typing import Any

__version__ = "0.1.0"

# A plugin writes ``import ganlab; ganlab.register_loss(...)`` (ganlab.plugins); imported on
# first use, so ``import ganlab`` stays light.
_PLUGIN_API = (
    "register_aux",
    "register_loss",
    "register_metric",
    "register_model",
    "register_penalty",
)


def __getattr__(name: str) -> Any:
    if name in _PLUGIN_API:
        from ganlab import plugins

        return getattr(plugins, name)
    raise AttributeError(f"module 'ganlab' has no attribute {name!r}")
