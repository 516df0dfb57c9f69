// masto.js, unmodified, against a running Rose Ash server: what Elk and Phanpy do through it.
// Usage: node client.mjs '{"url": "http://127.0.0.1:PORT", "token": "...", "other": "<account id>"}'
// Prints one JSON line (the report) that tests/federation/mastodon_api/test_masto_js.py checks.
import { createRestAPIClient } from "masto";

const config = JSON.parse(process.argv[2]);
const masto = createRestAPIClient({ url: config.url, accessToken: config.token, timeout: 20000 });
const report = {};

const v2 = await masto.v2.instance.fetch();
const v1 = await masto.v1.instance.fetch();
report.instance = { domain: v2.domain, version: v2.version, uri: v1.uri,
                    maxCharacters: v2.configuration.statuses.maxCharacters };

const me = await masto.v1.accounts.verifyCredentials();
report.me = { id: me.id, acct: me.acct, source: Object.keys(me.source ?? {}).sort() };

// A status with a JSON body (masto.js always sends JSON), then a favourite.
const posted = [];
for (let i = 0; i < 5; i++) {
  posted.push(await masto.v1.statuses.create({ status: `from masto.js ${i}`, visibility: "public" }));
}
report.posted = posted.map((s) => ({ id: s.id, content: s.content, visibility: s.visibility }));
const liked = await masto.v1.statuses.$select(posted[0].id).favourite();
report.favourite = { id: liked.id, favourited: liked.favourited, favouritesCount: liked.favouritesCount };

// The home timeline through the paginator: masto.js follows only the Link header.
const pages = [];
for await (const page of masto.v1.timelines.home.list({ limit: 2 })) {
  pages.push(page.map((s) => s.id));
  if (pages.length > 10) break;
}
report.homePages = pages;

// Relationships (the id[] array parameter), then the account-side writes and lists.
const rels = await masto.v1.accounts.relationships.fetch({ id: [config.other] });
report.relationships = rels.map((r) => ({ id: r.id, following: r.following, blocking: r.blocking,
                                          muting: r.muting, fields: Object.keys(r).sort() }));
const followed = await masto.v1.accounts.$select(config.other).follow();
const muted = await masto.v1.accounts.$select(config.other).mute({ notifications: false });
report.follow = { following: followed.following, muting: muted.muting,
                  mutingNotifications: muted.mutingNotifications };
const followers = await masto.v1.accounts.$select(config.other).followers.list({ limit: 1 });
report.followersOfOther = followers.map((a) => a.acct);
const mutes = await masto.v1.mutes.list();
report.mutes = mutes.map((a) => a.id);
const updated = await masto.v1.accounts.updateCredentials({ displayName: "Masto Alice", note: "via masto.js" });
report.updated = { displayName: updated.displayName, note: updated.source?.note };

// A missing account: masto.js raises its typed HTTP error carrying our {"error": ...}.
try {
  await masto.v1.accounts.$select("0190aaaa-0000-7000-8000-000000000000").block();
  report.missing = "no error";
} catch (error) {
  report.missing = { name: error.constructor.name, status: error.statusCode, message: error.message };
}

console.log(JSON.stringify(report));
