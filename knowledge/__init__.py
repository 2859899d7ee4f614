"""The resource library: curated resources, referrals and tools, their search, the drafted
resource packages, and the public library pages."""

from __future__ import annotations

__all__: list[str] = []
