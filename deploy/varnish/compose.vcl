vcl 4.1;
# Rose Ash edge for compose.yaml (compose and Swarm): the backend is the `app` service by name.
# On Swarm that name is one virtual IP that balances over every app replica; Varnish needs the
# name to resolve to exactly one address, so under plain compose keep the app at one replica.
backend app {
  .host = "app";
  .port = "8000";
  .connect_timeout = 1s;
  .first_byte_timeout = 5s;
  .probe = { .url = "/healthz"; .interval = 2s; .timeout = 1s; .window = 3; .threshold = 2; .initial = 2; }
}

include "./rose-ash.vcl";
