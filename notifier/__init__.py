"""notifier: live notification push service."""

__version__ = "0.1.0"
