"""The management API's routers, mounted together."""

from fastapi import APIRouter

from gateway.api import (
    admin,
    alerts,
    analytics,
    analytics_users,
    anomalies,
    audit,
    explain,
    grants,
    jobs,
    jobs_terms,
    keys,
    models,
    notices,
    periods,
    reports,
    teams,
    usage,
)

router = APIRouter()
router.include_router(alerts.admin_router)
router.include_router(alerts.user_router)
router.include_router(notices.router)
router.include_router(admin.router)
router.include_router(analytics.router)
router.include_router(analytics_users.router)
router.include_router(anomalies.router)
router.include_router(audit.router)
router.include_router(explain.router)
router.include_router(grants.router)
router.include_router(keys.router)
router.include_router(models.router)
router.include_router(periods.router)
router.include_router(reports.router)
router.include_router(usage.router)
router.include_router(jobs.router)
router.include_router(jobs_terms.router)
router.include_router(teams.router)
