"""shmq: a RocketMQ-compatible message broker (see README.md and docs)."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
