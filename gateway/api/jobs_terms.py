"""Admins set a team's job terms: the customer pricing per job type (flat, tiered, markup;
domain/job_pricing.py) and the URL its job webhooks go to. Both are events on the ledger's
store; a job is priced once, by the rule in force when it completes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request

from domain.errors import DomainError
from domain.job_pricing import rule_from_api, rule_of, rule_to_api
from domain.job_terms import TeamJobTerms, job_webhook_secret
from domain.services.acting import as_actor
from gateway import errors
from gateway.api.deps import Admin, Ctx, usd
from gateway.api.jobs_bodies import NAME, json_body
from gateway.api.jobs_desk import desk

router = APIRouter(prefix="/api/admin/teams", tags=["jobs"])
MAX_JOB_TYPES = 200
MAX_URL = 2000


def _team(ctx: Ctx, team_id: str) -> None:
    if ctx.registry_view.team(team_id) is None:
        raise errors.not_found(f"there is no team {team_id[:64]!r}; create it with POST /api/admin/teams",
                               code="team_not_found", param=None)


@router.put("/{team_id}/pricing", summary="Set a team's customer pricing per job type")
async def set_pricing(ctx: Ctx, who: Admin, request: Request, team_id: str) -> dict[str, Any]:
    _team(ctx, team_id)
    body = await json_body(ctx, request, {"job_types", "default"})
    job_types = {} if body.get("job_types") is None else body["job_types"]
    if not isinstance(job_types, dict) or len(job_types) > MAX_JOB_TYPES or \
            not all(isinstance(k, str) and NAME.fullmatch(k) for k in job_types):
        raise errors.bad_request(f"'job_types' must be an object of at most {MAX_JOB_TYPES} job types "
                                 "to rules, as in {\"document_analysis\": {\"strategy\": \"flat\", "
                                 "\"price_usd\": \"0.50\"}}", "job_types")
    try:
        rules = {name: rule_from_api(rule, f"job_types.{name}") for name, rule in job_types.items()}
        default = rule_from_api(body["default"], "default") if body.get("default") is not None else None
    except DomainError as exc:
        raise errors.bad_request(str(exc), "job_types", code="invalid_pricing") from None
    terms = await ctx.command(as_actor(who.actor, desk(ctx).jobs.set_pricing), team_id, rules, default)
    return _pricing(terms)


@router.get("/{team_id}/pricing", summary="A team's customer pricing per job type")
async def get_pricing(ctx: Ctx, _: Admin, team_id: str) -> dict[str, Any]:
    _team(ctx, team_id)
    terms = await ctx.query(desk(ctx).jobs.terms, team_id)
    if terms is None:
        return {"team_id": team_id, "version": 0, "job_types": {}, "default": None}
    return _pricing(terms)


@router.put("/{team_id}/job-webhook", summary="Set the URL a team's job webhooks go to (a new secret)")
async def set_webhook(ctx: Ctx, who: Admin, request: Request, team_id: str) -> dict[str, Any]:
    _team(ctx, team_id)
    url = (await json_body(ctx, request, {"url"})).get("url")
    if url is not None:
        parts = urlsplit(url) if isinstance(url, str) and len(url) <= MAX_URL else None
        if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
            raise errors.bad_request(f"'url' must be an http(s) URL of at most {MAX_URL} characters, "
                                     "or null to stop the webhooks", "url")
    terms = await ctx.command(as_actor(who.actor, desk(ctx).jobs.set_webhook), team_id, url)
    return {"team_id": team_id, "url": terms.webhook_url,
            # shown here only: it is derived from the server secret, never stored
            "secret": job_webhook_secret(ctx.server_secret, team_id, terms.webhook_version)
            if terms.webhook_url else None,
            "signature_header": "X-Meterline-Signature", "event_type": "meterline.job.completed"}


def _pricing(terms: TeamJobTerms) -> dict[str, Any]:
    return {"team_id": terms.team_id, "version": terms.pricing_version,
            "job_types": {name: rule_to_api(rule_of(stored), usd)
                          for name, stored in terms.job_types.items()},
            "default": rule_to_api(rule_of(terms.default), usd) if terms.default else None}
