"""A refused /v1 request: its request id in the error body and header, and its decision record
queued for the refusal log (gateway/views/refusal_log.py). Only refusals come here, so a
served request pays nothing for it."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from domain.decisions import Rule, quota_details, quota_rule
from domain.ids import time_ordered_id
from domain.keys import ApiKey, KeyStatus
from domain.quota_policy import Decision
from gateway.errors import GatewayError

RULE_OF_CODE = {"missing_api_key": Rule.MISSING_KEY, "invalid_api_key": Rule.UNKNOWN_KEY,
                "model_not_allowed": Rule.MODEL_OUT_OF_SCOPE, "model_not_granted": Rule.MODEL_NOT_GRANTED,
                "model_not_found": Rule.MODEL_UNKNOWN, "rate_limit_exceeded": Rule.RATE_LIMIT}
MAX_TEXT = 1000  # characters of a message or model name a record keeps
KEY_RULE = {KeyStatus.REVOKED: Rule.KEY_REVOKED, KeyStatus.EXPIRED: Rule.KEY_EXPIRED,
            KeyStatus.ACTIVE: Rule.KEY_ROTATED_OUT}


def refused(log: Any, exc: GatewayError, key: ApiKey | None, payload: Any, now: datetime) -> GatewayError:
    """Gives the refusal a request id and queues its record; returns the error to answer with."""
    request_id = time_ordered_id(time.time_ns() // 1_000_000)
    exc.request_id = request_id
    exc.headers = {**exc.headers, "x-request-id": request_id}
    key = key or exc.key  # type: ignore[assignment]  # a refused key authenticate found
    model = payload.get("model") if isinstance(payload, dict) else None
    rule = exc.rule or RULE_OF_CODE.get(exc.code or "") or (
        Rule.INVALID_REQUEST if exc.status in (400, 413) else exc.code or f"http_{exc.status}")
    log.add({"request_id": request_id, "at": now, "status": exc.status, "code": exc.code,
             # Capped: a message may quote what the client sent (a 1 MB model name, say).
             "rule": str(rule), "message": exc.message[:MAX_TEXT],
             "key_id": str(key.id) if key is not None else None,
             "user_id": key.user_id if key is not None else None,
             "team_id": key.team_id if key is not None else None,
             "model": model[:MAX_TEXT] if isinstance(model, str) else None,
             "details": exc.details or {}})
    return exc


def key_refusal(exc: GatewayError, key: ApiKey | None, now: datetime) -> GatewayError:
    """Says which rule turned a known secret away: its key revoked, expired, or the secret
    retired by a rotation; an unknown secret names nothing (and is never recorded itself)."""
    if key is not None:
        status = key.status_at(now)
        exc.rule, exc.key = KEY_RULE[status], key
        exc.details = {"key_status": str(status), "key_prefix": key.prefix,
                       "expires_at": key.expires_at.isoformat() if key.expires_at else None}
    return exc


def quota_refusal(exc: GatewayError, decision: Decision) -> GatewayError:
    exc.rule = quota_rule(decision)
    exc.details = quota_details(decision, decision.checked)
    return exc


def rate_refusal(exc: GatewayError, key: ApiKey, reason: str, wait_s: int) -> GatewayError:
    exc.details = {"rpm_limit": key.rpm_limit, "tpm_limit": key.tpm_limit, "reason": reason,
                   "retry_after_s": wait_s}
    return exc
