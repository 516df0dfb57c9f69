"""Settings from ``ROSE_ASH_*`` environment variables (the operator contract in ARCHITECTURE.md)."""

from __future__ import annotations

import ipaddress
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from app.money import is_currency

PREFIX = "ROSE_ASH_"
# The names under which a browser on this machine reaches a loopback BASE_URL.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
_TRUE = {"1", "true", "yes", "on"}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    base_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path("./var")
    database_url: str = ""
    redis_url: str | None = None
    # Prefix for every Redis key, so several instances (or test runs) can share one server.
    redis_namespace: str = "rose-ash"
    secret_key: str = ""
    federation_allow_private_addresses: bool = False
    # Require a valid HTTP signature on GETs of outboxes, collections and objects.
    federation_authorized_fetch: bool = False
    # Multiplies ActivityPub delivery retry delays (tests shrink the ~2-day schedule).
    federation_retry_scale: float = 1.0
    # Inbox POSTs allowed per client address per minute (counted across processes with Redis).
    federation_inbox_rate_limit: int = 600
    edge_purge_urls: tuple[str, ...] = ()
    # Run the durable job worker inside the web process (``make run``); compose runs it apart.
    worker_in_process: bool = True
    # Let operators close sign-up on a members-only instance.
    signup_open: bool = True
    # Sign-in and sign-up POSTs allowed per client address per minute.
    auth_rate_limit: int = 10
    # OAuth: open RFC 7591 dynamic client registration (an admin can also switch it off at run time),
    # and how many registrations one address may make per hour.
    oauth_dynamic_registration: bool = True
    oauth_registration_rate_limit: int = 10
    # Domains served on their own hostnames, e.g. "blog=blog.coop.test,market=market.coop.test:8443":
    # name=host[:port], the port as browsers send it in ``Host`` (none for the scheme's default).
    # Each host keeps its own session and signs visitors in through the OAuth server (SSO). These
    # and BASE_URL's host are the only hosts the app answers for (factory.py: allowed hosts).
    domain_hosts: tuple[tuple[str, str], ...] = ()
    log_level: str = "INFO"
    # Who may read /metrics (app/metrics.py): a bearer token, and/or peer addresses or networks
    # ("10.0.0.0/8,127.0.0.1"); everybody else gets a 404. Default: this machine only.
    metrics_token: str = ""
    metrics_allow: tuple[str, ...] = ("127.0.0.1", "::1")
    # Ghost: the old site's origin (replaces __GHOST_URL__ in imports) and the webhook secret.
    ghost_url: str = ""
    ghost_webhook_secret: str = ""
    # "id:secret" Admin API key: webhooks then re-fetch the post from Ghost instead of trusting the body.
    ghost_admin_api_key: str = ""
    debug: bool = False
    # Forge limits (``ROSE_ASH_FORGE_*``; forge/config.py applies them): the decompressed body of a
    # push (also git's ``receive.maxInputSize``) and of an upload-pack request, git children per
    # process and per repository per process, and seconds a git request may run or stay silent;
    # seconds a client has to send a fetch request's body (408 after that; a push's body gets
    # forge_timeout), so a slow sender holds neither a git slot nor its buffer for long; bytes all
    # fetch bodies still being received may hold at once, per process (503 with Retry-After past
    # it: those bodies take no slot yet, so slots no longer bound their memory), and the size past
    # which one body moves from memory to a temporary file (it still counts against that budget).
    forge_max_push_bytes: int = 1 << 30
    forge_max_fetch_body_bytes: int = 10 << 20  # git http-backend's own GIT_HTTP_MAX_REQUEST_BUFFER
    forge_max_concurrent: int = 32
    forge_max_per_repo: int = 8
    forge_timeout: float = 3600.0
    forge_idle_timeout: float = 600.0
    forge_body_timeout: float = 60.0
    forge_max_buffered_body_bytes: int = 512 << 20
    forge_body_spill_bytes: int = 4 << 20
    # The market's one currency (ISO 4217, e.g. EUR, GBP, JPY): every variant's price is in it.
    market_currency: str = "EUR"
    # The cart (domains/cart): minutes stock stays reserved once checkout starts, for guests and for
    # members; the flat delivery rate in minor units of the market's currency (0: free); whether
    # delivery is offered at all; the order number prefix (RA-2026-000123).
    cart_reservation_minutes: int = 15
    cart_reservation_minutes_member: int = 20
    cart_delivery_rate: int = 500
    cart_delivery: bool = True
    cart_order_prefix: str = "RA"
    # Minutes an order paid online may wait for its payment before it is cancelled and its stock
    # released (domains/cart/fulfilment.py); where staff notices of new orders go ("" = every admin).
    cart_payment_minutes: int = 60
    cart_staff_email: str = ""
    # Events: hours a waiting-list member has to accept places offered to them (then the next in line).
    events_offer_hours: int = 24
    # Cart money (domains/cart/money.py): VAT rates per tax class in percent, prices include them
    # ("standard=20,reduced=5,zero=0"; empty: no VAT is shown); the class of a product that names
    # none; weight bands for delivery ("0-1000:450,1000-5000:750,5000-:1200": grams from-to →
    # minor units; empty: the flat CART_DELIVERY_RATE); collection points and their weekly slots
    # ("Market hall:Sat 09:00-12:00,Sat 12:00-15:00;Farm shop:Wed 16:00-18:00"). The cart checks
    # them when the web app starts (domains/cart/slots.py: check_settings); a typo stops it.
    cart_vat_rates: str = ""
    cart_vat_default: str = "standard"
    cart_delivery_rates: str = ""
    cart_collection_slots: str = ""
    # Events: the percent of a date's places the fediverse accounts of one server may hold together
    # (at least one place), so one instance's made-up accounts cannot fill an event (1-100).
    events_remote_share: int = 25
    # Outbound mail (app/mail): ``smtp://[user:pass@]host[:port]`` (STARTTLS when offered, required
    # with a password unless the host is loopback) or ``smtps://`` (implicit TLS). Unset: every
    # mail is written to DATA_DIR/mail/ as an .eml file, which admins read at /account/admin/mail.
    smtp_url: str = ""
    # The From of every mail: "Name <address>" or a bare address; default Rose Ash <noreply@BASE_URL host>.
    mail_from: str = ""
    # Newsletter mails sent per minute (the batch jobs pace themselves by it).
    mail_rate: int = 600
    # A PEM file of CA certificates to trust for the SMTP server's TLS instead of the system's
    # (a private CA; the tests' self-signed certificate).
    smtp_ca_file: str = ""
    # SumUp Online Payments (domains/payments/sumup.py): offered at checkout only when both the API
    # key (``sup_sk_…``) and the merchant code are set; the URL points elsewhere for tests or the
    # local fake (``python -m tests.fakes.sumup``). Without them only pay on collection is offered.
    sumup_api_key: str = ""
    sumup_merchant_code: str = ""
    sumup_api_url: str = "https://api.sumup.com"
    # How to pay an order placed with "pay later" (pay on collection), shown at checkout, on the
    # order page and for unpaid tickets ("{number}" becomes the order's number). Empty: write to
    # CART_STAFF_EMAIL (else the From address) quoting the number (domains/payments/services.py).
    payment_instructions: str = ""

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def scheme(self) -> str:
        return self.base_url.split("://", 1)[0]

    @property
    def base_host(self) -> str:
        """BASE_URL's ``host[:port]`` exactly as a client sends it in the ``Host`` header."""
        return host_as_sent(self.scheme, urlsplit(self.base_url).netloc)

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """Every ``Host`` the app answers for: configuration only, never a request.

        A loopback BASE_URL (``make run``'s default) also answers the other loopback names on its
        port, so a member who types ``localhost:8000`` is not turned away; only this machine can
        send those, so they choose nothing an attacker could.
        """
        hosts = [self.base_host]
        host = urlsplit(self.base_url).hostname or ""
        if host in LOOPBACK_NAMES:
            port = self.base_host.removeprefix(_bracketed(host))  # "" or ":8000"
            hosts += [_bracketed(alias) + port for alias in LOOPBACK_NAMES if alias != host]
        return (*hosts, *(host for _, host in self.domain_hosts))

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read settings from the environment; ``overrides`` win (tests use them)."""
        env = os.environ if env is None else env
        raw: dict[str, object] = {}
        for name in cls.__struct_fields__:
            value = env.get(PREFIX + name.upper())
            if value is not None and value != "":
                raw[name] = value
            if file_value := _from_file(env, PREFIX + name.upper()):
                if name in raw:
                    raise ValueError(f"set {PREFIX + name.upper()} or {PREFIX + name.upper()}_FILE, not both")
                raw[name] = file_value
        raw.update(overrides)
        data_dir = Path(str(raw.get("data_dir", "./var"))).resolve()
        raw["data_dir"] = data_dir
        for flag in ("federation_allow_private_addresses", "federation_authorized_fetch", "worker_in_process",
                     "signup_open", "debug", "oauth_dynamic_registration", "cart_delivery"):
            if isinstance(raw.get(flag), str):
                raw[flag] = str(raw[flag]).strip().lower() in _TRUE
        if isinstance(raw.get("edge_purge_urls"), str):
            raw["edge_purge_urls"] = tuple(u.strip() for u in str(raw["edge_purge_urls"]).split(",") if u.strip())
        if isinstance(raw.get("metrics_allow"), str):
            raw["metrics_allow"] = tuple(a.strip() for a in str(raw["metrics_allow"]).split(",") if a.strip())
        allow = raw.get("metrics_allow")
        for network in allow if isinstance(allow, tuple | list) else ():  # a typo must stop the start, not every scrape
            try:
                ipaddress.ip_network(str(network), strict=False)
            except ValueError as exc:
                raise ValueError(f"ROSE_ASH_METRICS_ALLOW: {network!r} is not an address or network") from exc
        raw["base_url"] = str(raw.get("base_url", "http://127.0.0.1:8000")).rstrip("/")
        if isinstance(raw.get("domain_hosts"), str):
            pairs = (item.partition("=") for item in str(raw["domain_hosts"]).split(",") if "=" in item)
            raw["domain_hosts"] = tuple((name.strip(), host.strip()) for name, _, host in pairs)
        if isinstance(hosts := raw.get("domain_hosts"), tuple):
            scheme = str(raw["base_url"]).split("://", 1)[0]
            raw["domain_hosts"] = tuple((name, host_as_sent(scheme, host)) for name, host in hosts)
        currency = str(raw.get("market_currency", "EUR")).strip().upper()
        if not is_currency(currency):  # a typo must stop the start, not mis-price every product
            raise ValueError(f"ROSE_ASH_MARKET_CURRENCY: {raw.get('market_currency')!r} is not an ISO 4217 "
                             "currency code (e.g. EUR, GBP, USD)")
        raw["market_currency"] = currency
        if isinstance(raw.get("mail_from"), str | None):
            raw["mail_from"] = _mail_from(str(raw.get("mail_from") or ""), str(raw["base_url"]))
        if raw.get("smtp_url"):
            _check_smtp_url(str(raw["smtp_url"]))
        share = str(raw.get("events_remote_share", 25)).strip()
        if not (share.isascii() and share.isdigit() and 1 <= int(share) <= 100):
            raise ValueError(f"ROSE_ASH_EVENTS_REMOTE_SHARE: {share[:20]!r} is not a whole percent from 1 to 100")
        raw["events_remote_share"] = int(share)
        raw["sumup_api_url"] = str(raw.get("sumup_api_url") or "https://api.sumup.com").rstrip("/")
        if not raw.get("database_url"):
            raw["database_url"] = f"sqlite+aiosqlite:///{data_dir / 'rose-ash.sqlite3'}"
        if not raw.get("secret_key"):
            raw["secret_key"] = _load_or_create_secret(data_dir)
        return msgspec.convert(raw, cls, strict=False)


def _from_file(env: Mapping[str, str], name: str) -> str | None:
    """``NAME_FILE``: read the setting from that file (Docker and Swarm secrets are mounted as files
    under /run/secrets, so a password never stands in the environment or compose.yaml). One
    trailing newline (``echo ... > file``) is not part of the value; an unreadable file is an error."""
    path = env.get(name + "_FILE")
    if not path:
        return None
    try:
        value = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{name}_FILE names {path}, which cannot be read: {exc.strerror or exc}") from exc
    value = value.removesuffix("\n").removesuffix("\r")
    if not value.strip():
        raise ValueError(f"{name}_FILE names {path}, which is empty")
    return value


def _mail_from(value: str, base_url: str) -> str:
    """ROSE_ASH_MAIL_FROM as given, or ``Rose Ash <noreply@BASE_URL host>``; checked at start-up so
    a typo stops the process instead of every mail."""
    from email.headerregistry import Address
    from email.utils import parseaddr

    if not value.strip():
        return f"Rose Ash <noreply@{urlsplit(base_url).hostname or 'localhost'}>"
    if "\r" in value or "\n" in value:
        raise ValueError("ROSE_ASH_MAIL_FROM must be one line")
    name, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    if not (local and at and domain):
        raise ValueError(f"ROSE_ASH_MAIL_FROM: {value!r} is not an address such as 'Rose Ash <noreply@example.org>'")
    return str(Address(display_name=name, username=local, domain=domain))


def _check_smtp_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("ROSE_ASH_SMTP_URL must look like smtp://[user:password@]host[:port] or smtps://...")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        raise ValueError(f"ROSE_ASH_SMTP_URL: {exc}") from exc


def _bracketed(host: str) -> str:
    """An IPv6 literal as it stands in a URL or ``Host`` header (RFC 3986 section 3.2.2)."""
    return f"[{host}]" if ":" in host else host


def host_as_sent(scheme: str, netloc: str) -> str:
    """``host[:port]`` as clients send it in ``Host``: lower case, no port when it is the scheme's
    default (RFC 9110 section 7.2; browsers omit it), so comparing the header is a string equality."""
    netloc = netloc.strip().lower()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    return netloc.removesuffix(default) if default else netloc


def _load_or_create_secret(data_dir: Path) -> str:
    """Generate SECRET_KEY into DATA_DIR on first run so restarts keep sessions and keys readable."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process (``rose-ash run -W N``) made it first: use theirs
        for _ in range(50):
            if existing := path.read_text().strip():
                return existing
            time.sleep(0.01)
        raise
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
