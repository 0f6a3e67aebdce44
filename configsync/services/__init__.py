"""Business logic. Functions are keyword-only, typed and named ``<entity>_<action>``."""
