"""Imports every model module so one metadata holds all tables (for Alembic and tests)."""

from app import audit as audit_models  # noqa: F401
from app.jobs import models as job_models  # noqa: F401
from domains.account import models as account_models  # noqa: F401
from domains.blog import models as blog_models  # noqa: F401
from federation import keys  # noqa: F401
from federation.activitypub import models as activitypub_models  # noqa: F401
from federation.oauth import models as oauth_models  # noqa: F401
from forge import mirror_models as forge_mirror_models  # noqa: F401
from forge import models as forge_models  # noqa: F401
