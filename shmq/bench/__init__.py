"""Benchmarks shipped with shmq (`shmq bench ...`)."""

from __future__ import annotations

__all__: list[str] = []
