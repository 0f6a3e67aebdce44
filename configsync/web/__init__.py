"""The project's HTML pages outside the admin: the landing page and the Redoc API docs page."""
