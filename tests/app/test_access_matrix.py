"""The authorization matrix (issue 11, item 9), generated from the application's route table.

For every route and method, as anonymous, a member, another member, the owner, a repository
collaborator, an administrator, personal access tokens and OAuth access tokens (one of each scope
where tokens count, an every-scope token of each kind elsewhere) and the session cookie on git
routes, the answer's class is computed from the route's access declaration (app/access.py) and
compared with what the app says. A route that declares nothing fails. Path parameters are filled
from fixtures of each owned object type (public and private repositories, a post, a note, a token,
an OAuth client and grant, a domain block, a report, a member). HTML answers must be
``text/html; charset=utf-8``; nothing may answer 5xx.

Non-GET routes run after every GET route; a request that succeeded on a route which changes an
object is followed by a fresh object of that type, so one identity's delete never decides
another's answer.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from httpx import Cookies, Response
from litestar import Litestar
from litestar.routes import HTTPRoute
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.access import Access, Reach, access_of
from app.caching import CachePolicy
from domains.account.models import User
from domains.account.services import TokenService
from federation.activitypub.core import DOMAIN_ACTORS
from federation.activitypub.models import Activity, APObject, DomainBlock, Report
from federation.oauth.scopes import MASTODON_GRANULAR, SCOPE_TEXT
from federation.oauth.store import OAuthStore
from fragments.registry import registry
from tests.helpers.web import login, post_form, signup

pytestmark = pytest.mark.anyio

Outcome = Literal["ok", "login", "forbidden", "hidden", "error"]
PAT_SCOPES = ("repo:read", "repo:write", "api", "market")
# Mastodon's granular scopes (read:statuses…) are left out of the one-scope identities: a route
# declares each with the broad scopes implying it (federation.oauth.scopes), which stay here, and
# tests/federation/mastodon_api checks the granular ones; thirty more identities per token route would
# multiply this test's time for no new rule.
OAUTH_SCOPES = tuple(s for s in SCOPE_TEXT if s not in MASTODON_GRANULAR)
HTML = "text/html; charset=utf-8"
# Whether an administrator may act on another member's object of this type through its route.
ADMIN_OVER = {"repo": True, "post": True, "user": True, "client": True, "moderation": True,
              "token": False, "grant": False, "note": False, "product": True, "producer": True,
              "csv-import": True}


@dataclass(frozen=True)
class Who:
    name: str
    kind: Literal["anon", "session", "pat", "oauth"]
    user: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def is_token(self) -> bool:
        return self.kind in ("pat", "oauth")

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or (scope == "repo:read" and "repo:write" in self.scopes)


ANON = Who("anonymous", "anon")
SESSIONS = [Who("member", "session", "dave"), Who("other", "session", "bob"),
            Who("collaborator", "session", "carol"), Who("owner", "session", "alice"),
            Who("admin", "session", "ada")]
EVERY_PAT = Who("pat:*", "pat", "alice", frozenset(PAT_SCOPES))
EVERY_OAUTH = Who("oauth:*", "oauth", "alice", frozenset(OAUTH_SCOPES))
SCOPED = [Who(f"pat:{s}", "pat", "alice", frozenset({s})) for s in PAT_SCOPES] + \
    [Who(f"oauth:{s}", "oauth", "alice", frozenset({s})) for s in OAUTH_SCOPES]


@dataclass
class Case:
    method: str
    path: str  # the route template
    rule: Access
    variant: str = ""  # "public" / "private" for repository routes

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}{' [' + self.variant + ']' if self.variant else ''}"


@dataclass
class World:
    """Users, their cookie jars and tokens, and one object of each owned type."""

    jars: dict[str, Cookies] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    ids: dict[str, uuid.UUID] = field(default_factory=dict)


def outcome(response: Response) -> Outcome:
    status = response.status_code
    if status >= 500:
        return "error"
    if status == 401 or (status in (302, 303) and response.headers.get("location", "").startswith("/account/login?")):
        return "login"
    if status == 403:
        return "forbidden"
    if status == 404:
        return "hidden"
    return "ok"


# -- the route table -----------------------------------------------------------------------------
def cases(app: Litestar) -> tuple[list[Case], list[str]]:
    found: list[Case] = []
    undeclared: list[str] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            methods = sorted(handler.http_methods)
            if methods == ["OPTIONS"] and handler.handler_name == "options_handler":
                continue  # Litestar's own Allow answer
            rule = access_of(handler)
            if rule is None:
                undeclared.append(f"{','.join(methods)} {route.path}")
                continue
            for method in methods:
                if method == "HEAD":
                    continue  # answered like GET by the static router
                variants = ["public", "private"] if "{repo:str}" in route.path else [""]
                found.extend(Case(method, route.path, rule, v) for v in variants)
    found.sort(key=lambda c: (c.method != "GET", c.path, c.method, c.variant))
    return found, undeclared


def fill(case: Case, world: World) -> str:
    path, v = case.path, world.values
    repo = "pub" if case.variant == "public" else "priv"

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "owner":
            return "alice"
        if name == "repo":
            return repo
        if name == "name":
            if path.startswith("/social/media/"):  # no such upload: 404 for everybody
                return "0" * 64 + "-320.jpeg"
            if path.startswith("/market/admin/media/"):
                return v["media_name"]
            if path.startswith("/ap/actors/"):
                return "instance"
            if path.startswith("/f/me/"):
                return v["personal"]
            if path.startswith("/f/{area"):
                return v["shared_name"]
            if path.startswith("/f/"):
                return v["shared_single"]
            if path.startswith("/embed/"):
                return v["embed"]
            return "origin"  # a push mirror
        if name == "area":
            return v["shared_area"]
        if name == "slug":
            if path.startswith("/api/market/products"):
                return v["product_slug"]
            if path.startswith("/api/market/pages"):
                return v["page_slug"]
            return "news" if "/tag/" in path else "hello-world"
        if name == "which":
            return "outbox"
        if name == "secret":
            return "A" * 43  # a mailed link's secret (domains/account/tokens.py) that names no link: 404

        if name == "provider":
            return "collection"  # payments webhooks: a provider with no webhooks answers 204, queues nothing
        if name == "decision":
            return "accept"
        if name == "file_path":
            return v["static"]
        if name == "path":
            return "swagger"
        if name in ("handle", "username", "acct"):
            return "alice"
        if name == "collaborator":
            return "carol"
        # The code browser (forge/browse/views.py): a seeded commit on main with a README.
        if name == "kind":
            return "branch"
        if name == "rest":
            return "main/README.md"
        if name == "sha":
            return v["sha_" + repo]
        if name == "spec":
            return "main.zip" if "/archive/" in path else "main...main"
        # The Gitea API of issue 19 (forge/gitea/routes.py) and the webhook pages (forge/webhooks_web.py).
        gitea = {"archive": "main.zip", "ref": "main", "branch": "main", "hook_id": "1",
                 "delivery_id": "00000000-0000-0000-0000-000000000000"}
        if name in gitea:
            return gitea[name]
        key = {"token_id": "token", "post_id": "post", "client_pk": "client", "pk": "client",
               "user_id": "erin", "oid": "note", "aid": "activity", "bid": "block", "rid": "report",
               "product_id": "product", "producer_id": "producer", "image_id": "image",
               "import_id": "csv-import"}.get(name)
        if key is not None:
            return str(world.ids[key])
        if name == "ym":
            return "2026-12"  # the events month grid
        if name == "week":
            return "2026-W50"  # the events week view
        if name == "day":
            return "2026-12-08"  # the events day view
        if name == "number":
            return "RA-2026-000000"  # the cart's orders: no such order, 404 for every member
        if name == "action":
            return "paid"  # the orders admin's moves (on no such order: 404)
        if name in ("list_id", "campaign_id", "sub_id", "booking_id", "line_id", "ticket_id"):  # no such thing: 404
            return str(world.ids["nothing"])  # newsletters: no such list or issue, so 404 where allowed
        if name == "token":
            return "not-a-valid-token"
        if name in ("account_id", "status_id", "notification_id"):  # the Mastodon API: no such account,
            return str(world.ids["nothing"])  # status or notification, so 404 for every caller allowed
        if name == "media_id":  # the Mastodon API: no such upload, 404 for every caller allowed
            return str(world.ids["nothing"])
        if name in ("hashtag", "tag"):  # the tag timelines (Mastodon API, hub): a tag no note carries, empty
            return "nothing"
        if name == "fid":
            return str(world.ids["nothing"])  # no pending follow request: everybody allowed gets 404
        raise AssertionError(f"no fixture for path parameter {name!r} in {path}")

    url = re.sub(r"\{(\w+)(?::\w+)?\}", value, path)
    if url.endswith("/info/refs"):
        url += "?service=git-upload-pack"
    return url


# -- expectations ----------------------------------------------------------------------------------
# Routes naming an object inside a repository (a ref, a commit, a file, an archive, a hook, a
# delivery): the matrix's repositories are empty and have no hooks, so whoever may see the repository
# also gets 404 there, like a missing push mirror. That allowed callers get 200 for objects that do
# exist, and others 404, is checked by tests/forge/test_gitea_compat.py
# (test_private_repositories_are_absent) and tests/forge/test_webhooks.py.
_OBJECT_PARAMS = ("{archive", "{branch", "{sha", "{ref", "{hook_id", "{delivery_id", "/contents/{path",
                  "/raw/{path", "/media/{path", "{line_id",  # line_id: a cart line (the matrix has no cart)
                  "{account_id", "{status_id", "{notification_id", "{media_id",  # the Mastodon API's
                  "/social/media/{name")  # (federation/mastodon)


def _names_object(path: str) -> bool:
    return path.endswith("push_mirrors/{name:str}") or any(marker in path for marker in _OBJECT_PARAMS)


def expected(case: Case, who: Who, anon: Response | None) -> set[Outcome]:
    rule = case.rule
    private = case.variant == "private"
    owned = rule.owner is not None and "{" in case.path
    if rule.reach is Reach.MACHINE:
        assert anon is not None
        return {outcome(anon)}  # its own authentication: who you are here changes nothing
    if rule.reach is Reach.PUBLIC:
        if case.method == "POST" and case.path == "/account/login" and not who.is_token:
            return {"login"}  # no credentials in the form: the sign-in fails with 401
        if who.is_token or who.kind == "anon":
            if who.is_token:
                assert anon is not None
                return {outcome(anon)}  # a token is nobody here
            if private:  # private and absent look alike
                return {"hidden"}
            return {"ok", "hidden"}
        if private and who.user in ("dave", "bob"):
            return {"hidden"}
        return {"ok", "hidden"} if not private else {"ok"}
    if rule.reach is Reach.SESSION:
        if who.kind != "session":
            return {"login"}
        if rule.role == "admin" and who.user != "ada":
            return {"forbidden"}
        if rule.role in ("author", "producer") and who.user not in ("alice", "ada"):
            return {"forbidden"}
        if not owned or who.user == "alice":
            return {"ok", "hidden"} if "{fid" in case.path or not owned or _names_object(case.path) else {"ok"}
        if who.user == "ada" and rule.owner is not None and ADMIN_OVER[rule.owner]:
            return {"ok", "hidden"} if _names_object(case.path) else {"ok"}
        if rule.owner == "repo" and (not private or who.user == "carol"):
            return {"forbidden"}  # may see the repository, may not administer it
        return {"hidden", "forbidden", "ok"} if rule.owner == "note" else {"hidden"}  # "ok": see the loop
    if rule.reach is Reach.TOKEN:
        if not who.is_token or (rule.oauth_only and who.kind == "pat"):
            if rule.anonymous and not rule.oauth_only:
                return {"hidden", "login"} if private else ({"ok", "hidden"} if _names_object(case.path) else {"ok"})
            return {"login"}
        if not any(who.allows(s) for s in rule.scopes):
            return {"forbidden"}
        return {"ok", "hidden"} if _names_object(case.path) else {"ok"}  # no such mirror, ref, file, hook...
    assert rule.reach is Reach.GIT
    push = case.path.endswith("git-receive-pack")
    if not who.is_token:  # anonymous, and the session cookie, which git routes never honour
        return {"login"} if private or push else {"ok"}
    if private and not who.allows("repo:read"):
        return {"hidden"}  # a token that may not read private repositories does not see this one
    if not who.allows("repo:write" if push else "repo:read"):
        return {"forbidden"}
    return {"ok"}


def identities(case: Case) -> list[Who]:
    tokens = [EVERY_PAT, EVERY_OAUTH]
    if case.rule.accepts_tokens:
        tokens = [*SCOPED, *tokens]
    # Allowed callers last: a success may change the object, which is then renewed for the next.
    return [ANON, *tokens, *SESSIONS]


# -- building the world ------------------------------------------------------------------------------
async def build(client: Any, db: AsyncSession) -> World:
    world = World()
    for name in ("alice", "bob", "carol", "dave", "ada", "erin"):  # erin: whose roles the admin route changes
        client.cookies.clear()
        assert (await signup(client, name)).status_code == 303
        world.jars[name] = Cookies(client.cookies)
    await db.execute(update(User).where(User.username == "ada").values(is_admin=True))
    await db.execute(update(User).where(User.username == "alice").values(is_author=True, is_producer=True))
    await db.commit()
    users = {u.username: u for u in (await db.execute(select(User))).scalars()}
    world.ids["erin"] = users["erin"].id
    world.ids["carol"] = users["carol"].id
    world.ids["nothing"] = uuid.uuid4()

    async def as_(name: str, path: str, data: dict[str, Any], page: str) -> Response:
        client.cookies = world.jars[name]
        response = await post_form(client, path, data, page=page)
        world.jars[name] = Cookies(client.cookies)
        return response

    for repo, visibility in (("pub", "public"), ("priv", "private")):
        assert (await as_("alice", "/forge/new", {"name": repo, "visibility": visibility}, "/forge/new")
                ).status_code == 303
        added = await as_("alice", f"/forge/alice/{repo}/settings/collaborators",
                          {"username": "carol", "permission": "write"}, f"/forge/alice/{repo}/settings")
        assert added.status_code == 303
        world.values["sha_" + repo] = await seed_repo(client.app.state["settings"], db, repo)
    posted = await as_("alice", "/blog/admin/posts", {"title": "Hello world", "slug": "hello-world", "tags": "news",
                                                     "markdown": "Hi.", "action": "publish"}, "/blog/admin/new")
    assert posted.status_code == 303, posted.text
    assert (await as_("alice", "/social/compose", {"content": "A first note."}, "/social/")).status_code == 303
    note = (await db.execute(select(APObject).order_by(APObject.created_at))).scalars().first()
    assert note is not None
    world.ids["note"] = note.id
    activity = (await db.execute(select(Activity).where(Activity.type == "Create"))).scalars().first()
    assert activity is not None
    world.ids["activity"] = activity.id
    reported = await as_("bob", "/social/reports", {"note": str(note.id), "comment": "Matrix report."},
                         "/social/reports/new?note=" + str(note.id))
    assert reported.status_code == 303, reported.text
    await renew(world, db, "post", "token", "client", "block", "report", "product", "image")
    await market_world(world, db, users["alice"], client.app.state["settings"].data_dir)

    for who in [*SCOPED, EVERY_PAT, EVERY_OAUTH]:
        world.secrets[who.name] = await token_for(db, users["alice"], who)
    await db.commit()

    shared = [f for f in registry if f.policy is CachePolicy.SHARED_FRAGMENT]
    dotted = next(f.name for f in shared if "." in f.name)
    world.values["shared_area"], world.values["shared_name"] = dotted.split(".", 1)
    world.values["shared_single"] = next((f.name for f in shared if "." not in f.name), "absent")
    world.values["personal"] = next(f.name for f in registry if f.policy is CachePolicy.PERSONAL).removeprefix("me.")
    world.values["embed"] = next(f.embed for f in registry if f.embed)
    from app.templating import STATIC_DIR

    world.values["static"] = next(p for p in sorted(STATIC_DIR.rglob("*.css"))).relative_to(STATIC_DIR).as_posix()
    assert "instance" in DOMAIN_ACTORS
    return world


async def seed_repo(settings: Any, db: AsyncSession, name: str) -> str:
    """One commit with a README on alice's repository ``name`` (for the code browser's routes)."""
    from forge.runtime import runtime_for
    from forge.services import RepoService

    service = RepoService(db, runtime_for(settings).store)
    repo = await service.get_by_owner_and_name("alice", name)
    assert repo is not None
    sha = _push_seed(str(service.store.locate(repo.id)))
    await service.sync_refs(repo.id)
    await db.commit()
    return sha


def _push_seed(bare: str) -> str:
    import subprocess
    import tempfile
    from pathlib import Path

    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
           "PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.org"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "README.md").write_text("# Seed\n")
        for args in (["init", "-q", "-b", "main"], ["add", "README.md"], ["commit", "-q", "-m", "Seed"],
                     ["push", "-q", bare, "main"]):
            subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()


async def market_world(world: World, db: AsyncSession, alice: User, data_dir: Path) -> None:
    """For the JSON API and the import pages: an active product of alice's that no route removes, a
    published market page showing it, alice's CSV import, and an image on the product (stored)."""
    from domains.market.import_models import CsvImport
    from domains.market.models import Media, ProductImage
    from domains.market.page_models import MarketPage, MarketPageItem
    from domains.market.schemas import ProductInput, VariantInput
    from domains.market.services import CatalogueService, ProducerService
    from domains.market.services.media import media_file

    product = await CatalogueService(db, base_url="http://testserver.local").save(None, ProductInput(
        title="Matrix product", status="active", variants=[VariantInput(sku="MATRIX-1", price_minor=100)],
        producer_id=(await ProducerService(db).own(alice)).id))
    world.values["product_slug"] = product.slug
    page = MarketPage(title="Matrix page", slug="matrix-page", published=True)
    db.add(page)
    await db.flush()
    db.add(MarketPageItem(page_id=page.id, product_id=product.id, position=0))
    world.values["page_slug"] = page.slug
    media = Media(sha256="a" * 64, format="png", width=1, height=1, byte_size=4, widths=[1], uploaded_by_id=alice.id)
    db.add(media)
    await db.flush()
    db.add(ProductImage(product_id=product.id, media_id=media.id, position=0))
    stored = media_file(data_dir, media.sha256, 1, "png")
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(b"\x89PNG")
    world.values["media_name"] = stored.name
    run = CsvImport(owner_id=alice.id, filename="matrix.csv", state="done")
    db.add(run)
    await db.flush()
    world.ids["csv-import"] = run.id
    await db.commit()


async def token_for(db: AsyncSession, alice: User, who: Who) -> str:
    if who.kind == "pat":
        _row, secret = await TokenService(db).issue(alice, who.name, sorted(who.scopes))
        return secret
    store = OAuthStore(db)
    client, _secret = await store.create_client(name=f"Matrix {who.name}", redirect_uris=["https://rp.example.test/cb"],
                                                public=False, scope=" ".join(OAUTH_SCOPES), first_party=False)
    value = "roa_" + secrets.token_urlsafe(32)
    await store.save_token(client=client, user=alice, family_id=uuid.uuid4(), access_token=value,
                           refresh_token=None, scope=" ".join(sorted(who.scopes)), expires_in=3600)
    return value


async def renew(world: World, db: AsyncSession, *kinds: str) -> None:
    """A fresh object of each kind, owned by alice (the block and report by the admin's queue)."""
    alice = (await db.execute(select(User).where(User.username == "alice"))).scalar_one()
    store = OAuthStore(db)
    for kind in kinds:
        if kind == "token":
            row, _secret = await TokenService(db).issue(alice, f"target-{uuid.uuid4().hex[:6]}", ["api"])
            world.ids["token"] = row.id
        elif kind == "client":
            client, _secret = await store.create_client(
                name="Matrix RP", redirect_uris=["https://rp.example.test/cb"], public=False,
                scope="openid profile", first_party=False)
            await store.grant_consent(alice, client, ["openid", "profile"])
            world.ids["client"] = client.id
        elif kind == "block":
            block = DomainBlock(domain=f"b{uuid.uuid4().hex[:8]}.example", severity="suspend", reason="matrix")
            db.add(block)
            await db.flush()
            world.ids["block"] = block.id
        elif kind == "report":
            report = (await db.execute(select(Report).order_by(Report.created_at.desc()))).scalars().first()
            assert report is not None
            world.ids["report"] = report.id
        elif kind == "product":  # alice's product on her producer profile
            from domains.market.schemas import ProductInput, VariantInput
            from domains.market.services import CatalogueService

            product = await CatalogueService(db).save(alice, ProductInput(
                title="Matrix jam", status="active",
                variants=[VariantInput(sku=f"JAM-{uuid.uuid4().hex[:6]}", price_minor=450)]))
            world.ids["product"], world.ids["producer"] = product.id, product.producer_id
        elif kind == "image":  # an image on alice's product (the row is what the routes act on)
            from domains.market.models import Media
            from domains.market.services import CatalogueService

            catalogue = CatalogueService(db)
            product = await catalogue.get(world.ids["product"])
            assert product is not None
            media = Media(sha256=uuid.uuid4().hex * 2, format="jpeg", width=320, height=240, byte_size=1,
                          widths=[320])
            db.add(media)
            await db.flush()
            world.ids["image"] = (await catalogue.add_image(alice, product, media)).id
        elif kind == "post":
            from domains.blog.models import Post

            post = (await db.execute(select(Post).order_by(Post.created_at.desc()))).scalars().first()
            assert post is not None
            world.ids["post"] = post.id
    await db.commit()


# -- the test ----------------------------------------------------------------------------------------
def request_for(case: Case, who: Who, world: World, csrf: Callable[[Who], str]) -> dict[str, Any]:
    headers: dict[str, str] = {}
    kwargs: dict[str, Any] = {}
    if who.is_token:
        scheme = "Basic" if case.rule.reach is Reach.GIT else "Bearer"
        secret = world.secrets[who.name]
        if scheme == "Basic":
            import base64

            secret = base64.b64encode(f"alice:{secret}".encode()).decode()
        headers["Authorization"] = f"{scheme} {secret}"
    rule = case.rule
    if rule.reach in (Reach.PUBLIC, Reach.SESSION):
        headers["Accept"] = "text/html"
    if case.method != "GET":
        headers["X-CSRFToken"] = csrf(who)
        if rule.reach is Reach.GIT:
            service = case.path.rsplit("/", 1)[1]
            headers["Content-Type"] = f"application/x-{service}-request"
            kwargs["content"] = b"0000"
        elif rule.reach is Reach.TOKEN:
            kwargs["json"] = {}
        elif rule.reach is not Reach.MACHINE:
            kwargs["data"] = {}
    kwargs["headers"] = headers
    return kwargs


async def test_authorization_matrix(app, client, db_session) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    all_cases, undeclared = cases(app)
    assert not undeclared, f"routes without an access declaration (app/access.py): {undeclared}"
    assert len({c.path for c in all_cases}) > 100  # the whole table, not a corner of it
    world = await build(client, db_session)

    anon_jar = Cookies()

    def jar(who: Who) -> Cookies:
        return world.jars[who.user] if who.kind == "session" and who.user else anon_jar

    def csrf(who: Who) -> str:
        token = jar(who).get("csrftoken")
        assert token, f"no CSRF cookie for {who.name}"
        return token

    client.cookies = anon_jar
    primed = await client.get("/account/login")
    assert primed.status_code == 200 and client.cookies.get("csrftoken"), "no CSRF cookie for anonymous"
    anon_jar.update(client.cookies)
    for name in world.jars:  # every session jar gets its CSRF cookie as a browser would
        client.cookies = world.jars[name]
        primed = await client.get("/account")
        # The dashboard, signed in: a jar that lost its session would be sent to sign in instead.
        assert primed.status_code == 200 and client.cookies.get("csrftoken"), f"{name}: {primed.status_code}"
        world.jars[name] = Cookies(client.cookies)

    failures: list[str] = []
    requests = 0
    for case in all_cases:
        anon_response: Response | None = None
        for who in identities(case):
            client.cookies = Cookies(jar(who))
            url = fill(case, world)
            response = await client.request(case.method, url, **request_for(case, who, world, csrf))
            requests += 1
            got = outcome(response)
            if who is ANON:
                anon_response = response
            want = expected(case, who, anon_response)
            if got not in want:
                failures.append(f"{case.label} as {who.name}: {response.status_code} ({got}), expected {sorted(want)}")
            if who.is_token and case.rule.reach in (Reach.PUBLIC, Reach.SESSION, Reach.MACHINE) \
                    and anon_response is not None and response.status_code != anon_response.status_code:
                failures.append(f"{case.label} as {who.name}: {response.status_code}, "
                                f"anonymous got {anon_response.status_code}")
            ctype = response.headers.get("content-type", "")
            if ctype.startswith("text/html") and ctype != HTML:
                failures.append(f"{case.label} as {who.name}: Content-Type {ctype!r}")
            if case.method == "GET" and got == "ok" and response.status_code == 200 \
                    and case.rule.reach is Reach.SESSION and ctype != HTML and "/export" not in case.path \
                    and not case.path.endswith(".csv") \
                    and not case.path.startswith("/market/admin/media/"):  # downloads (CSV) and owners' images
                failures.append(f"{case.label} as {who.name}: a private page answered {ctype!r}")
            if who.kind == "session" and case.method == "POST" and "logout" in case.path:
                world.jars[who.user or ""] = await sign_in_again(client, who.user or "")
            if case.path.endswith("/notes/{oid:uuid}/delete") and who.user not in ("alice", None) and got == "ok":
                # The social hub answers a refused action with 303 and a flash message; the note stays.
                db_session.expire_all()
                if (await db_session.get(APObject, world.ids["note"])).deleted:  # type: ignore[union-attr]
                    failures.append(f"{case.label} as {who.name}: deleted another member's note")
            if got == "ok" and case.method != "GET" and response.status_code < 400:
                await refresh_after(case, world, db_session, client)
    elapsed = time.monotonic() - started
    print(f"authorization matrix: {len(all_cases)} cases, {requests} requests in {elapsed:.1f}s")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)


async def sign_in_again(client: Any, name: str) -> Cookies:
    """A sign-out route did its job; the identity signs in again for the routes after it."""
    client.cookies = Cookies()
    assert (await login(client, name)).status_code == 303
    primed = await client.get("/account")  # the CSRF cookie, as the jar had it
    assert primed.status_code == 200 and client.cookies.get("csrftoken"), f"{name}: {primed.status_code}"
    return Cookies(client.cookies)


async def refresh_after(case: Case, world: World, db: AsyncSession, client: Any) -> None:
    """Renew what a successful change may have removed, so the next identity meets the same object."""
    path = case.path
    if "{repo:str}" in path:
        await renew_repos(world, db, client)
    kinds = [k for k, marker in (("token", "{token_id"), ("post", "{post_id"), ("client", "{client_pk"),
                                 ("client", "{pk"), ("block", "{bid"), ("report", "{rid"), ("image", "{image_id"))
             if marker in path]
    if "{oid" in path and path.endswith("/delete"):
        await renew_note(world, db, client)
    if "{post_id" in path and path.endswith("/delete"):
        client.cookies = world.jars["alice"]
        made = await post_form(client, "/blog/admin/posts", {"title": "Hello world", "slug": "hello-world",
                                                             "tags": "news", "markdown": "Hi.", "action": "publish"},
                               page="/blog/admin/new")
        world.jars["alice"] = Cookies(client.cookies)
        assert made.status_code == 303, made.text
    if kinds:
        await renew(world, db, *kinds)


async def renew_note(world: World, db: AsyncSession, client: Any) -> None:
    client.cookies = world.jars["alice"]
    made = await post_form(client, "/social/compose", {"content": "Another note."}, page="/social/")
    world.jars["alice"] = Cookies(client.cookies)
    assert made.status_code == 303
    db.expire_all()
    note = (await db.execute(select(APObject).where(APObject.deleted.is_(False), APObject.local.is_(True))
                             .order_by(APObject.created_at.desc()))).scalars().first()
    assert note is not None
    world.ids["note"] = note.id


async def renew_repos(world: World, db: AsyncSession, client: Any) -> None:
    """Put both repositories back as they were: present, public or private, carol a write collaborator."""
    from forge.models import ForgeCollaborator, ForgeRepo

    client.cookies = world.jars["alice"]
    db.expire_all()
    for repo, private in (("pub", False), ("priv", True)):
        row = (await db.execute(select(ForgeRepo).where(ForgeRepo.lower_name == repo))).scalar_one_or_none()
        if row is None:
            visibility = "private" if private else "public"
            made = await post_form(client, "/forge/new", {"name": repo, "visibility": visibility}, page="/forge/new")
            assert made.status_code == 303, made.text
            row = (await db.execute(select(ForgeRepo).where(ForgeRepo.lower_name == repo))).scalar_one()
        row.is_private = private
        carol = world.ids["carol"]
        if (await db.execute(select(ForgeCollaborator).where(ForgeCollaborator.repo_id == row.id,
                                                             ForgeCollaborator.user_id == carol))).first() is None:
            db.add(ForgeCollaborator(repo_id=row.id, user_id=carol, permission="write"))
    await db.commit()
    world.jars["alice"] = Cookies(client.cookies)


def test_a_route_that_declares_nothing_is_caught_and_kept_for_members() -> None:
    """The matrix refuses an unclassified route; until it is classified the guard reads it as
    members-only, and never lets a token in."""
    from litestar import get
    from litestar.testing import TestClient

    from app.security import access_guard

    @get("/undeclared", sync_to_thread=False)
    def undeclared() -> str:
        return "secret"

    bare = Litestar([undeclared], guards=[access_guard], openapi_config=None)
    assert cases(bare)[1] == ["GET /undeclared"]
    with TestClient(bare) as http:
        assert http.get("/undeclared").status_code == 401
        assert http.get("/undeclared", headers={"Authorization": "token rat_x"}).status_code == 401
