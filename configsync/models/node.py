from django.db import models


class NodeIdentity(models.Model):
    """The stable id of this node, generated once unless ``CONFIGSYNC_NODE_ID`` sets it.

    A single row. Read it through ``configsync.selectors.node.node_id()``.
    """

    node_id = models.CharField(
        verbose_name="node id",
        max_length=64,
        unique=True,
        help_text="Stable identifier of this node inside its replication group.",
    )
    deployment_mode = models.CharField(
        verbose_name="deployment mode",
        max_length=32,
        blank=True,
        default="",
        help_text=(
            "This node's deployment mode, set at run time (`configsync mode set`, the admin); "
            "empty: CONFIGSYNC_DEPLOYMENT_MODE decides. Replicated to nothing."
        ),
    )
    created_at = models.DateTimeField(verbose_name="created at", auto_now_add=True)

    class Meta:
        verbose_name = "node identity"
        verbose_name_plural = "node identity"

    def __str__(self) -> str:
        return self.node_id
