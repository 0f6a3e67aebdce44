"""A deployment's own app, as a user would write one: two models replicated through
``configsync.replicate`` (installed only by ``settings.test``)."""
