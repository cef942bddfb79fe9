"""ganlab: train, compare and understand GANs on MNIST."""

__version__ = "0.1.0"
