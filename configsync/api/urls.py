"""URLs of the config API (issue 4 fills this in)."""

urlpatterns: list = []
