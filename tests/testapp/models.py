from django.db import models


class Project(models.Model):
    """A project of the deployment (data type ``projects``)."""

    slug = models.SlugField(
        verbose_name="slug", max_length=64, unique=True, help_text="Names it on every node."
    )
    name = models.CharField(verbose_name="name", max_length=200, help_text="Display name.")
    updated_at = models.DateTimeField(verbose_name="updated at", auto_now=True)

    def __str__(self) -> str:
        return self.slug


class Template(models.Model):
    """A template of the deployment (data type ``templates``)."""

    slug = models.SlugField(
        verbose_name="slug", max_length=64, unique=True, help_text="Names it on every node."
    )
    body = models.TextField(verbose_name="body", blank=True, help_text="The template's text.")
    updated_at = models.DateTimeField(verbose_name="updated at", auto_now=True)

    def __str__(self) -> str:
        return self.slug
