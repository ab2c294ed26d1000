"""Dependencies that hand each route the process-wide clients built in the lifespan. They are ``async`` so
FastAPI calls them on the event loop instead of paying a thread-pool hop per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from operations.errors import NotReady
from operations.jobs.jobs import JobRunner
from operations.services import Services


async def get_services(request: Request) -> Services:
    services = request.app.state.services
    if services is None:  # still waiting for a store at start-up (app/startup.py)
        raise NotReady(request.app.state.startup.message())
    return services


async def get_jobs(request: Request) -> JobRunner:
    jobs = request.app.state.jobs
    if jobs is None:
        raise NotReady(request.app.state.startup.message())
    return jobs


ServicesDep = Annotated[Services, Depends(get_services)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
