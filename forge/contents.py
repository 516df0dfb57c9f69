"""Object reads and file commits behind the Gitea contents, git-data and commit endpoints.

Reads by object id (types, trees, blobs, the entry at a path) go through the code browser's pool of
``git cat-file --batch-command`` children (forge/catfile.py): no process per read, and an object id
names the same bytes whatever the pool's age. Ref names are still resolved by a short ``rev-parse``
(the writes below take their compare-and-swap parent from it, and must see a push that just
happened); history walks (``log``, ``rev-list``, ``diff-tree``) stay short children with deadlines.

Writes (``POST|PUT|DELETE /contents/{path}``) make a real commit with git plumbing and never touch
a work tree: ``hash-object -w`` for the blob, a *temporary index* (``GIT_INDEX_FILE``) seeded with
``read-tree <parent>`` and edited with ``update-index``, ``write-tree``, ``commit-tree``; then the
branch moves through :meth:`forge.services.RepoService.update_refs_cas` with the parent as the
expected old value (compare-and-swap: a concurrent push makes it a 409 and nothing moves), under
the repository's push policy, with the same ref sync and ``forge.push`` event as a push. A stale
``sha`` (the blob the client last saw) is a 409 before anything is written; the objects of a
refused write are unreferenced and go with the next ``git gc``.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.forms import InputProblems
from domains.account.models import User
from forge.browse.gitread import Reader
from forge.catfile import BatchProcess, pool_for
from forge.models import ForgeRepo
from forge.policy import check_ref_format
from forge.services import RefConflict, RefUpdate, RepoService, branch_name_problem
from forge.storage import GitError, RepoStore, run_git

READ_DEADLINE = 15.0
MAX_PATH = 4096
MAX_COMPONENT = 255
MAX_BLOB_INLINE = 10 * 1024 * 1024  # the contents API base64s at most this much (Gitea: setting.API.DefaultMaxBlobSize)
MAX_WRITE = 50 * 1024 * 1024
_HEX = re.compile(r"^[0-9a-f]{4,64}$")
_FULL_OID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class Conflict(Exception):
    """A stale sha or a moved branch: 409, nothing written."""


@dataclass(frozen=True)
class Entry:
    mode: str
    type: str  # blob, tree, commit (a submodule)
    sha: str
    size: int
    path: str

    @property
    def kind(self) -> str:
        """Gitea's ContentsResponse.type."""
        if self.type == "tree":
            return "dir"
        if self.type == "commit":
            return "submodule"
        return "symlink" if self.mode == "120000" else "file"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def path_problem(path: str) -> str | None:
    """Why a repository path is not acceptable: ``..``, NUL, control characters, over-long parts, ``.git``."""
    if len(path) > MAX_PATH:
        return f"A path may have {MAX_PATH} characters at most."
    if any(ord(ch) < 32 or ch == "\x7f" for ch in path) or "\\" in path:
        return "A path may not contain control characters or backslashes."
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            return "A path may not contain empty, '.' or '..' parts."
        if len(part.encode()) > MAX_COMPONENT:
            return f"A path component may have {MAX_COMPONENT} bytes at most."
        if part.lower() == ".git":
            return "A path may not contain '.git'."
    return None


def clean_path(path: str) -> str:
    return path.strip("/")


async def resolve(store: RepoStore, repo_id: uuid.UUID, ref: str) -> str | None:
    """The commit a branch, a tag or a (possibly abbreviated) commit id names, or None.

    Only ``refs/heads/``, ``refs/tags/`` and object ids are looked at, never git's other
    ``rev-parse`` spellings (``HEAD~2``, ``refs/mirror-incoming/...``, ``:/text``)."""
    if not ref or len(ref) > 255 or "\x00" in ref:
        return None
    candidates = []
    for prefix in ("refs/heads/", "refs/tags/"):
        full = ref if ref.startswith(prefix) else prefix + ref
        if check_ref_format(full):
            candidates.append(full)
    if _HEX.match(ref):
        candidates.append(ref)
    for candidate in dict.fromkeys(candidates):
        code, out, _err = await store.git(repo_id, "rev-parse", "--verify", "--quiet", "--end-of-options",
                                          f"{candidate}^{{commit}}", check=False, deadline=READ_DEADLINE)
        if code == 0 and out.strip():
            return out.decode().strip()
    return None


async def object_type(store: RepoStore, repo_id: uuid.UUID, oid: str) -> str | None:
    if not _HEX.match(oid):
        return None
    info = await pool_for(store).info(repo_id, oid)
    return info.type if info is not None else None


def _tree_records(data: bytes) -> list[tuple[str, bytes, str]]:
    """git's tree object (``<octal mode> SP <name> NUL <20-byte id>``) as (mode, name, id), in git's order."""
    out = []
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        out.append((data[pos:space].decode(), data[space + 1:nul], data[nul + 1:nul + 21].hex()))
        pos = nul + 21
    return out


def _entry_of(mode: str, sha: str, size: int, path: str) -> Entry:
    """ls-tree's view of a tree record: six-digit mode, the object type."""
    mode = mode.zfill(6)
    kind = "tree" if mode == "040000" else "commit" if mode == "160000" else "blob"
    return Entry(mode, kind, sha, size, path)


async def _tree_entries(store: RepoStore, repo_id: uuid.UUID, tree: str, prefix: str) -> list[Entry] | None:
    """A tree's entries with blob sizes (``ls-tree -l``), over one leased cat-file child."""
    async def work(proc: BatchProcess) -> list[Entry] | None:
        got = await proc.contents(tree.encode())
        if got is None or got[0].type != "tree" or got[1] is None:
            return None
        entries = []
        for mode, name, sha in _tree_records(got[1]):
            kind = _entry_of(mode, sha, 0, "").type
            info = await proc.info(sha.encode()) if kind == "blob" else None
            path = name.decode(errors="surrogateescape")
            entries.append(_entry_of(mode, sha, info.size if info else 0, f"{prefix}{path}" if prefix else path))
        return entries

    return await pool_for(store).run(repo_id, work)  # retried once on a new child if this one dies


def _parse_ls_tree(out: bytes, prefix: str = "") -> list[Entry]:
    entries = []
    for record in out.split(b"\x00"):
        if not record:
            continue
        meta, _tab, name = record.partition(b"\t")
        mode, kind, sha, size = meta.decode().split(maxsplit=3)
        path = name.decode(errors="surrogateescape")
        entries.append(Entry(mode, kind, sha, int(size) if size.strip().isdigit() else 0,
                             f"{prefix}{path}" if prefix else path))
    return entries


async def entry_at(store: RepoStore, repo_id: uuid.UUID, commit: str, path: str) -> Entry | None:
    """The tree entry at ``path`` in ``commit`` (None when absent); ``""`` is the root tree."""
    if "\n" in commit or "\0" in commit:
        return None
    pool = pool_for(store)
    root = await pool.info(repo_id, f"{commit}^{{tree}}")
    if root is None or root.type != "tree":
        return None
    entry = Entry("040000", "tree", root.oid, 0, "")
    walked = ""
    # One tree read per path component, each on the pool (the tree of a commit never changes).
    for part in path.split("/") if path else []:
        if entry.type != "tree":
            return None
        got = await pool.read(repo_id, entry.sha)
        if got is None or got[1] is None:
            return None
        raw = part.encode(errors="surrogateescape")
        record = next((r for r in _tree_records(got[1]) if r[1] == raw), None)
        if record is None:
            return None
        walked = f"{walked}/{part}" if walked else part
        entry = _entry_of(record[0], record[2], 0, walked)
    if entry.type == "blob":
        info = await pool.info(repo_id, entry.sha)
        entry = Entry(entry.mode, entry.type, entry.sha, info.size if info else 0, entry.path)
    return entry


async def list_tree(store: RepoStore, repo_id: uuid.UUID, tree: str, *, prefix: str = "",
                    recursive: bool = False) -> list[Entry]:
    if not recursive:
        if not _HEX.match(tree):
            return []
        return await _tree_entries(store, repo_id, tree, prefix) or []
    # A recursive listing is one ``ls-tree -r`` child rather than a cat-file round trip per subtree.
    args = ["ls-tree", "-l", "-z", "-r", "-t", tree]
    code, out, _err = await store.git(repo_id, *args, check=False, deadline=READ_DEADLINE)
    return _parse_ls_tree(out, prefix) if code == 0 else []


async def read_blob(store: RepoStore, repo_id: uuid.UUID, sha: str, limit: int = MAX_BLOB_INLINE) -> bytes | None:
    """The blob's bytes, or None when it is larger than ``limit``, absent or not a blob."""
    got = await pool_for(store).read(repo_id, sha, max_size=limit)
    if got is None or got[0].type != "blob":
        return None
    return got[1]


async def last_commits(store: RepoStore, repo_id: uuid.UUID, commit: str, directory: str,
                       names: list[str]) -> dict[str, str]:
    """{entry name: id of the newest commit that touched it} for a directory listing: the code
    browser's bounded scan (one ``git log`` read until every entry is seen, at most
    ``LAST_COMMIT_SCAN`` commits back; entries not reached are left out)."""
    reader = Reader(store, pool_for(store), repo_id)
    raw = {n.encode(errors="surrogateescape"): n for n in names}
    found = await reader.last_commits(commit, directory.encode(errors="surrogateescape"), list(raw))
    return {raw[name]: hit[0] for name, hit in found.items()}


async def last_commit(store: RepoStore, repo_id: uuid.UUID, commit: str, path: str) -> str:
    code, out, _err = await store.git(repo_id, "log", "-1", "--format=%H", commit, "--", path or ".", check=False,
                                      deadline=READ_DEADLINE)
    return out.decode().strip() if code == 0 else ""


@dataclass(frozen=True)
class CommitObject:
    sha: str
    tree: str
    parents: list[str]
    author_name: str
    author_email: str
    authored: datetime
    committer_name: str
    committer_email: str
    committed: datetime
    message: str


_FMT = "%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B%x1e"


def _parse_commits(out: bytes) -> list[CommitObject]:
    found = []
    for record in out.decode(errors="replace").split("\x1e"):
        record = record.lstrip("\n")
        if not record:
            continue
        parts = record.split("\x00", 9)
        if len(parts) != 10:
            continue
        sha, tree, parents, an, ae, ad, cn, ce, cd, body = parts
        found.append(CommitObject(sha, tree, parents.split(), an, ae, datetime.fromisoformat(ad), cn, ce,
                                  datetime.fromisoformat(cd), body.rstrip("\n")))
    return found


async def commit_object(store: RepoStore, repo_id: uuid.UUID, sha: str) -> CommitObject | None:
    code, out, _err = await store.git(repo_id, "log", "-1", "--no-walk", f"--format={_FMT}", sha, "--",
                                      check=False, deadline=READ_DEADLINE)
    found = _parse_commits(out) if code == 0 else []
    return found[0] if found else None


async def history(store: RepoStore, repo_id: uuid.UUID, commit: str, *, skip: int, limit: int,
                  path: str = "") -> tuple[list[CommitObject], int]:
    """A page of ``git log`` from ``commit`` (optionally touching ``path``) and the total count."""
    spec = [commit, "--", *([path] if path else [])]
    code, out, _err = await store.git(repo_id, "rev-list", "--count", *spec, check=False, deadline=30)
    total = int(out.strip() or 0) if code == 0 else 0
    code, out, _err = await store.git(repo_id, "log", f"--skip={skip}", f"--max-count={limit}", f"--format={_FMT}",
                                      *spec, check=False, deadline=30)
    return (_parse_commits(out) if code == 0 else []), total


async def changed_files(store: RepoStore, repo_id: uuid.UUID, sha: str) -> list[tuple[str, str]]:
    """(status, path) of a commit against its first parent (``diff-tree --root``)."""
    code, out, _err = await store.git(repo_id, "diff-tree", "--root", "--no-commit-id", "-r", "--name-status",
                                      "--no-renames", "-z", sha, check=False, deadline=30)
    if code != 0:
        return []
    parts = out.split(b"\x00")
    pairs = []
    for i in range(0, len(parts) - 1, 2):
        pairs.append((parts[i].decode(), parts[i + 1].decode(errors="surrogateescape")))
    return pairs


# -- writes --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WriteResult:
    commit: str
    parent: str | None
    blob: str | None  # None after a delete
    branch: str


async def write_file(service: RepoService, repo: ForgeRepo, user: User, *, path: str, content: bytes | None,
                     sha: str | None, branch: str | None, new_branch: str | None, message: str,
                     author: tuple[str, str] | None = None, committer: tuple[str, str] | None = None,
                     mode: str = "create") -> WriteResult:
    """Create (``mode="create"``), update or delete ``path`` on a branch with one new commit.

    Raises :class:`InputProblems` (422) for bad input and a path that exists (create) or does
    not (update/delete), :class:`Conflict` (409) for a stale ``sha`` or a branch that moved.
    """
    store = service.store
    errors: dict[str, str] = {}
    path = clean_path(path)
    path_text = path_problem(path) if path else "Name the file."
    if path_text:
        errors["filepath"] = path_text
    base_branch = branch or repo.default_branch
    if problem := branch_name_problem(base_branch):
        errors["branch"] = problem
    if new_branch is not None and new_branch != "" and (problem := branch_name_problem(new_branch)):
        errors["new_branch"] = problem
    if content is not None and len(content) > MAX_WRITE:
        errors["content"] = f"Files may have {MAX_WRITE // (1024 * 1024)} MB at most."
    if mode in ("update", "delete") and not (sha and _FULL_OID.match(sha)):
        errors["sha"] = "Give the sha of the file you are changing."
    if len(message) > 64_000 or "\x00" in message:
        errors["message"] = "The message is too long or contains NUL."
    if errors:
        raise InputProblems(errors)
    target = new_branch or base_branch
    parent = await resolve(store, repo.id, f"refs/heads/{base_branch}")
    empty = not await service.refs(repo, "refs/heads/")
    if parent is None and not (empty and mode == "create"):
        raise InputProblems({"branch": f"Branch {base_branch!r} does not exist."}, status=404)
    if new_branch and await resolve(store, repo.id, f"refs/heads/{new_branch}") is not None:
        raise InputProblems({"new_branch": f"Branch {new_branch!r} already exists."})
    current = await entry_at(store, repo.id, parent, path) if parent else None
    if mode == "create" and current is not None:
        raise InputProblems({"filepath": "A file already exists at that path."})
    if mode in ("update", "delete"):
        if current is None or current.type != "blob":
            raise InputProblems({"filepath": "There is no file at that path."}, status=404)
        if current.sha != sha:
            raise Conflict(f"sha does not match [given: {sha}, expected: {current.sha}]")
    if mode == "create" and parent is not None:
        # A file under a path that is a file ("a.txt/b"): git would silently replace it.
        prefix = ""
        for part in path.split("/")[:-1]:
            prefix = f"{prefix}/{part}" if prefix else part
            above = await entry_at(store, repo.id, parent, prefix)
            if above is not None and above.type != "tree":
                raise InputProblems({"filepath": f"{prefix!r} is a file, not a directory."})

    git_dir = str(store.locate(repo.id))
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    a_name, a_email = author or (user.display_name or user.username, user.email)
    c_name, c_email = committer or (a_name, a_email)
    with tempfile.TemporaryDirectory(prefix="forge-contents-") as tmp:
        env = store.git_env({
            "GIT_INDEX_FILE": str(Path(tmp) / "index"),
            "GIT_AUTHOR_NAME": a_name, "GIT_AUTHOR_EMAIL": a_email, "GIT_AUTHOR_DATE": now,
            "GIT_COMMITTER_NAME": c_name, "GIT_COMMITTER_EMAIL": c_email, "GIT_COMMITTER_DATE": now,
        })

        async def git(*args: str, data: bytes | None = None) -> str:
            _code, out, _err = await run_git(["--git-dir", git_dir, *args], env=env, input=data, deadline=60)
            return out.decode().strip()

        try:
            if parent is not None:
                await git("read-tree", parent)
            blob: str | None = None
            # update-index --index-info (git-update-index(1)): "<mode> <sha1>\t<path>" per line, mode 0
            # removes the entry; a path is passed verbatim, whatever it starts with (no option parsing).
            if content is None:
                await git("update-index", "--index-info", data=f"0 {'0' * 40}\t{path}\n".encode())
            else:
                blob = await git("hash-object", "-w", "--stdin", data=content)
                file_mode = current.mode if current is not None and current.mode in ("100644", "100755") else "100644"
                await git("update-index", "--index-info", data=f"{file_mode} {blob}\t{path}\n".encode())
            tree = await git("write-tree")
            commit = await git("commit-tree", tree, *(["-p", parent] if parent else []), "-F", "-",
                               data=(message or f"Update {path}").encode())
        except GitError as exc:
            raise InputProblems({"filepath": f"git refused the change: {exc.stderr.strip()[:300]}"}) from None
    old = parent if target == base_branch else None
    try:
        await service.update_refs_cas(repo, [RefUpdate(f"refs/heads/{target}", commit, old)], actor_id=user.id,
                                      source="api", policy=await service.push_policy(repo))
    except RefConflict as exc:
        raise Conflict(f"The branch changed while writing: {exc}") from None
    return WriteResult(commit=commit, parent=parent, blob=blob, branch=target)


# -- auto_init (Gitea CreateRepoOption.auto_init) ---------------------------------------------------------------
TEMPLATES = Path(__file__).parent / "templates_init"
LICENSES = ("MIT", "Apache-2.0")
GITIGNORES = ("Python", "Node")


def init_problems(license: str, gitignores: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    if license and license not in LICENSES:
        errors["license"] = f"Unknown licence; use one of {', '.join(LICENSES)}."
    unknown = [g for g in gitignores.split(",") if g.strip() and g.strip() not in GITIGNORES]
    if unknown:
        errors["gitignores"] = f"Unknown .gitignore template; use {', '.join(GITIGNORES)}."
    return errors


async def auto_init(service: RepoService, repo: ForgeRepo, user: User, *, description: str, license: str,
                    gitignores: str) -> str:
    """The first commit of a new repository: README.md, and LICENSE and .gitignore when asked for."""
    files: dict[str, bytes] = {"README.md": f"# {repo.name}\n\n{description}\n".encode()}
    if license:
        text = (TEMPLATES / "licenses" / license).read_text()
        files["LICENSE"] = text.replace("{year}", str(datetime.now(UTC).year)).replace(
            "{owner}", user.display_name or user.username).encode()
    chosen = [g.strip() for g in gitignores.split(",") if g.strip()]
    if chosen:
        files[".gitignore"] = b"\n".join((TEMPLATES / "gitignore" / g).read_bytes() for g in chosen)
    store = service.store
    git_dir = str(store.locate(repo.id))
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    name, email = user.display_name or user.username, user.email
    with tempfile.TemporaryDirectory(prefix="forge-init-") as tmp:
        env = store.git_env({"GIT_INDEX_FILE": str(Path(tmp) / "index"), "GIT_AUTHOR_NAME": name,
                             "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": now, "GIT_COMMITTER_NAME": name,
                             "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": now})

        async def git(*args: str, data: bytes | None = None) -> str:
            _code, out, _err = await run_git(["--git-dir", git_dir, *args], env=env, input=data, deadline=60)
            return out.decode().strip()

        for path, data in files.items():
            blob = await git("hash-object", "-w", "--stdin", data=data)
            await git("update-index", "--index-info", data=f"100644 {blob}\t{path}\n".encode())
        tree = await git("write-tree")
        commit = await git("commit-tree", tree, "-F", "-", data=b"Initial commit\n")
    await service.update_refs_cas(repo, [RefUpdate(f"refs/heads/{repo.default_branch}", commit, None)],
                                  actor_id=user.id, source="api")
    return commit
