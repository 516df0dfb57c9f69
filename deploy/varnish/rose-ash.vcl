# Rose Ash edge logic (design/fragments.md §10), included by default.vcl after its backend.
# Kept free of backend definitions so varnishtest and compose can put any backend in front.
import std;
import xkey;

include "./public-routes.vcl";

# Who may send PURGE (the app's worker). Add your app hosts' addresses.
acl purgers {
  "127.0.0.1";
  "::1";
  "172.31.73.0"/24;   # compose.yaml's `edge` network: only Varnish, the app and the worker join it
  ! "172.31.73.1";    # but not its gateway: connections from the host (docker-proxy) arrive from it
}

sub vcl_recv {
  if (req.method == "PURGE") {
    if (client.ip !~ purgers) { return (synth(403, "Forbidden")); }
    if (req.http.xkey-soft) { return (synth(200, "Soft " + xkey.softpurge(req.http.xkey-soft))); }
    if (req.http.xkey)      { return (synth(200, "Invalidated " + xkey.purge(req.http.xkey) + " objects")); }
    return (synth(400, "xkey or xkey-soft required"));
  }
  if (req.method != "GET" && req.method != "HEAD") { return (pass); }
  # Only URLs shaped like a public route (public-routes.vcl, generated from the route table)
  # lose their cookies and are cached. Everything else (/blog/admin/, /f/me/ holes, accounts,
  # forms, APIs, git) passes with its cookies: stripping them there would sign the member out.
  call rose_ash_route_class;
  if (req.http.X-Rose-Ash-Route != "public") { return (pass); }
  unset req.http.X-Rose-Ash-Route;
  unset req.http.Cookie;
  unset req.http.Authorization;
  # stale-while-revalidate on a healthy backend; the whole grace (stale-if-error) when it is sick.
  if (std.healthy(req.backend_hint)) { set req.grace = 600s; }
  set req.http.Surrogate-Capability = "varnish=ESI/1.0";   # ESI stays opt-in per response
  set req.http.X-Esi-Level = req.esi_level;
}

sub vcl_hit {
  if (obj.ttl <= 0s) { set req.http.X-Cache-Stale = "1"; }
}

sub vcl_backend_response {
  # The object's TTL is the app's s-maxage (Varnish prefers it to max-age). The app tells browsers
  # "max-age=0, must-revalidate" so they revalidate with If-None-Match on every use (answered 304
  # here from the cached ETag); Varnish ignores both for its own copy, and they reach the browser as sent.
  if (beresp.http.Surrogate-Control ~ "ESI/1.0") { unset beresp.http.Surrogate-Control; set beresp.do_esi = true; }
  if (beresp.http.Surrogate-Key) { set beresp.http.xkey = beresp.http.Surrogate-Key; }
  # stale-if-error: keep objects in grace for a day; req.grace above limits it while healthy.
  if (beresp.http.Cache-Control ~ "stale-if-error=" && beresp.ttl > 0s) {
    set beresp.grace = std.duration(regsub(beresp.http.Cache-Control, "^.*stale-if-error=([0-9]+).*$", "\1") + "s", beresp.grace);
  }
  set beresp.keep = 10m;                                   # If-None-Match revalidation
  if (beresp.status >= 500) {
    if (bereq.is_bgfetch) { return (abandon); }            # keep serving stale within grace
    if (bereq.http.X-Esi-Level && bereq.http.X-Esi-Level != "0") { return (error(503)); }  # ESI include only
  }
}

sub vcl_backend_error {
  if (bereq.http.X-Esi-Level && bereq.http.X-Esi-Level != "0") {
    set beresp.status = 200; set beresp.ttl = 1s;
    set beresp.http.Content-Type = "text/html; charset=utf-8";
    synthetic({"<span class="fragment-unavailable">temporarily unavailable</span>"});
    return (deliver);
  }
}

sub vcl_deliver {
  unset resp.http.xkey;
  unset resp.http.Surrogate-Key;
  if (obj.hits > 0 && req.http.X-Cache-Stale) {
    set resp.http.X-Cache = "HIT-STALE";
  } else if (obj.hits > 0) {
    set resp.http.X-Cache = "HIT";
  } else {
    set resp.http.X-Cache = "MISS";
  }
}
