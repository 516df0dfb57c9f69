// A real Fedify server as a federation peer for tests (tests/federation/test_forgefed_fedify.py).
//
// `node peer.mjs <port>` serves, on http://127.0.0.1:<port>, one Person `peer` through Fedify
// (actor, key pair, WebFinger, inbox) and records every POST to its inbox:
//   {json, keyId, status}: keyId is what Fedify's verifyRequest says signed it (null: refused),
//   status is what Fedify's own inbox (federation.fetch) answered.
// Fedify's vocabulary has no ForgeFed types, so its inbox answers 400 to a `Push`; the peer then
// answers 202 itself when Fedify verified the signature (a Fedify app that handles Push itself).
// Control endpoints (loopback test use only):
//   GET  /_control/received            -> the records
//   POST /_control/send {inbox, body}  -> signs body with the peer's key (Fedify's signRequest,
//                                         draft-cavage) and POSTs it; -> {status, text}
// Fedify fetches https://forgefed.org/ns as any JSON-LD context; with no network here, the terms
// we use are preloaded (the mappings of the spec's context.jsonld for those terms).
import http from "node:http";
import { createFederation, MemoryKvStore, generateCryptoKeyPair, signRequest, verifyRequest } from "@fedify/fedify";
import { Person, Activity, Endpoints } from "@fedify/vocab";
import { getDocumentLoader, preloadedContexts } from "@fedify/vocab-runtime";

const port = Number(process.argv[2]);
const origin = `http://127.0.0.1:${port}`;
const forge = "https://forgefed.org/ns#";
preloadedContexts["https://forgefed.org/ns"] = {
  "@context": {
    forge, xsd: "http://www.w3.org/2001/XMLSchema#",
    Branch: "forge:Branch", Commit: "forge:Commit", Push: "forge:Push", Repository: "forge:Repository",
    cloneUri: { "@id": "forge:cloneUri", "@type": "@id" }, committedBy: { "@id": "forge:committedBy", "@type": "@id" },
    committed: { "@id": "forge:committed", "@type": "xsd:dateTime" }, hash: { "@id": "forge:hash", "@type": "xsd:string" },
    ref: { "@id": "forge:ref", "@type": "xsd:string" }, forks: { "@id": "forge:forks", "@type": "@id" },
    description: { "@id": "forge:description", "@type": "@id" },
  },
};

const keys = await generateCryptoKeyPair("RSASSA-PKCS1-v1_5");
const federation = createFederation({ kv: new MemoryKvStore(), allowPrivateAddress: true });
federation.setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
  if (identifier !== "peer") return null;
  const [pair] = await ctx.getActorKeyPairs(identifier);
  return new Person({
    id: ctx.getActorUri(identifier), preferredUsername: identifier, name: "Fedify peer",
    inbox: ctx.getInboxUri(identifier), endpoints: new Endpoints({ sharedInbox: ctx.getInboxUri() }),
    publicKey: pair.cryptographicKey,
  });
}).setKeyPairsDispatcher(async (_ctx, identifier) => (identifier === "peer" ? [keys] : []));
federation.setInboxListeners("/users/{identifier}/inbox", "/inbox").on(Activity, async () => {});

const documentLoader = getDocumentLoader({ allowPrivateAddress: true });
const received = [];
const keyId = new URL(`${origin}/users/peer#main-key`);

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function requestOf(req, body) {
  return new Request(origin + req.url, {
    method: req.method, headers: req.headers, body: ["GET", "HEAD"].includes(req.method) ? undefined : body,
  });
}

http.createServer(async (req, res) => {
  try {
    const body = await readBody(req);
    const reply = (status, data, type = "application/json") => {
      res.writeHead(status, { "Content-Type": type });
      res.end(typeof data === "string" ? data : JSON.stringify(data));
    };
    if (req.url === "/_control/received") return reply(200, received);
    if (req.url === "/_control/send") {
      const { inbox, body: activity } = JSON.parse(body.toString());
      const request = new Request(inbox, {
        method: "POST", body: JSON.stringify(activity),
        headers: { "Content-Type": "application/activity+json", Accept: "application/activity+json" },
      });
      const signed = await signRequest(request, keys.privateKey, keyId, { spec: "draft-cavage-http-signatures-12" });
      const response = await fetch(signed);
      return reply(200, { status: response.status, text: await response.text() });
    }
    if (req.method === "POST" && req.url.endsWith("/inbox")) {
      let json = null;
      try { json = JSON.parse(body.toString()); } catch { /* recorded as null */ }
      let verified = null;
      try {
        const key = await verifyRequest(requestOf(req, body), { documentLoader, contextLoader: documentLoader });
        verified = key ? key.id.href : null;
      } catch (error) {
        verified = null;
      }
      const answer = await federation.fetch(requestOf(req, body), { contextData: undefined });
      const record = { json, keyId: verified, status: answer.status, text: await answer.text() };
      received.push(record);
      if (json?.type === "Push" && verified) return reply(202, "");
      res.writeHead(answer.status);
      return res.end(record.text);
    }
    const answer = await federation.fetch(requestOf(req, body), { contextData: undefined });
    res.writeHead(answer.status, Object.fromEntries(answer.headers.entries()));
    res.end(Buffer.from(await answer.arrayBuffer()));
  } catch (error) {
    res.writeHead(500, { "Content-Type": "text/plain" });
    res.end(String(error?.stack ?? error));
  }
}).listen(port, "127.0.0.1", () => process.stdout.write(`listening ${origin}\n`));
