"""The social hub's services: what its pages show and do, as view Structs
(:mod:`federation.social.schemas`). Handlers get them from :mod:`federation.social.deps`."""

from federation.social.services.accounts import AccountProblem, Accounts, parse_account_path, parse_lookup
from federation.social.services.moderation import REPORT_STATES, MemberModeration, ModerationQueue
from federation.social.services.notifications import Notifications
from federation.social.services.relations import Relations
from federation.social.services.timelines import Timelines
from federation.social.services.views import actors_by_uri, note_views

__all__ = [
    "REPORT_STATES",
    "AccountProblem",
    "Accounts",
    "MemberModeration",
    "ModerationQueue",
    "Notifications",
    "Relations",
    "Timelines",
    "actors_by_uri",
    "note_views",
    "parse_account_path",
    "parse_lookup",
]
