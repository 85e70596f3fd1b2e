"""The package version, in one place (``trainability.__version__``)."""

__version__ = "0.1.0"
