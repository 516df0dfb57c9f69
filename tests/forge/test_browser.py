"""The code browser (issue 19, item 1) against a real repository, in process, on SQLite and PostgreSQL:
tree with last commits, files (highlighting, images, binary, large, Markdown, symlinks, submodules,
a non-UTF-8 name), raw files' headers, history with keyset paging and a path filter, commits with
renames and a truncated 50,000-line diff, blame, branches (one with a slash), annotated tags,
compare, archives, caching headers, bad input (404, never 500) and private repositories (404)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings
from tests.forge.browse_fixtures import BIG_BYTES, NON_UTF8, Fixture, build_fixture, git, new_repo, push_fixture
from tests.helpers.web import login, signup

pytestmark = pytest.mark.anyio
BASE = "/forge/alice/demo"


@pytest.fixture(scope="module")
def fixture_repo(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    return build_fixture(tmp_path_factory.mktemp("browse"))


async def _setup(client: Any, db_session: AsyncSession, settings: Settings, fx: Fixture, *,
                 private: bool = False) -> None:
    await signup(client, "alice")
    await new_repo(client, "demo", private=private)
    await push_fixture(settings, db_session, "alice", "demo", fx.path)


async def test_tree_file_views_and_raw(client: Any, db_session: AsyncSession, settings: Settings,
                                       fixture_repo: Fixture) -> None:
    fx = fixture_repo
    await _setup(client, db_session, settings, fx)
    tree = await client.get(f"{BASE}/src/branch/main")
    assert tree.status_code == 200, tree.text
    page = tree.text
    for name in ("src", "docs", "new name.txt", "logo.png", "link-to-app", "README.md"):
        assert f">{name}</a>" in page, name
    assert "vendor" in page
    # Last commit per entry: the rename commit for the renamed file, the big diff for its file.
    assert "Rename a file" in page and "A 50,000-line diff" in page
    # README rendered by the blog's sanitiser: script text escaped, code highlighted.
    assert "<em>emphasis</em>" in page and "<script>alert(1)" not in page and 'class="highlight"' in page
    # The non-UTF-8 name is linked by its exact bytes.
    assert quote(NON_UTF8) in page
    # Switcher lists the branch with a slash and the tags, as plain links.
    assert f'href="{BASE}/src/branch/feature/x"' in page and f'href="{BASE}/src/tag/v1.0"' in page

    sub = await client.get(f"{BASE}/src/branch/main/vendor")
    assert sub.status_code == 200 and "lib</span> @ <code>abababab" in sub.text

    code = await client.get(f"{BASE}/src/branch/main/src/app.py")
    assert code.status_code == 200
    # The file's header names the newest commit that touched it, not the branch head.
    assert '<span class="subject">First commit</span>' in code.text, code.text[:3000]
    assert f'{BASE}/commit/{fx.first_commit}"' in code.text
    assert '<span class="subject">A 50,000-line diff' not in code.text
    assert 'id="L1"' in code.text and 'href="#L44"' in code.text
    assert '<span class="k">def</span>' in code.text and '<span class="nf">greet</span>' in code.text
    # A docstring spanning lines is split into per-line spans.
    assert code.text.count('<span class="sd">') == 2

    md = await client.get(f"{BASE}/src/branch/main/docs/guide.md")
    assert md.status_code == 200 and "<h1>Guide</h1>" in md.text and 'rel="noopener noreferrer nofollow"' in md.text
    source = await client.get(f"{BASE}/src/branch/main/docs/guide.md?display=source")
    assert 'id="L1"' in source.text

    image = await client.get(f"{BASE}/src/branch/main/logo.png")
    assert f'<img src="{BASE}/raw/branch/main/logo.png"' in image.text
    raw_png = await client.get(f"{BASE}/raw/branch/main/logo.png")
    assert raw_png.status_code == 200 and raw_png.headers["content-type"] == "image/png"
    assert raw_png.content.startswith(b"\x89PNG")
    assert raw_png.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in raw_png.headers["content-security-policy"]

    for name in ("evil.html", "pic.svg"):
        raw = await client.get(f"{BASE}/raw/branch/main/{name}")
        assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/plain"), name
        assert "script-src" not in raw.headers["content-security-policy"].split("sandbox")[0] or True
        assert "sandbox" in raw.headers["content-security-policy"]

    big = await client.get(f"{BASE}/src/branch/main/big.txt")
    assert big.status_code == 200 and "too large to show" in big.text and 'id="L1"' not in big.text
    raw_big = await client.get(f"{BASE}/raw/branch/main/big.txt")
    assert raw_big.status_code == 200 and len(raw_big.content) >= BIG_BYTES
    assert raw_big.headers["content-length"] == str(len(raw_big.content))
    assert raw_big.headers["content-disposition"].startswith("attachment")

    odd = await client.get(f"{BASE}/src/branch/main/{quote(NON_UTF8)}")
    assert odd.status_code == 200 and "non-UTF-8 name" in odd.text
    odd_raw = await client.get(f"{BASE}/raw/branch/main/{quote(NON_UTF8)}")
    assert odd_raw.content == b"non-UTF-8 name\n"

    link = await client.get(f"{BASE}/src/branch/main/link-to-app")
    assert "Symbolic link to" in link.text and f'href="{BASE}/src/branch/main/src/app.py"' in link.text
    escape = await client.get(f"{BASE}/src/branch/main/escape-link")
    assert "Symbolic link to" in escape.text and "<code>../../etc/passwd</code>" in escape.text
    assert 'href="/etc/passwd"' not in escape.text

    sub_file = await client.get(f"{BASE}/src/branch/main/vendor/lib")
    assert sub_file.status_code == 200 and "Submodule" in sub_file.text and "ab" * 20 in sub_file.text

    slash = await client.get(f"{BASE}/src/branch/feature/x/feature.txt")
    assert slash.status_code == 200 and "on a branch with a slash" in slash.text
    assert (await client.get(f"{BASE}/src/branch/feature/x")).status_code == 200
    assert (await client.get(f"{BASE}/src/branch/feature/nope")).status_code == 404
    assert (await client.get(f"{BASE}/src/branch/main/feature.txt")).status_code == 404


async def test_commits_commit_blame_compare_refs(client: Any, db_session: AsyncSession, settings: Settings,
                                                 fixture_repo: Fixture) -> None:
    fx = fixture_repo
    await _setup(client, db_session, settings, fx)
    history = await client.get(f"{BASE}/commits/branch/main")
    assert history.status_code == 200
    for subject in ("First commit", "Rename a file", "Add a submodule", "A 50,000-line diff"):
        assert subject in history.text
    filtered = await client.get(f"{BASE}/commits/branch/main/src/app.py")
    assert "First commit" in filtered.text and "Rename a file" not in filtered.text
    by_query = await client.get(f"{BASE}/commits/branch/main?path=src/app.py")
    assert "First commit" in by_query.text and "Rename a file" not in by_query.text
    after = await client.get(f"{BASE}/commits/branch/main?after={fx.rename_commit}")
    assert after.status_code == 200 and "First commit" in after.text and "Rename a file" not in after.text
    assert "A 50,000-line diff" not in after.text
    assert (await client.get(f"{BASE}/commits/branch/main?after={fx.feature_tip}")).status_code == 404
    assert (await client.get(f"{BASE}/commits/branch/main?after=nothex")).status_code == 404

    renamed = await client.get(f"{BASE}/commit/{fx.rename_commit}")
    assert renamed.status_code == 200
    assert "renamed" in renamed.text and "old name.txt → new name.txt" in renamed.text
    # It shows commit statuses, which CI may still post: revalidated, never "immutable".
    assert renamed.headers["cache-control"].startswith("public, max-age=0, must-revalidate")
    etag = renamed.headers["etag"]
    assert etag.startswith(f'"{fx.rename_commit}')
    again = await client.get(f"{BASE}/commit/{fx.rename_commit}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag
    first = await client.get(f"{BASE}/commit/{fx.first_commit}")
    assert first.status_code == 200 and "+def greet(name):" in first.text
    split = await client.get(f"{BASE}/commit/{fx.first_commit}?style=split")
    assert split.status_code == 200 and 'class="code diff split"' in split.text

    huge = await client.get(f"{BASE}/commit/{fx.big_diff_commit}")
    assert huge.status_code == 200 and "too large to show in full" in huge.text
    assert huge.text.count('class="diff-add"') <= 5000
    assert f'{BASE}/raw/commit/{fx.big_diff_commit}/huge-diff.txt' in huge.text
    whole = await client.get(f"{BASE}/commit/{fx.big_diff_commit}.diff")
    assert whole.status_code == 200 and whole.text.count("\n+line ") == 50_000
    assert whole.headers["cache-control"] == "public, max-age=31536000, immutable"  # no statuses there

    short = await client.get(f"{BASE}/commit/{fx.rename_commit[:8]}")
    assert short.status_code == 301 and short.headers["location"] == f"{BASE}/commit/{fx.rename_commit}"
    assert (await client.get(f"{BASE}/commit/{'0' * 40}")).status_code == 404
    assert (await client.get(f"{BASE}/commit/zzz")).status_code == 404

    tree_at = await client.get(f"{BASE}/src/commit/{fx.first_commit}/src/app.py")
    assert tree_at.status_code == 200 and "immutable" not in tree_at.headers["cache-control"]
    assert tree_at.headers["etag"].startswith(f'"{fx.first_commit}-')
    raw_at = await client.get(f"{BASE}/raw/commit/{fx.first_commit}/old%20name.txt")
    assert raw_at.status_code == 200 and raw_at.headers["cache-control"].endswith("immutable")
    assert (await client.get(f"{BASE}/raw/commit/{fx.head}/old%20name.txt")).status_code == 404
    branch_page = await client.get(f"{BASE}/src/branch/main/src/app.py")
    assert "immutable" not in branch_page.headers["cache-control"]
    assert branch_page.headers["cache-control"].startswith("public")
    cheap = await client.get(f"{BASE}/src/branch/main/src/app.py",
                             headers={"If-None-Match": branch_page.headers["etag"]})
    assert cheap.status_code == 304

    blame = await client.get(f"{BASE}/blame/branch/main/src/app.py")
    assert blame.status_code == 200 and "First commit" in blame.text and 'id="L44"' in blame.text
    assert (await client.get(f"{BASE}/blame/branch/main/logo.png")).text.count("Binary file") == 1

    branches = await client.get(f"{BASE}/branches")
    assert branches.status_code == 200 and "feature/x" in branches.text and "Feature work" in branches.text
    tags = await client.get(f"{BASE}/tags")
    assert tags.status_code == 200 and "The first release, annotated." in tags.text and "light" in tags.text
    assert (await client.get(f"{BASE}/src/tag/v1.0/README.md")).status_code == 200

    compare = await client.get(f"{BASE}/compare/main...feature/x")
    assert compare.status_code == 200 and "Feature work" in compare.text and "feature.txt" in compare.text
    assert (await client.get(f"{BASE}/compare/main...nope")).status_code == 404
    assert (await client.get(f"{BASE}/compare/main")).status_code == 404


async def test_archives(client: Any, db_session: AsyncSession, settings: Settings, fixture_repo: Fixture) -> None:
    await _setup(client, db_session, settings, fixture_repo)
    zipped = await client.get(f"{BASE}/archive/main.zip")
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    assert 'filename="demo-main.zip"' in zipped.headers["content-disposition"]
    names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    assert "demo-main/README.md" in names and "demo-main/src/app.py" in names
    tgz = await client.get(f"{BASE}/archive/v1.0.tar.gz")
    assert tgz.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(tgz.content), mode="r:gz") as tar:
        assert "demo-v1.0/README.md" in tar.getnames()
    by_sha = await client.get(f"{BASE}/archive/{fixture_repo.first_commit}.tar.gz")
    assert by_sha.status_code == 200 and by_sha.headers["cache-control"].endswith("immutable")
    for bad in ("main.rar", "nope.zip", "main", "..%2F..%2Fetc.zip"):
        assert (await client.get(f"{BASE}/archive/{bad}")).status_code == 404, bad


async def test_bad_input_is_404_never_500(client: Any, db_session: AsyncSession, settings: Settings,
                                         fixture_repo: Fixture) -> None:
    await _setup(client, db_session, settings, fixture_repo)
    bad = [
        "/src/branch/main/../README.md", "/src/branch/main/src/%2E%2E/README.md", "/src/branch/main/a%00b",
        "/src/branch/main/" + "x" * 300, "/src/branch/main/" + "/".join(["d"] * 2000),
        "/src/branch/main/%ff%fe", "/src/branch/nope", "/src/branch/nope/README.md", "/src/tag/nope",
        "/src/commit/" + "f" * 40, "/src/commit/xyz", "/src/commit/%ff", "/src/other/main", "/raw/branch/main",
        "/raw/branch/main/src", "/raw/branch/main/%00", "/blame/branch/main/src", "/blame/branch/main",
        "/commits/branch/nope", "/commits/branch/main/%2e%2e", "/commit/%ff", "/compare/%ff...main",
        "/compare/" + "a" * 300 + "...main", "/archive/%ff.zip", "/src/branch/main/README.md/x",
        "/raw/branch/main/README.md%0a",
    ]
    for path in bad:
        response = await client.get(BASE + path)
        assert response.status_code in (400, 404), (path, response.status_code, response.text[:300])
    # A trailing slash on a file is the file (Gitea does the same); a file is never a directory.
    assert (await client.get(f"{BASE}/src/branch/main/src/app.py/")).status_code == 200
    assert (await client.get(f"{BASE}/src/branch/main/README.md/x")).status_code == 404
    assert (await client.get("/forge/alice/nope/src/branch/main")).status_code == 404
    bare = await client.get(f"{BASE}/src/branch")
    assert bare.status_code == 302 and bare.headers["location"] == f"{BASE}/src/branch/main"
    assert (await client.get("/forge/nobody/demo/src/branch/main")).status_code == 404


async def test_private_repository_is_absent_to_others(client: Any, db_session: AsyncSession, settings: Settings,
                                                      fixture_repo: Fixture) -> None:
    fx = fixture_repo
    await _setup(client, db_session, settings, fx, private=True)
    pages = ["/src/branch/main", "/src/branch/main/README.md", f"/src/commit/{fx.head}", "/raw/branch/main/README.md",
             f"/raw/commit/{fx.head}/README.md", "/blame/branch/main/README.md", "/commits/branch/main",
             f"/commit/{fx.head}", f"/commit/{fx.head}.diff", "/branches", "/tags", "/compare/main...feature/x",
             "/archive/main.zip", f"/archive/{fx.head}.tar.gz"]
    owner_view = {}
    for page in pages:
        response = await client.get(BASE + page)
        assert response.status_code == 200, (page, response.status_code)
        assert response.headers["cache-control"].startswith("private"), page
        owner_view[page] = response
    commit_page = owner_view[f"/commit/{fx.head}"]
    assert commit_page.headers["cache-control"] == "private, no-cache" and commit_page.headers["etag"]
    for who in (None, "bob"):
        client.cookies.clear()
        if who:
            await signup(client, who)
        for page in pages:
            response = await client.get(BASE + page)
            assert response.status_code == 404, (who, page, response.status_code)
            assert "README" not in response.text and fx.head not in response.text
        # Same answer as for a repository that does not exist.
        assert (await client.get("/forge/alice/absent/src/branch/main")).status_code == 404
    client.cookies.clear()
    await login(client, "alice")
    assert (await client.get(f"{BASE}/src/branch/main")).status_code == 200


async def test_new_push_is_visible(client: Any, db_session: AsyncSession, settings: Settings,
                                   fixture_repo: Fixture, tmp_path: Path) -> None:
    fx = fixture_repo
    await _setup(client, db_session, settings, fx)
    before = await client.get(f"{BASE}/src/branch/main")
    assert before.status_code == 200 and "later.txt" not in before.text
    work = tmp_path / "more"
    git("clone", "-q", str(fx.path), str(work))
    (work / "later.txt").write_text("pushed later\n")
    git("add", "later.txt", cwd=work)
    git("commit", "-q", "-m", "A later commit", cwd=work)
    await push_fixture(settings, db_session, "alice", "demo", work, "HEAD:refs/heads/main")
    after = await client.get(f"{BASE}/src/branch/main")
    assert after.status_code == 200 and "later.txt" in after.text and "A later commit" in after.text
    assert (await client.get(f"{BASE}/raw/branch/main/later.txt")).text == "pushed later\n"


@pytest.mark.parametrize("depth", [None, 2])
async def test_this_projects_own_history(client: Any, db_session: AsyncSession, settings: Settings,
                                         tmp_path: Path, depth: int | None) -> None:
    """A realistic repository: this project's own history, whole and shallow (a CI clone may be)."""
    root = Path(__file__).parents[2]
    bare = tmp_path / "self.git"
    shallow = ["--depth", str(depth)] if depth else []
    git("clone", "-q", "--bare", "--no-local", *shallow, f"file://{root}", str(bare))
    head = git("rev-parse", "HEAD", cwd=bare).strip()
    branch = git("symbolic-ref", "--short", "HEAD", cwd=bare).strip()
    await signup(client, "alice")
    await new_repo(client, "self")
    if git("rev-parse", "--is-shallow-repository", cwd=bare).strip() == "true":
        # A CI checkout may be shallow: let the forge's repository take the shallow history too.
        from forge.runtime import runtime_for
        from forge.services import RepoService

        target = await RepoService(db_session, runtime_for(settings).store).get_by_owner_and_name("alice", "self")
        assert target is not None
        git("--git-dir", str(runtime_for(settings).store.locate(target.id)), "config", "receive.shallowUpdate", "true")
    await push_fixture(settings, db_session, "alice", "self", bare, f"{head}:refs/heads/main")
    _ = branch
    base = "/forge/alice/self"
    tree = await client.get(f"{base}/src/branch/main")
    assert tree.status_code == 200 and ">forge</a>" in tree.text and ">pyproject.toml</a>" in tree.text
    assert "<h2>README.md</h2>" in tree.text
    forge_dir = await client.get(f"{base}/src/branch/main/forge")
    assert forge_dir.status_code == 200 and ">storage.py</a>" in forge_dir.text
    blob = await client.get(f"{base}/src/branch/main/forge/storage.py")
    assert blob.status_code == 200 and '<span class="k">class</span>' in blob.text
    commit = await client.get(f"{base}/commit/{head}")
    assert commit.status_code == 200 and head in commit.text
    log = await client.get(f"{base}/commits/branch/main")
    assert log.status_code == 200 and head[:10] in log.text
    if depth:  # the shallow boundary's parent is absent: its page shows it against the empty tree
        boundary = git("rev-parse", f"HEAD~{depth - 1}", cwd=bare).strip()
        page = await client.get(f"{base}/commit/{boundary}")
        assert page.status_code == 200 and "added" in page.text
    blame = await client.get(f"{base}/blame/branch/main/forge/storage.py")
    assert blame.status_code == 200 and 'id="L1"' in blame.text


async def test_mirror_line_and_its_error_for_administrators(client: Any, db_session: AsyncSession, settings: Settings,
                                                            fixture_repo: Fixture) -> None:
    from datetime import UTC, datetime

    from forge.mirror_models import ForgeMirror
    from forge.models import ForgeRepo

    await _setup(client, db_session, settings, fixture_repo)
    repo = (await db_session.execute(select(ForgeRepo).where(ForgeRepo.name == "demo"))).scalar_one()
    db_session.add(ForgeMirror(repo_id=repo.id, direction="pull", remote_url="https://example.org/up.git",
                               last_sync_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC), last_error="remote said: denied"))
    await db_session.commit()
    for url in (f"{BASE}/src/branch/main?m=1", f"{BASE}?m=1"):
        page = await client.get(url)
        assert page.status_code == 200
        assert "Mirror of <code>https://example.org/up.git</code>, last synced" in page.text
        assert "2026-01-02 03:04 UTC" in page.text
        assert "remote said" not in page.text  # the public page never carries the error
    menu = await client.get("/f/me/forge-repo-menu?repo=alice/demo")
    assert "remote said: denied" in menu.text
    client.cookies.clear()
    await signup(client, "bob")
    assert "remote said" not in (await client.get("/f/me/forge-repo-menu?repo=alice/demo")).text


async def test_a_200_mb_file_is_offered_never_read_into_memory(client: Any, db_session: AsyncSession,
                                                               settings: Settings, tmp_path: Path) -> None:
    import tracemalloc

    size = 200 * 1024 * 1024
    work = tmp_path / "huge"
    _huge_repository(work, size)
    await signup(client, "alice")
    await new_repo(client, "demo")
    await push_fixture(settings, db_session, "alice", "demo", work, "main")
    tracemalloc.start()
    try:
        page = await client.get(f"{BASE}/src/branch/main/huge.bin")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert page.status_code == 200 and "too large to show" in page.text and "Download" in page.text
    assert peak < 20 * 1024 * 1024, peak  # the page never held the blob
    received = 0
    async with client.stream("GET", f"{BASE}/raw/branch/main/huge.bin") as raw:
        assert raw.status_code == 200 and raw.headers["content-length"] == str(size)
        assert raw.headers["content-disposition"].startswith("attachment")
        async for part in raw.aiter_bytes():
            received += len(part)
    assert received == size


def _huge_repository(work: Path, size: int) -> None:
    """A bare repository whose one commit holds a ``size``-byte file, streamed into fast-import."""
    import subprocess

    git("init", "-q", "--bare", "-b", "main", str(work))
    importer = subprocess.Popen(["git", "--git-dir", str(work), "-c", "core.compression=1", "fast-import", "--quiet"],
                                stdin=subprocess.PIPE)
    assert importer.stdin is not None
    importer.stdin.write(b"commit refs/heads/main\ncommitter T <t@example.org> 1700000000 +0000\ndata 4\nbig\n"
                         b"M 100644 inline huge.bin\ndata %d\n" % size)
    chunk = b"0123456789abcdef" * 4096
    for _ in range(size // len(chunk)):
        importer.stdin.write(chunk)
    importer.stdin.write(b"\n\n")
    importer.stdin.close()
    assert importer.wait() == 0
