"""Imports every installed domain's model modules (and the kernel's) so one metadata holds all
tables: for Alembic (migrations/env.py), the app and the tests. Derived from app/installed.py."""

import importlib

from app import audit as audit_models  # noqa: F401
from app.installed import INSTALLED
from app.jobs import models as job_models  # noqa: F401
from app.mail import models as mail_models  # noqa: F401

for _domain in INSTALLED:
    for _module in _domain.models:
        importlib.import_module(_module)
