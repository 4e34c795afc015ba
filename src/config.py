"""`ConfigError`, re-exported from src/schema.py for the modules that import it from here. Every
config node declares its schema beside its unit; src/run_config.py lists them and `validate` runs
them.
"""

from __future__ import annotations

from src.schema import ConfigError  # noqa: F401  (re-exported: one error class for every check)
