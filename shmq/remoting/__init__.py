"""shmq.remoting (see docs/architecture.md §6)."""

from __future__ import annotations

__all__: list[str] = []
