"""Dependencies that hand each route the process-wide clients built in the lifespan. They are ``async`` so
FastAPI calls them on the event loop instead of paying a thread-pool hop per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from operations.jobs.jobs import JobRunner
from operations.services import Services


async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_jobs(request: Request) -> JobRunner:
    return request.app.state.jobs


ServicesDep = Annotated[Services, Depends(get_services)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
