"""HTTP reward server for RL frameworks: `latentrm serve --rm DIR` (see `latentrm.serve.app`, docs/serving.md).

Nothing heavy is imported here; `from latentrm.serve.app import create_app, ServeConfig` pulls in FastAPI.
"""

from __future__ import annotations
