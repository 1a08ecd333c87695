"""imgscan: container image layer forensics and secret scanning."""

__version__ = "0.1.0"
