"""s3nas: hardware-aware NAS for NPUs (S3NAS)."""
__version__ = "0.1.0"
