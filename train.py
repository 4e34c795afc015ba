"""Hydra entry point: `python train.py [group=option ...] [key=value ...]` (see README).

Heavy imports (torch, Lightning) happen inside `src.run.train`, so `--help` and config errors
answer at once.
"""

from __future__ import annotations

import secrets
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

# A random suffix keeps two runs started in the same second in separate folders; cached so every
# reference within one process resolves to the same value.
OmegaConf.register_new_resolver("uid", lambda: secrets.token_hex(3), use_cache=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from src.config import ConfigError
    from src.run import record_failure, train

    try:
        metrics, _ = train(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        if not record_failure(cfg, err):  # single run: stop with a non-zero exit
            sys.exit(2)
        return None
    except Exception as err:  # in a sweep, one failed job must not end the others
        if not record_failure(cfg, err):
            raise
        return None
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
