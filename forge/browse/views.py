"""The code browser's pages, on Gitea's URL scheme under ``/forge/<owner>/<repo>/`` (issue 19, item 1).

``src|raw|blame|commits/{branch|tag|commit}/<ref>/<path>``, ``commit/<sha>`` (``.diff``/``.patch``
for the whole text), ``branches``, ``tags``, ``compare/<a>...<b>``, ``archive/<ref>.zip|.tar.gz``.

Access is the repository page's (forge/web.py): a public repository is read by everyone and its
pages never look at who asks; a private one is read by those who may read it over git, and to
everyone else answers 404 exactly as an absent one does (raw files and archives too).

Refs come from the database's ref mirror (``forge_repo_ref``, synced on every push), objects from
the cat-file pool (forge/catfile.py). Branch names hold slashes, so ``<b>/<path>`` is split at the
longest branch name that matches, as Gitea does. The path part is taken from the raw request path
and percent-decoded to bytes: a file name that is not UTF-8 is addressed exactly.

Caching: a raw file, a ``.diff``/``.patch`` or a blame addressed by a commit id never changes (for a
given render version): public ones answer ``public, max-age=31536000, immutable`` with ``ETag`` =
object id + render version, private ones ``private, no-cache`` with the same validator. The pages
that show commit statuses (tree, file, commits list, commit, branches) change when a CI posts one:
their ETag also carries the repository's status stamp (forge.statuses.status_stamp) and public ones
are ordinary public pages (browser revalidates, the edge keeps them under the repository's
surrogate keys, which a new status purges). Branch and tag pages are public pages
whose ETag comes from the repository's ``ref_version`` (checked before any git read) and carry
the repository's surrogate keys, so a push purges them (forge.services.sync_refs); they opt into
the whole-page cache like the repository page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote_to_bytes

from litestar import Request, Response, Router, get
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect, Stream
from markupsafe import Markup

from app import access
from app.caching import CACHE_CONTROL, CachePolicy, conditional_response, etag_matches, weak_etag
from forge import keys as forge_keys
from forge.access import NOT_FOUND
from forge.browse.diff import Diff, read_diff
from forge.browse.gitread import (
    FULL_OID,
    MODE_TREE,
    Commit,
    NotFound,
    ObjectTooLarge,
    Reader,
    TreeEntry,
    split_path,
)
from forge.browse.render import (
    INLINE_MAX_BYTES,
    decode_text,
    highlight_lines,
    image_type,
    is_binary,
    is_markdown,
    markdown_html,
    raw_content_type,
)
from forge.catfile import CatFileError, pool_for
from forge.deps import DEPENDENCIES
from forge.guards import load_repo, request_line, viewer
from forge.mirror import MirrorService
from forge.models import ForgeRepo, ForgeRepoRef
from forge.runtime import ForgeRuntime
from forge.services import RepoService
from forge.statuses import PageStatuses, page_statuses, status_stamp
from fragments.page_cache import PAGE_CACHE_OPT

__all__ = ["RENDER_VERSION", "router"]

# Part of every ETag: bump when a template under templates/forge/browse changes shape.
RENDER_VERSION = "1"
IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE_REVALIDATE = "private, no-cache"
COMMITS_PAGE = 50
REFS_SHOWN = 200
SWITCHER_SHOWN = 100
README_MAX = 512 * 1024
KINDS = ("branch", "tag", "commit")
PAGE_OPT = {"exclude_from_csrf": True, PAGE_CACHE_OPT: True}
STREAM_CHUNK = 64 * 1024


# -- commit statuses (issue 19, item 4) ------------------------------------------------------------------
async def statuses_for(service: RepoService, repo: ForgeRepo, oids: Sequence[str]) -> dict[str, PageStatuses]:
    """{commit id: statuses} for templates/forge/_statuses.html, one query for the whole page."""
    return await page_statuses(service.db, repo.id, oids)


async def _stamp(service: RepoService, repo: ForgeRepo) -> str:
    """Part of the ETag of every page that shows statuses (read before any git read)."""
    return await status_stamp(service.db, repo.id)


def _q(value: bytes | str) -> str:
    return quote(value, safe="/")


@dataclass
class Place:
    """Where a page is: the repository, the ref as written in the URL, its commit and the path."""

    repo: ForgeRepo
    owner: str
    kind: str
    ref: str  # branch or tag name, or the full commit id
    commit_oid: str
    path: bytes
    immutable: bool
    private: bool
    refs: Sequence[ForgeRepoRef] | None = None  # every branch and tag, when already read

    @property
    def root_url(self) -> str:
        return self.url("src", b"")

    @property
    def base(self) -> str:
        return f"/forge/{_q(self.owner)}/{_q(self.repo.name)}"

    def url(self, view: str, path: bytes | None = None, *, kind: str | None = None, ref: str | None = None) -> str:
        target = self.path if path is None else path
        out = f"{self.base}/{view}/{kind or self.kind}/{_q(ref or self.ref)}"
        return out + ("/" + _q(target) if target else "")


# -- access ----------------------------------------------------------------------------------------------
async def _repo(request: Request[Any, Any, Any], service: RepoService, owner: str, name: str) -> tuple[ForgeRepo, bool]:
    """The repository and whether it is private; 404 when absent or not visible to the caller."""
    row = await service.get_by_owner_and_name(owner, name)
    if row is None:
        raise NotFoundException(NOT_FOUND)
    if row.is_private:
        # Only here does the answer depend on who asks (as on the repository page).
        user, auth = viewer(request)
        row, _perm = await load_repo(service, owner, name, user, "read", auth, audit=request_line(request))
        return row, True
    return row, False


def _reader(service: RepoService, repo: ForgeRepo) -> Reader:
    pool = pool_for(service.store)
    pool.observe_version(repo.id, repo.ref_version)
    return Reader(service.store, pool, repo.id)


def _tail(request: Request[Any, Any, Any], marker: str) -> bytes:
    """The raw path after ``/forge/<owner>/<repo>/<marker>/`` as bytes (percent-decoding kept exact,
    so a non-UTF-8 file name arrives as its own bytes)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    # The ASGI spec leaves the query out of raw_path; some servers (httpx's test transport) keep it.
    text = bytes(raw).decode("latin-1").split("?", 1)[0]
    # "", "forge", owner, repo, the rest: owner and repository names may themselves be "src" or "raw".
    parts = text.split("/", 4)
    rest = parts[4] if len(parts) == 5 else ""
    if not rest.startswith(marker + "/"):
        return b""
    return unquote_to_bytes(rest[len(marker) + 1:])


def _match_ref(refs: Sequence[ForgeRepoRef], prefix: str, rest: bytes) -> tuple[ForgeRepoRef, bytes] | None:
    best: tuple[ForgeRepoRef, bytes] | None = None
    for ref in refs:
        name = ref.name.removeprefix(prefix).encode()
        matches = rest == name or rest.startswith(name + b"/")
        if matches and (best is None or len(name) > len(best[0].name.removeprefix(prefix).encode())):
            best = (ref, rest[len(name) + 1:])
    return best


async def _place(request: Request[Any, Any, Any], service: RepoService, owner: str, name: str, kind: str,
                 view: str) -> tuple[Place, Reader]:
    row, private = await _repo(request, service, owner, name)
    if kind not in KINDS:
        raise NotFoundException("No such page.")
    rest = _tail(request, f"{view}/{kind}")
    if not rest.strip(b"/") and kind == "branch":
        # `/src/branch` alone: the default branch (Gitea answers the same way).
        raise _Redirect(f"/forge/{_q(owner)}/{_q(row.name)}/{view}/branch/{_q(row.default_branch)}", 302)
    reader = _reader(service, row)
    # One query for every ref: the URL's ref and the switcher both come from it.
    all_refs = await service.refs(row)
    try:
        if kind == "commit":
            sha, _, path = rest.partition(b"/")
            try:
                text = sha.decode("ascii")
            except UnicodeDecodeError:
                raise NotFound from None
            oid = await reader.resolve_sha(text.lower())
            if oid != text:
                # An abbreviated id: send the browser to the full one (the immutable address).
                tail = "/" + _q(path) if path else ""
                raise _Redirect(f"/forge/{_q(owner)}/{_q(row.name)}/{view}/commit/{oid}{tail}")
            place = Place(row, owner, kind, oid, oid, path, True, private, all_refs)
        else:
            prefix = "refs/heads/" if kind == "branch" else "refs/tags/"
            found = _match_ref([r for r in all_refs if r.name.startswith(prefix)], prefix, rest)
            if found is None:
                raise NotFound
            ref, path = found
            place = Place(row, owner, kind, ref.name.removeprefix(prefix), ref.peeled or ref.oid, path, False,
                          private, all_refs)
        split_path(place.path)
    except NotFound:
        raise NotFoundException("No such ref or path.") from None
    return place, reader


class _Redirect(Exception):
    """301 from an abbreviated commit id to the full one (permanent); 302 from a bare ``/branch``
    to the default branch (which may change)."""

    def __init__(self, location: str, status: Literal[301, 302] = 301) -> None:
        self.location = location
        self.status = status


# -- responses -------------------------------------------------------------------------------------------
def _etag(place: Place, view: str, extra: str = "") -> str:
    if place.immutable:
        # The object id is the content; the view, the render version and the query pick the rendering.
        digest = weak_etag(view, RENDER_VERSION, str(place.repo.id), _q(place.path), extra).split('"')[1]
        return f'"{place.commit_oid}-{digest}"'
    return weak_etag("forge-browse", RENDER_VERSION, view, str(place.repo.id), str(place.repo.ref_version),
                     place.repo.updated_at.isoformat(), place.kind, place.ref, _q(place.path), extra)


def _not_modified(request: Request[Any, Any, Any], place: Place, etag: str, *,
                  live: bool = False) -> Response[bytes] | None:
    """A 304 before any git read when the validator matches (public pages and immutable ones).

    ``live``: the page shows commit statuses, so even at a commit id it is not immutable.
    """
    if not etag_matches(request.headers.get("if-none-match"), etag):
        return None
    if place.immutable:
        return Response(b"", status_code=304, headers=_immutable_headers(place, etag, live=live))
    if place.private:
        return None
    return conditional_response(request, b"", CachePolicy.PUBLIC, etag=etag,
                                surrogate_keys=forge_keys.repo_pages(place.repo.id))


def _immutable_headers(place: Place, etag: str, *, live: bool = False) -> dict[str, str]:
    """Headers of a page at a commit id; ``live`` ones (showing statuses) are revalidated like any
    public page, with the same id-based validator (so the 304 still comes before any git read)."""
    public = CACHE_CONTROL[CachePolicy.PUBLIC] if live else IMMUTABLE
    headers = {"ETag": etag, "Cache-Control": PRIVATE_REVALIDATE if place.private else public}
    if not place.private:
        headers["Surrogate-Key"] = " ".join(sorted(forge_keys.repo_pages(place.repo.id)))
    return headers


def _page(request: Request[Any, Any, Any], place: Place | None, repo: ForgeRepo, private: bool, template: str,
          context: dict[str, Any], etag: str | None = None, *, live: bool = False) -> Response[bytes]:
    env = request.app.template_engine.engine  # type: ignore[union-attr]
    html = str(env.get_template(template).render({"request": request, **context}))
    if place is not None and place.immutable and etag is not None:
        return Response(html.encode(), headers=_immutable_headers(place, etag, live=live), media_type="text/html")
    policy = CachePolicy.PRIVATE if private else CachePolicy.PUBLIC
    return conditional_response(request, html, policy, etag=etag,
                                surrogate_keys=forge_keys.repo_pages(repo.id))


async def _common(service: RepoService, mirrors: MirrorService, place: Place) -> dict[str, Any]:
    refs = place.refs if place.refs is not None else await service.refs(place.repo)
    branches = [r for r in refs if r.name.startswith("refs/heads/")]
    tags = [r for r in refs if r.name.startswith("refs/tags/")]
    crumbs: list[tuple[str, str]] = []
    parts = split_path(place.path)
    for i, part in enumerate(parts):
        crumbs.append((part.decode(errors="replace"), place.url("src", b"/".join(parts[:i + 1]))))
    pull = [m for m in await mirrors.list_for(place.repo) if m.direction == "pull"]
    return {
        "repo": place.repo, "owner_name": place.owner, "place": place, "base": place.base,
        "crumbs": crumbs, "path_text": place.path.decode(errors="replace"),
        "switch_branches": [b.name.removeprefix("refs/heads/") for b in branches[:SWITCHER_SHOWN]],
        "switch_tags": [t.name.removeprefix("refs/tags/") for t in tags[-SWITCHER_SHOWN:]],
        "mirror": pull[0] if pull else None, "statuses": {}, "q": _q,
    }


def _guard(call: Any) -> Any:
    """NotFound → 404 and cat-file failures → 503, never a 500 for what a URL names."""
    import functools

    @functools.wraps(call)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await call(*args, **kwargs)
        except NotFound:
            raise NotFoundException("Not found.") from None
        except ObjectTooLarge as exc:
            raise HTTPException(status_code=413, detail=str(exc)) from None
        except _Redirect as redirect:
            return Redirect(redirect.location, status_code=redirect.status)
        except CatFileError as exc:
            raise HTTPException(status_code=503, detail="The repository could not be read; try again.") from exc
        except TimeoutError as exc:
            raise HTTPException(status_code=503, detail="Reading the repository took too long.") from exc
    return wrapper


# -- src: tree and file views -------------------------------------------------------------------------------
SRC = "/forge/{owner:str}/{repo:str}/src/{kind:str}"


@get([SRC, SRC + "/{rest:path}"], opt=PAGE_OPT, name="forge:src", include_in_schema=False)
@_guard
async def src(request: Request[Any, Any, Any], repo_service: RepoService, mirror_service: MirrorService,
              owner: str, repo: str, kind: str, rest: str = "") -> Response[Any]:
    place, reader = await _place(request, repo_service, owner, repo, kind, "src")
    display = request.query_params.get("display", "")
    etag = _etag(place, "src", f"{display}\0{await _stamp(repo_service, place.repo)}")
    cheap = _not_modified(request, place, etag, live=True)
    if cheap is not None:
        return cheap
    commit = await reader.commit(place.commit_oid)
    parts = split_path(place.path)
    entry = await reader.entry_at(commit, parts)
    context = await _common(repo_service, mirror_service, place)
    context.update({"commit": commit, "entry": entry})
    context["statuses"] = await statuses_for(repo_service, place.repo, [commit.oid])
    if entry.mode == MODE_TREE:
        context.update(await _tree_context(reader, place, commit, entry))
        return _page(request, place, place.repo, place.private, "forge/browse/tree.html", context, etag, live=True)
    # A file's header names the newest commit that touched the file, as Gitea's does, not the
    # branch head (the same bounded scan as the tree's last-commit column).
    path = place.path.strip(b"/")
    directory, _, name = path.rpartition(b"/")
    touched = (await reader.last_commits(commit.oid, directory, [name])).get(name)
    if touched is not None and touched[0] != commit.oid:
        context["commit"] = await reader.commit(touched[0])
        context["statuses"] = await statuses_for(repo_service, place.repo, [touched[0]])
    context.update(await _blob_context(reader, place, entry, parts, display))
    return _page(request, place, place.repo, place.private, "forge/browse/blob.html", context, etag, live=True)


async def _tree_context(reader: Reader, place: Place, commit: Commit, entry: TreeEntry) -> dict[str, Any]:
    entries = await reader.tree(entry.oid)
    last = await reader.last_commits(commit.oid, place.path.strip(b"/"), [e.name for e in entries])
    rows = []
    base_path = place.path.strip(b"/")
    for e in entries:
        child = base_path + b"/" + e.name if base_path else e.name
        found = last.get(e.name)
        rows.append({"entry": e, "url": place.url("src", child), "raw": place.url("raw", child),
                     "commit": found[0] if found else None,
                     "date": _date(found[1]) if found else "",
                     "subject": found[2] if found else ""})
    readme = next((e for e in entries if e.kind == "blob" and e.name.lower().startswith(b"readme")
                   and (is_markdown(e.name) or e.name.lower() in (b"readme", b"readme.txt"))), None)
    readme_html: Markup | None = None
    if readme is not None:
        _info, data = await reader.object(readme.oid, "blob", max_size=README_MAX)
        if data is not None and not is_binary(data):
            text = decode_text(data)
            readme_html = markdown_html(text) if is_markdown(readme.name) else Markup(
                "<pre>{}</pre>").format(text)
    parent = base_path.rpartition(b"/")[0] if base_path else None
    return {"rows": rows, "readme": readme, "readme_html": readme_html,
            "parent_url": place.url("src", parent) if parent is not None else None, "view": "tree"}


def _date(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def _symlink_target(parts: Sequence[bytes], target: bytes) -> bytes | None:
    """The repository path a relative symlink points at, None when it leaves the repository."""
    out = list(parts[:-1])
    if target.startswith(b"/"):
        return None
    for piece in target.split(b"/"):
        if piece in (b"", b"."):
            continue
        if piece == b"..":
            if not out:
                return None
            out.pop()
        else:
            out.append(piece)
    return b"/".join(out)


async def _blob_context(reader: Reader, place: Place, entry: TreeEntry, parts: Sequence[bytes],
                        display: str) -> dict[str, Any]:
    name = parts[-1] if parts else b""
    context: dict[str, Any] = {"view": "blob", "name": name.decode(errors="replace"),
                               "raw_url": place.url("raw"), "blame_url": place.url("blame"),
                               "history_url": place.url("commits"), "lines": [], "markdown": None,
                               "image": None, "too_large": False, "binary": False, "symlink": None,
                               "submodule": None, "size": 0, "display": display}
    if entry.kind == "submodule":
        context["submodule"] = entry.oid
        return context
    info, data = await reader.object(entry.oid, "blob", max_size=INLINE_MAX_BYTES)
    context["size"] = info.size
    if entry.kind == "symlink":
        target = data or b""
        resolved = _symlink_target(parts, target)
        context["symlink"] = {"target": target.decode(errors="replace"),
                              "url": place.url("src", resolved) if resolved is not None else None}
        return context
    if data is None:
        context["too_large"] = True
        return context
    if (image_type(name) is not None and is_binary(data)) or (image_type(name) and not name.lower().endswith(b".svg")):
        context["image"] = place.url("raw")
        return context
    if is_binary(data):
        context["binary"] = True
        return context
    text = decode_text(data)
    if is_markdown(name) and display != "source":
        context["markdown"] = markdown_html(text)
        return context
    context["lines"] = highlight_lines(name, text)
    return context


# -- raw --------------------------------------------------------------------------------------------------
RAW = "/forge/{owner:str}/{repo:str}/raw/{kind:str}"


@get([RAW, RAW + "/{rest:path}"], opt={"exclude_from_csrf": True}, name="forge:raw", include_in_schema=False)
@_guard
async def raw(request: Request[Any, Any, Any], repo_service: RepoService, owner: str, repo: str, kind: str,
              rest: str = "") -> Response[Any]:
    place, reader = await _place(request, repo_service, owner, repo, kind, "raw")
    etag = _etag(place, "raw")
    parts = split_path(place.path)
    if not parts:
        raise NotFound
    cheap = _not_modified(request, place, etag)
    if cheap is not None:
        return cheap
    entry = await reader.entry_at(await reader.commit(place.commit_oid), parts)
    if entry.kind not in ("blob", "symlink"):
        raise NotFound
    info, data = await reader.object(entry.oid, "blob", max_size=INLINE_MAX_BYTES)
    head = data if data is not None else await _blob_head(reader, entry.oid)
    media_type, attachment = raw_content_type(parts[-1], head)
    if info.size > INLINE_MAX_BYTES and media_type.startswith("text/"):
        attachment = True
    headers = _raw_headers(place, etag, parts[-1], attachment)
    if data is not None:
        return Response(data, media_type=media_type, headers=headers)
    # Large: streamed from its own `git cat-file blob` child, never held in memory.
    headers["Content-Length"] = str(info.size)
    return Stream(_blob_stream(reader, entry.oid), media_type=media_type, headers=headers)


def _raw_headers(place: Place, etag: str, name: bytes, attachment: bool) -> dict[str, str]:
    if place.immutable:
        headers = _immutable_headers(place, etag)
    else:
        headers = {"Cache-Control": "private, no-cache" if place.private else "public, max-age=0, must-revalidate",
                   "ETag": etag}
    headers["X-Content-Type-Options"] = "nosniff"
    # Nothing in a repository file runs here: no scripts, no plugins, a sandboxed origin.
    headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
    ascii_name = "".join(chr(b) if 32 <= b < 127 and b not in b'"\\;' else "_" for b in name)
    disposition = "attachment" if attachment else "inline"
    headers["Content-Disposition"] = f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    return headers


async def _blob_head(reader: Reader, oid: str) -> bytes:
    async with reader.stream("cat-file", "blob", oid) as out:
        return await out.read(8000)


async def _blob_stream(reader: Reader, oid: str) -> AsyncIterator[bytes]:
    async with reader.stream("cat-file", "blob", oid) as out:
        while chunk := await out.read(STREAM_CHUNK):
            yield chunk


# -- blame ------------------------------------------------------------------------------------------------
BLAME = "/forge/{owner:str}/{repo:str}/blame/{kind:str}"


@get([BLAME, BLAME + "/{rest:path}"], opt=PAGE_OPT, name="forge:blame", include_in_schema=False)
@_guard
async def blame(request: Request[Any, Any, Any], repo_service: RepoService, mirror_service: MirrorService,
                owner: str, repo: str, kind: str, rest: str = "") -> Response[Any]:
    place, reader = await _place(request, repo_service, owner, repo, kind, "blame")
    parts = split_path(place.path)
    if not parts:
        raise NotFound
    etag = _etag(place, "blame")
    cheap = _not_modified(request, place, etag)
    if cheap is not None:
        return cheap
    commit = await reader.commit(place.commit_oid)
    entry = await reader.entry_at(commit, parts)
    if entry.kind != "blob":
        raise NotFound
    _info, data = await reader.object(entry.oid, "blob", max_size=INLINE_MAX_BYTES)
    context = await _common(repo_service, mirror_service, place)
    context.update({"commit": commit, "name": parts[-1].decode(errors="replace"), "groups": [], "view": "blame",
                    "too_large": data is None, "binary": data is not None and is_binary(data),
                    "raw_url": place.url("raw"), "src_url": place.url("src")})
    if data is not None and not context["binary"]:
        lines = highlight_lines(parts[-1], decode_text(data))
        context["groups"] = _blame_groups(await reader.blame(place.commit_oid, place.path), lines)
    return _page(request, place, place.repo, place.private, "forge/browse/blame.html", context, etag)


def _blame_groups(porcelain: bytes, lines: Sequence[Markup]) -> list[dict[str, Any]]:
    """git-blame(1) "THE PORCELAIN FORMAT": runs of lines from one commit, with its summary."""
    meta: dict[str, dict[str, str]] = {}
    groups: list[dict[str, Any]] = []
    current_sha = ""
    final_line = 0
    for raw_line in porcelain.split(b"\n"):
        if raw_line.startswith(b"\t"):
            info = meta.setdefault(current_sha, {})
            html = lines[final_line - 1] if 0 < final_line <= len(lines) else Markup("")
            if groups and groups[-1]["sha"] == current_sha and groups[-1]["end"] == final_line - 1:
                groups[-1]["lines"].append((final_line, html))
                groups[-1]["end"] = final_line
            else:
                groups.append({"sha": current_sha, "summary": info.get("summary", ""),
                               "author": info.get("author", ""), "time": info.get("author-time", ""),
                               "lines": [(final_line, html)], "end": final_line})
            continue
        fields = raw_line.split(b" ")
        if len(fields) >= 3 and len(fields[0]) == 40 and FULL_OID.match(fields[0].decode(errors="replace")):
            current_sha = fields[0].decode()
            final_line = int(fields[2])
            meta.setdefault(current_sha, {})
        elif current_sha and fields and fields[0] in (b"author", b"author-time", b"summary"):
            meta[current_sha][fields[0].decode()] = raw_line.partition(b" ")[2].decode(errors="replace")
    return groups


# -- history ----------------------------------------------------------------------------------------------
COMMITS = "/forge/{owner:str}/{repo:str}/commits/{kind:str}"


@get([COMMITS, COMMITS + "/{rest:path}"], opt=PAGE_OPT, name="forge:commits", include_in_schema=False)
@_guard
async def commits(request: Request[Any, Any, Any], repo_service: RepoService, mirror_service: MirrorService,
                  owner: str, repo: str, kind: str, rest: str = "") -> Response[Any]:
    place, reader = await _place(request, repo_service, owner, repo, kind, "commits")
    filter_path = place.path or (request.query_params.get("path", "") or "").encode()
    parts = split_path(filter_path)
    filter_path = b"/".join(parts)
    after = request.query_params.get("after", "") or ""
    if after and not FULL_OID.match(after):
        raise NotFound
    etag = _etag(place, "commits", f"{after}\0{_q(filter_path)}\0{await _stamp(repo_service, place.repo)}")
    cheap = _not_modified(request, place, etag, live=True)
    if cheap is not None:
        return cheap
    if after:
        # Keyset paging: the next page is the history of the last commit shown, without it.
        if not await reader.is_ancestor(after, place.commit_oid):
            raise NotFound
        oids = await reader.log(after, path=filter_path, limit=COMMITS_PAGE, skip_first=True)
    else:
        oids = await reader.log(place.commit_oid, path=filter_path, limit=COMMITS_PAGE)
    listed = [await reader.commit(oid) for oid in oids]
    context = await _common(repo_service, mirror_service, place)
    context.update({
        "commits": listed, "view": "commits", "filter_path": filter_path.decode(errors="replace"),
        "next_url": (place.url("commits", b"") + f"?after={listed[-1].oid}"
                     + (f"&path={_q(filter_path)}" if filter_path else "")) if len(listed) == COMMITS_PAGE else None,
        "statuses": await statuses_for(repo_service, place.repo, oids),
    })
    return _page(request, place, place.repo, place.private, "forge/browse/commits.html", context, etag, live=True)


# -- one commit -------------------------------------------------------------------------------------------
@get("/forge/{owner:str}/{repo:str}/commit/{sha:str}", opt=PAGE_OPT, name="forge:commit", include_in_schema=False)
@_guard
async def commit_page(request: Request[Any, Any, Any], repo_service: RepoService, mirror_service: MirrorService,
                      owner: str, repo: str, sha: str) -> Response[Any]:
    row, private = await _repo(request, repo_service, owner, repo)
    reader = _reader(repo_service, row)
    text_form = ""
    for suffix in (".diff", ".patch"):
        if sha.endswith(suffix):
            sha, text_form = sha.removesuffix(suffix), suffix[1:]
    oid = await reader.resolve_sha(sha.lower())
    if oid != sha:
        raise _Redirect(f"/forge/{_q(owner)}/{_q(row.name)}/commit/{oid}" + (f".{text_form}" if text_form else ""))
    place = Place(row, owner, "commit", oid, oid, b"", True, private)
    # The .diff/.patch texts show no statuses: they stay immutable.
    stamp = "" if text_form else await _stamp(repo_service, row)
    etag = _etag(place, "commit", (text_form or request.query_params.get("style", "")) + "\0" + stamp)
    cheap = _not_modified(request, place, etag, live=not text_form)
    if cheap is not None:
        return cheap
    commit = await reader.commit(oid)
    parent = commit.parents[0] if commit.parents else None
    if parent is not None and await reader.info(parent) is None:
        parent = None  # a shallow repository's boundary commit: shown against the empty tree
    if text_form:
        args = ["format-patch", "--stdout", "-1", oid] if text_form == "patch" else (
            ["diff-tree", "-p", "-M", "--no-color", parent, oid] if parent else
            ["diff-tree", "--no-commit-id", "-p", "-M", "--no-color", "--root", oid])
        headers = _immutable_headers(place, etag)
        headers["X-Content-Type-Options"] = "nosniff"
        return Stream(_stream(reader, args), media_type="text/plain", headers=headers)
    diff = await read_diff(reader, parent, oid)
    context = await _common(repo_service, mirror_service, place)
    context.update({"commit": commit, "diff": diff, "view": "commit",
                    "split": request.query_params.get("style") == "split",
                    "parents": commit.parents, "statuses": await statuses_for(repo_service, row, [oid]),
                    "file_raw": lambda f: place.url("raw", f.path),
                    "file_src": lambda f: place.url("src", f.path),
                    "full_diff_url": f"{place.base}/commit/{oid}.diff"})
    return _page(request, place, row, private, "forge/browse/commit.html", context, etag, live=True)


async def _stream(reader: Reader, args: list[str]) -> AsyncIterator[bytes]:
    async with reader.stream(*args) as out:
        while chunk := await out.read(STREAM_CHUNK):
            yield chunk


# -- branches and tags ----------------------------------------------------------------------------------
@get("/forge/{owner:str}/{repo:str}/branches", opt=PAGE_OPT, name="forge:branches", include_in_schema=False)
@_guard
async def branches(request: Request[Any, Any, Any], repo_service: RepoService, mirror_service: MirrorService,
                   owner: str, repo: str) -> Response[Any]:
    return await _refs_page(request, repo_service, mirror_service, owner, repo, "refs/heads/", "branches")


@get("/forge/{owner:str}/{repo:str}/tags", opt=PAGE_OPT, name="forge:tags", include_in_schema=False)
@_guard
async def tags(request: Request[Any, Any, Any], repo_service: RepoService, mirror_service: MirrorService,
               owner: str, repo: str) -> Response[Any]:
    return await _refs_page(request, repo_service, mirror_service, owner, repo, "refs/tags/", "tags")


async def _refs_page(request: Request[Any, Any, Any], service: RepoService, mirrors: MirrorService, owner: str,
                     name: str, prefix: str, view: str) -> Response[Any]:
    row, private = await _repo(request, service, owner, name)
    after = request.query_params.get("after", "") or ""
    place = Place(row, owner, "branch", row.default_branch, "", b"", False, private)
    etag = _etag(place, view, f"{after}\0{await _stamp(service, row)}")
    cheap = _not_modified(request, place, etag, live=True)
    if cheap is not None:
        return cheap
    reader = _reader(service, row)
    refs = [r for r in await service.refs(row, prefix) if r.name.removeprefix(prefix) > after]
    shown = refs[:REFS_SHOWN]
    items: list[dict[str, Any]] = []
    for ref in shown:
        short = ref.name.removeprefix(prefix)
        target = ref.peeled or ref.oid
        try:
            commit: Commit | None = await reader.commit(target)
        except NotFound:
            commit = None
        tag = None
        if ref.peeled:  # an annotated tag: its own object carries the message
            try:
                tag = await reader.tag(ref.oid)
            except NotFound:
                tag = None
        kind = "branch" if prefix == "refs/heads/" else "tag"
        items.append({"name": short, "oid": target, "commit": commit, "tag": tag,
                      "url": f"{place.base}/src/{kind}/{_q(short)}",
                      "commits_url": f"{place.base}/commits/{kind}/{_q(short)}",
                      "archive": f"{place.base}/archive/{_q(short)}",
                      "compare_url": f"{place.base}/compare/{_q(row.default_branch)}...{_q(short)}"})
    context = await _common(service, mirrors, place)
    context.update({"items": items, "view": view,
                    "next_url": f"{place.base}/{view}?after={quote(shown[-1].name.removeprefix(prefix))}"
                    if len(refs) > REFS_SHOWN else None,
                    "statuses": await statuses_for(service, row, [i["oid"] for i in items])})
    return _page(request, None, row, private, f"forge/browse/{view}.html", context, etag)


# -- compare ----------------------------------------------------------------------------------------------
async def _resolve_any(service: RepoService, reader: Reader, repo: ForgeRepo, text: str) -> str:
    """A branch, a tag (peeled) or a commit id → a commit id; NotFound otherwise."""
    if not text or len(text) > 255 or "\0" in text or "\n" in text:
        raise NotFound
    for prefix in ("refs/heads/", "refs/tags/"):
        for ref in await service.refs(repo, prefix + text):
            if ref.name == prefix + text:
                return ref.peeled or ref.oid
    return await reader.resolve_sha(text.lower())


@get("/forge/{owner:str}/{repo:str}/compare/{spec:path}", opt=PAGE_OPT, name="forge:compare",
     include_in_schema=False)
@_guard
async def compare(request: Request[Any, Any, Any], repo_service: RepoService, mirror_service: MirrorService,
                  owner: str, repo: str, spec: str) -> Response[Any]:
    row, private = await _repo(request, repo_service, owner, repo)
    try:
        text = _tail(request, "compare").decode("utf-8")
    except UnicodeDecodeError:
        raise NotFound from None
    base_name, sep, head_name = text.partition("...")
    if not sep:
        raise NotFound
    reader = _reader(repo_service, row)
    base_oid = await _resolve_any(repo_service, reader, row, base_name)
    head_oid = await _resolve_any(repo_service, reader, row, head_name)
    place = Place(row, owner, "commit", head_oid, head_oid, b"", False, private)
    etag = _etag(place, "compare", f"{base_name}\0{base_oid}\0{head_name}\0{head_oid}")
    cheap = _not_modified(request, place, etag)
    if cheap is not None:
        return cheap
    merge_base = await reader.merge_base(base_oid, head_oid)
    out = await reader.run("log", "--format=%H", "--max-count=250", f"{base_oid}..{head_oid}", "--")
    listed = [await reader.commit(oid) for oid in out.decode().split()]
    diff = await read_diff(reader, merge_base or base_oid, head_oid) if listed else Diff([])
    context = await _common(repo_service, mirror_service, place)
    context.update({"view": "compare", "base_name": base_name, "head_name": head_name, "commits": listed, "diff": diff,
                    "merge_base": merge_base, "split": False,
                    "file_raw": lambda f: place.url("raw", f.path), "file_src": lambda f: place.url("src", f.path),
                    "full_diff_url": None})
    return _page(request, None, row, private, "forge/browse/compare.html", context, etag)


# -- archives ---------------------------------------------------------------------------------------------
FORMATS = {".zip": ("zip", "application/zip"), ".tar.gz": ("tar.gz", "application/gzip")}


@get("/forge/{owner:str}/{repo:str}/archive/{spec:path}", opt={"exclude_from_csrf": True}, name="forge:archive",
     include_in_schema=False)
@_guard
async def archive(request: Request[Any, Any, Any], repo_service: RepoService, forge_runtime: ForgeRuntime,
                  owner: str, repo: str, spec: str) -> Response[Any]:
    row, private = await _repo(request, repo_service, owner, repo)
    try:
        text = _tail(request, "archive").decode("utf-8")
    except UnicodeDecodeError:
        raise NotFound from None
    suffix = next((s for s in FORMATS if text.endswith(s)), None)
    if suffix is None:
        raise NotFound
    ref_name = text.removesuffix(suffix)
    reader = _reader(repo_service, row)
    oid = await _resolve_any(repo_service, reader, row, ref_name)
    fmt, media_type = FORMATS[suffix]
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in ref_name)
    filename = f"{row.name}-{slug}{suffix}"
    immutable = FULL_OID.match(ref_name) is not None
    place = Place(row, owner, "commit", oid, oid, b"", immutable, private)
    etag = f'"{oid}-archive{suffix}"'
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(b"", status_code=304, headers={"ETag": etag})
    slot = forge_runtime.limiter.try_acquire(row.id)
    if slot is None:
        raise HTTPException(status_code=429, detail="Too many git processes for this repository; try again.",
                            headers={"Retry-After": "5"})
    headers = _immutable_headers(place, etag) if immutable else {
        "Cache-Control": PRIVATE_REVALIDATE if private else "public, max-age=0, must-revalidate", "ETag": etag}
    headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    headers["X-Content-Type-Options"] = "nosniff"
    args = ["archive", f"--format={fmt}", f"--prefix={row.name}-{slug}/", oid]

    async def body() -> AsyncIterator[bytes]:
        try:
            async with reader.stream(*args) as out:
                while chunk := await out.read(STREAM_CHUNK):
                    yield chunk
        finally:
            slot.release()

    return Stream(body(), media_type=media_type, headers=headers)


router = Router(
    path="/",
    dependencies=DEPENDENCIES,
    opt=access.public(owner="repo"),  # as the repository page: private repositories only to readers
    route_handlers=[src, raw, blame, commits, commit_page, branches, tags, compare, archive],
)
