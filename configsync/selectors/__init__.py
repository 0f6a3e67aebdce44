"""Reads. Functions are keyword-only, typed and named ``<entity>_<query>``."""
