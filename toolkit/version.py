"""The toolkit's version (a leaf module: code inside the package imports it from here, not from ``toolkit``)."""

__version__ = "0.2.0"
