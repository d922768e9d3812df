"""Who may touch a job: an API key of the job's team, a user token of that team, or the admin
token. Anyone else is told the job does not exist (404), so ids of other teams' jobs leak
nothing; a job id that is not a UUID is a 404 too."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from uuid import UUID

from domain.keys import ApiKey
from domain.services.job_states import JobState
from gateway import errors
from gateway.access_audit import admin_actor
from gateway.api.jobs_desk import desk
from gateway.context import GatewayContext


@dataclass(frozen=True)
class JobCaller:
    team_id: str | None      # None: the admin token, every team
    user_id: str | None
    key: ApiKey | None = None  # set when the caller sent an API key
    actor: str = "system"      # who the audit trail says acted (domain/services/acting.py)

    @property
    def is_admin(self) -> bool:
        return self.team_id is None

    def may_see(self, team_id: str | None) -> bool:
        return self.is_admin or (team_id is not None and team_id == self.team_id)


def job_caller(ctx: GatewayContext, authorization: str | None) -> JobCaller:
    """The caller behind `Authorization: Bearer …`: an API key, a user token or the admin token."""
    if not authorization or not authorization.lower().startswith("bearer ") or \
            not authorization[7:].strip():
        raise errors.unauthorized("send 'Authorization: Bearer <credential>': an API key of the "
                                  "job's team, a user token of that team, or the admin token",
                                  code="missing_credentials")
    digest = ctx.hmac(authorization[7:].strip())
    if hmac.compare_digest(digest, ctx.admin_token_hmac):
        return JobCaller(None, None, actor=admin_actor(ctx.admin_token))
    match = ctx.registry_view.key_for_secret(digest, ctx.clock.now())
    if match is not None:
        if not match.key.team_id:
            raise errors.forbidden("this API key belongs to a user without a team; jobs are a "
                                   "team's: use a key of a user in the job's team", "no_team")
        return JobCaller(match.key.team_id, match.key.user_id, match.key, f"user:{match.key.user_id}")
    user = ctx.registry_view.user_for_token(digest)
    if user is None:
        raise errors.unauthorized("the credential is not a valid API key, user token or admin token "
                                  "(unknown, revoked, expired, or its user offboarded)",
                                  code="invalid_credentials")
    if not user.team_id:
        raise errors.forbidden("this user is in no team; jobs are a team's", "no_team")
    return JobCaller(user.team_id, user.user_id, actor=f"user:{user.user_id}")


def no_such_job(job_id: str) -> errors.GatewayError:
    return errors.not_found(f"there is no job {job_id[:64]!r} for your team; job ids come from "
                            "POST /api/jobs/create", code="job_not_found", param=None)


def no_such_team(team_id: str) -> errors.GatewayError:
    return errors.not_found(f"there is no team {team_id[:64]!r} you may see", code="team_not_found",
                            param="team_id")


def parse_job_id(job_id: str) -> UUID:
    try:
        return UUID(job_id)
    except ValueError:
        raise no_such_job(job_id) from None


async def visible_job(ctx: GatewayContext, caller: JobCaller, job_id: str) -> JobState:
    """The job as stored now, if the caller may see it; else 404. Its cap's account is brought
    up to date on the way."""
    found = await job_state(ctx, parse_job_id(job_id))
    if found is None or not caller.may_see(found.team_id):
        raise no_such_job(job_id)
    return found


async def job_state(ctx: GatewayContext, job_id: UUID) -> JobState | None:
    jobs = desk(ctx)
    found = await ctx.query(jobs.states.state, job_id, jobs.guard.unrecorded(str(job_id)))
    if found is not None:
        jobs.guard.observe(found)
    return found


def check_team(ctx: GatewayContext, caller: JobCaller, team_id: str) -> None:
    if not caller.may_see(team_id) or ctx.registry_view.team(team_id) is None:
        raise no_such_team(team_id)
