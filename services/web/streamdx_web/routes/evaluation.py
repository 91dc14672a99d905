"""``/evaluation``: run ``streamdx eval`` on a dataset folder as a background job, watch its progress,
see its metrics and confusion matrix; past runs are kept under ``web_runs_dir``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from streamdx_web.deps import Deps, get_deps
from streamdx_web.eval_jobs import MAX_EPOCHS, PROTOCOLS, EvalJobs, Run, RunRequestError, list_datasets
from streamdx_web.eval_report import headline, report_view
from streamdx_web.security import User, check_csrf

__all__ = ["get_jobs", "router"]


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.deps.settings
    jobs = EvalJobs(Path(settings.web_runs_dir), Path(settings.web_data_root), headline=headline)
    jobs.recover()
    app.state.eval_jobs = jobs
    try:
        yield
    finally:
        await jobs.close()


router = APIRouter(tags=["evaluation"], lifespan=_lifespan)


def get_jobs(request: Request) -> EvalJobs:
    jobs: EvalJobs = request.app.state.eval_jobs
    return jobs


Jobs = Annotated[EvalJobs, Depends(get_jobs)]


def _page(request: Request, deps: Deps, jobs: EvalJobs, *, error: str | None = None,
          form: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    datasets = list_datasets(jobs.data_root)
    runs = jobs.list()
    ctx = {"datasets": datasets, "protocols": list(PROTOCOLS.values()), "runs": runs, "error": error,
           "form": form or {}, "max_epochs": MAX_EPOCHS, "data_root": jobs.data_root,
           "any_active": any(r.active for r in runs)}
    return deps.templates.TemplateResponse(request, "evaluation.html", ctx, status_code=status_code)


@router.get("/evaluation", response_class=HTMLResponse)
async def evaluation_page(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)],
                          jobs: Jobs) -> Response:
    return _page(request, deps, jobs)


@router.get("/evaluation/runs", response_class=HTMLResponse)
async def runs_table(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)], jobs: Jobs) -> Response:
    """The past-runs table alone (htmx polls it while a run is active)."""
    runs = jobs.list()
    return deps.templates.TemplateResponse(request, "evaluation_runs.html",
                                           {"runs": runs, "any_active": any(r.active for r in runs)})


@router.post("/evaluation/runs", response_class=HTMLResponse, dependencies=[Depends(check_csrf)])
async def start_run(
    request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)], jobs: Jobs,
    protocol: Annotated[str, Form(max_length=40)] = "", dataset: Annotated[str, Form(max_length=200)] = "",
    records: Annotated[str, Form(max_length=2000)] = "", int8: Annotated[str | None, Form(max_length=10)] = None,
    epochs: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    form = {"protocol": protocol, "dataset": dataset, "records": records, "int8": bool(int8), "epochs": epochs}
    try:
        try:
            n_epochs = int(epochs) if epochs.strip() else None
        except ValueError:
            raise RunRequestError(f"Epochs must be a whole number from 1 to {MAX_EPOCHS}.") from None
        run = jobs.submit(protocol, dataset, records=records, int8=bool(int8), epochs=n_epochs, user=user)
    except RunRequestError as exc:
        return _page(request, deps, jobs, error=str(exc), form=form, status_code=400)
    return RedirectResponse(f"/evaluation/runs/{run.id}", status_code=303)


def _run_or_404(jobs: EvalJobs, run_id: str) -> Run:
    run = jobs.get(run_id)
    if run is None:
        raise HTTPException(404, "No such evaluation run.")
    return run


def _panel_ctx(jobs: EvalJobs, run: Run) -> dict[str, Any]:
    ctx: dict[str, Any] = {"run": run, "view": None, "report_error": None, "output": ""}
    if run.status == "done":
        report = jobs.report(run.id)
        try:
            ctx["view"] = report_view(run.protocol, report) if report is not None else None
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            ctx["report_error"] = f"The report has an unexpected layout ({type(exc).__name__})."
        if report is None:
            ctx["report_error"] = "The run's report is missing or unreadable."
    elif run.status == "failed":
        ctx["output"] = jobs.output_tail(run.id, 30)
    return ctx


@router.get("/evaluation/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str, user: User, deps: Annotated[Deps, Depends(get_deps)],
                   jobs: Jobs) -> Response:
    run = _run_or_404(jobs, run_id)
    return deps.templates.TemplateResponse(request, "evaluation_run.html", _panel_ctx(jobs, run))


@router.get("/evaluation/runs/{run_id}/panel", response_class=HTMLResponse)
async def run_panel(request: Request, run_id: str, user: User, deps: Annotated[Deps, Depends(get_deps)],
                    jobs: Jobs) -> Response:
    """The status / results panel alone (htmx polls it while the run is active)."""
    run = _run_or_404(jobs, run_id)
    return deps.templates.TemplateResponse(request, "evaluation_panel.html", _panel_ctx(jobs, run))


@router.post("/evaluation/runs/{run_id}/cancel", dependencies=[Depends(check_csrf)])
async def cancel_run(request: Request, run_id: str, user: User, deps: Annotated[Deps, Depends(get_deps)],
                     jobs: Jobs) -> Response:
    run = _run_or_404(jobs, run_id)
    await jobs.cancel(run.id)
    if request.headers.get("hx-request") == "true":
        return deps.templates.TemplateResponse(request, "evaluation_panel.html", _panel_ctx(jobs, run))
    return RedirectResponse(f"/evaluation/runs/{run.id}", status_code=303)


@router.get("/evaluation/runs/{run_id}/report.json")
async def run_report(run_id: str, user: User, jobs: Jobs) -> Response:
    run = _run_or_404(jobs, run_id)
    path = jobs.run_dir(run.id) / "report.json"
    if not path.is_file():
        raise HTTPException(404, "This run has no report.")
    return FileResponse(path, media_type="application/json", filename=f"{run.protocol}-{run.id}.json")
