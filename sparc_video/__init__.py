"""sparc-video: the video export service of the SPARC security platform."""

__version__ = "0.1.0"
