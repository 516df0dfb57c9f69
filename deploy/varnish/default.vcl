vcl 4.1;
# Rose Ash reference edge: Varnish 7.1 + varnish-modules (xkey). Run:
#   varnishd -F -n /tmp/varnish -a :6081 -f $PWD/deploy/varnish/default.vcl -s malloc,256m
# and point ROSE_ASH_EDGE_PURGE_URLS at http://<varnish>:6081/ so the worker's purges reach it.
# The backend below is the app (compose: replace .host with the service name, e.g. "app").
backend app {
  .host = "127.0.0.1";
  .port = "8000";
  .connect_timeout = 1s;
  .first_byte_timeout = 5s;
  .probe = { .url = "/healthz"; .interval = 2s; .timeout = 1s; .window = 3; .threshold = 2; .initial = 2; }
}

include "./rose-ash.vcl";
