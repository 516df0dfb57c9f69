// Fedify's verifier as an oracle: JSON on stdin -> {keyId} (null if refused) on stdout, plus {error}
// when verifyRequest throws instead of answering null.
// in: {method, url, headers, body, documents: {url: jsonld}}; the loader serves only those documents.
import { verifyRequest } from "@fedify/fedify/sig";
import { getDocumentLoader } from "@fedify/vocab-runtime";

const input = JSON.parse(await new Response(process.stdin).text());
const documentLoader = async (url) => {
  const doc = input.documents[url.split("#")[0]];
  if (!doc) throw new Error(`no document for ${url}`);
  return { contextUrl: null, documentUrl: url, document: doc };
};
const request = new Request(input.url, {
  method: input.method, headers: input.headers, body: input.method === "GET" ? undefined : input.body,
});
let result;
try {
  const key = await verifyRequest(request, { documentLoader, contextLoader: getDocumentLoader() });
  result = { keyId: key ? key.id.href : null };
} catch (error) {
  result = { keyId: null, error: `${error.name}: ${error.message}` };
}
process.stdout.write(JSON.stringify(result));
