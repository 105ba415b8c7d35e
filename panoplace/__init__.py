"""panoplace: visual place recognition on panoramic images."""

__version__ = "0.1.0"
