"""Test data shared by the suite: obviously fake canaries.

Records are built through the services (``system_config_set``, ``ai_provider_set``), which
encrypt, validate and record the change as every real write does; a model factory would build
rows the application itself can never produce.
"""

from __future__ import annotations

CANARY_SECRET = "sk-CANARY-0000-do-not-use"
