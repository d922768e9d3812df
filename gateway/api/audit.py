"""The audit API (admins only): the public key, verification, search, and a user's access history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from domain.audit import GENESIS, Head, VerifyReport, format_time, verify
from domain.ports.audit_index import AuditFilter, AuditIndex
from domain.services import audit_index_search
from domain.services.audit_trail import AuditTrail
from gateway import errors
from gateway.api.analytics_params import refuse_unknown
from gateway.api.audit_params import audit_query, csv_response, encode_cursor
from gateway.api.deps import Admin, Ctx
from gateway.api.list_params import shown

router = APIRouter(prefix="/api/admin", tags=["audit"])
Text = Annotated[str | None, Query()]
MAX_USER_ID = 512  # ids are at most 128 characters (domain.ids); older ones are let through up to this


def trail_of(ctx: Ctx) -> AuditTrail:
    if ctx.audit is None:
        raise errors.GatewayError(503, "this gateway was started without the audit trail",
                                  "api_error", "audit_unavailable")
    return ctx.audit


def public_key_of(trail: AuditTrail) -> Ed25519PublicKey:
    """The checkpoints' key; the gateway holds only its public half, published by the signer."""
    key = trail.public_key
    if key is None:
        raise errors.GatewayError(503, "the audit public key is not published yet: the process with "
                                  "the scheduler role publishes it beside the signing key when it starts",
                                  "api_error", "audit_key_unavailable")
    return key


@router.get("/audit/public-key", summary="The Ed25519 public key audit checkpoints are signed with (PEM)")
async def public_key(ctx: Ctx, _: Admin) -> Response:
    key = await ctx.query(public_key_of, trail_of(ctx))
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return Response(pem, media_type="application/x-pem-file")


@router.get("/audit/verify", summary="Recompute the audit chain and check checkpoint signatures")
async def verify_trail(ctx: Ctx, _: Admin, request: Request, full: Text = None) -> dict:
    """From the last signed checkpoint by default (fast, bounded); `full=true` from seq 1."""
    refuse_unknown(request)
    if full not in (None, "true", "false"):
        raise errors.bad_request(f"full must be true or false, got {full[:20]!r}", "full")
    trail = trail_of(ctx)
    key = await ctx.query(public_key_of, trail)
    report = await ctx.query(_verify, trail, key, full == "true")
    status = await ctx.query(checkpoint_status, trail, ctx.clock.now())
    return {**report.as_dict(), "summary": report.summary(),
            "scope": "full" if full == "true" else "since_last_checkpoint", "checkpoint_status": status}


def _verify(trail: AuditTrail, key: Ed25519PublicKey, full: bool) -> VerifyReport:
    if full:
        return trail.verify(key)
    last = trail.last_checkpoint()
    start = Head(last.seq, last.checkpoint.head_hash) if last else GENESIS
    return verify(trail.records(after=start.seq), [last] if last else [], key, start=start)


def checkpoint_status(trail: AuditTrail, now: datetime) -> dict[str, Any]:
    """How far the head is past the last checkpoint: an operator's (and an alert's) question."""
    head, last = trail.head(), trail.last_checkpoint()
    since = head.seq - (last.seq if last else 0)
    age = (now - last.checkpoint.time).total_seconds() if last else None
    limit = 2 * trail.checkpoint_interval.total_seconds()
    return {"head_seq": head.seq, "last_checkpoint_seq": last.seq if last else None,
            "last_checkpoint_time": format_time(last.checkpoint.time) if last else None,
            "entries_since_checkpoint": since,
            "checkpoint_age_seconds": int(age) if age is not None else None,
            "overdue": since > 0 and (age is None or age > limit or since > 2 * trail.checkpoint_every)}


@router.get("/audit", summary="Search the audit trail, newest first (JSON or CSV)")
async def search(ctx: Ctx, _: Admin, request: Request, type: Text = None, actor: Text = None,
                 target: Text = None,
                 from_: Annotated[str | None, Query(alias="from")] = None,
                 to: Text = None, cursor: Text = None, limit: Text = None,
                 format: Text = None) -> Any:
    """`type` is one or more actions (comma-separated); `actor` (`admin`, `user:<id>`,
    `key:<prefix>`, `system`, `anonymous`) and `target` (`user:<id>`, `key:<id>`, `team:<id>`,
    `model:<name>`) match exactly; `from` is included, `to` excluded. Pass `next_cursor` as
    `cursor` for older entries; `next_cursor` is null at the trail's beginning. `projection`
    says where the page came from: the ClickHouse index up to `indexed_seq`, the trail itself
    above it (`lag_entries` behind its head, the oldest of them `lag_seconds` old)."""
    refuse_unknown(request)  # a misspelt filter (`actr=`) would otherwise widen the search silently
    query = audit_query(type, actor, target, from_, to, cursor, limit, format)
    page = await ctx.query(audit_index_search.search, trail_of(ctx), index_of(ctx), query.where,
                           query.before, query.limit, ctx.clock.now())
    next_cursor = encode_cursor(page.next_before)
    if query.csv:
        return csv_response(page.entries, next_cursor, page.projection())
    return {"entries": [e.as_record() for e in page.entries], "next_cursor": next_cursor,
            "projection": page.projection()}


def index_of(ctx: Ctx) -> AuditIndex | None:
    """The analytics store, when it holds the audit index (every adapter of ours does)."""
    return ctx.analytics if isinstance(ctx.analytics, AuditIndex) else None


@router.get("/users/{user_id}/access",
            summary="A user's keys and tokens, their state, and the audit entries that changed them")
async def user_access(user_id: str, ctx: Ctx, _: Admin) -> dict:
    """The offboarding question: is every key of this user revoked, and who did what, when."""
    if len(user_id) > MAX_USER_ID:  # no user has such an id, and the 404 need not echo it whole
        raise errors.not_found(f"user {shown(user_id)} does not exist", code="not_found", param=None)
    trail = trail_of(ctx)
    user = await ctx.query(ctx.registry.user, user_id)
    keys = await ctx.query(ctx.registry.keys_of, user_id)
    now = ctx.clock.now()
    targets = frozenset({f"user:{user_id}", *(f"key:{k.id}" for k in keys)})
    entries = await ctx.query(audit_index_search.every_match, trail, index_of(ctx),
                              AuditFilter(targets=targets), now)
    views = [{"id": str(k.id), "prefix": k.prefix, "name": k.name, "status": str(k.status_at(now)),
              "models": k.models, "created_at": k.issued_at.isoformat(),
              "expires_at": k.expires_at.isoformat() if k.expires_at else None} for k in keys]
    return {"user_id": user.user_id, "active": user.active, "role": str(user.role),
            "team_id": user.team_id,
            "tokens": {"active": len(user.token_hmacs),
                       "issued": sum(e.entry.action == "UserTokenIssued" for e in entries)},
            "keys": views, "usable_keys": sum(v["status"] == "active" for v in views),
            "audit": [e.as_record() for e in entries]}
