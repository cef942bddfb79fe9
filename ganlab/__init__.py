"""ganlab: train, compare and understand GANs on MNIST.

From Python, the same runs as the command line: ``from ganlab.api import train``, then
``train(["model=mlp", "trainer.steps=3000"])`` returns the run's results (``ganlab.api``).
"""

__version__ = "0.1.0"
