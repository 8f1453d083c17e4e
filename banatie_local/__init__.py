"""banatie-local: the Banatie v1 image-generation API as a self-hosted appliance."""

__version__ = "0.1.0"
