"""Market import job kinds: the CSV bulk import (domains/market/csv_import.py).

One job per upload. The handler runs the whole file; each chunk commits with the import's
progress, so a retried run (a worker that died, a database hiccup) resumes after the last
committed chunk instead of starting over.
"""

from __future__ import annotations

from pathlib import Path

from app.jobs import JobContext, PermanentFailure, job_handler
from domains.market.csv_import import CSV_IMPORT, CsvImportJob, run_import
from domains.market.import_models import FAILED, CsvImport

__all__ = ["csv_import_job"]


@job_handler(CSV_IMPORT, backoff_base=5.0, backoff_cap=300.0, max_attempts=5)
async def csv_import_job(ctx: JobContext, payload: CsvImportJob) -> None:
    settings = ctx.settings
    try:
        await run_import(ctx.sessionmaker, Path(settings.data_dir), payload.import_id,
                         currency=settings.market_currency, base_url=settings.base_url)
    except Exception as exc:
        if not ctx.is_last_attempt:
            raise  # retried: the next run resumes after the last committed chunk
        async with ctx.sessionmaker() as session, session.begin():
            run = await session.get(CsvImport, payload.import_id)
            if run is not None:
                run.state, run.error = FAILED, "The import stopped on an internal error; the rows so far are kept."
        raise PermanentFailure(str(exc)) from exc
