"""poulpe: a job manager for online systems."""

__version__ = "0.1.0"
