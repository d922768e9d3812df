"""Per-key requests-per-minute and tokens-per-minute limits, over a sliding minute."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass
class _Window:
    events: deque[tuple[float, int]] = field(default_factory=deque)  # (time, tokens)
    tokens: int = 0


class RateLimiter:
    WINDOW_S = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def admit(self, key_id: str, now: float, rpm: int | None, tpm: int | None,
              tokens: int) -> tuple[bool, str, int]:
        """Counts a request of `tokens` if it fits; else (False, reason, seconds to wait)."""
        if rpm is None and tpm is None:
            return True, "", 0
        with self._lock:
            window = self._windows.setdefault(key_id, _Window())
            while window.events and window.events[0][0] <= now - self.WINDOW_S:
                window.tokens -= window.events.popleft()[1]
            wait = int(window.events[0][0] + self.WINDOW_S - now) + 1 if window.events else 1
            if rpm is not None and len(window.events) >= rpm:
                return False, f"rate limit of {rpm} requests per minute reached", wait
            if tpm is not None and window.tokens + tokens > tpm and window.events:
                return False, f"rate limit of {tpm} tokens per minute reached", wait
            window.events.append((now, tokens))
            window.tokens += tokens
            return True, "", 0

    def correct(self, key_id: str, reserved_tokens: int, used_tokens: int) -> None:
        """Replaces a request's worst-case token count with what it really used."""
        with self._lock:
            window = self._windows.get(key_id)
            if window is None:
                return
            for i in range(len(window.events) - 1, -1, -1):
                at, tokens = window.events[i]
                if tokens == reserved_tokens:
                    window.events[i] = (at, used_tokens)
                    window.tokens += used_tokens - reserved_tokens
                    return
