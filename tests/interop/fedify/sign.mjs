// Fedify's signer as an oracle: JSON on stdin -> {headers} on stdout, or {error} if Fedify refuses.
// in: {method, url, headers, body, privateKeyPem (PKCS#8), keyType: "rsa"|"ed25519", keyId, spec}
import { signRequest } from "@fedify/fedify/sig";

const input = JSON.parse(await new Response(process.stdin).text());
const der = Buffer.from(input.privateKeyPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
const algorithm = input.keyType === "ed25519" ? { name: "Ed25519" } : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
const key = await crypto.subtle.importKey("pkcs8", der, algorithm, true, ["sign"]);
const request = new Request(input.url, {
  method: input.method, headers: input.headers, body: input.method === "GET" ? undefined : input.body,
});
let result;
try {
  const signed = await signRequest(request, key, new URL(input.keyId), { spec: input.spec });
  result = { headers: Object.fromEntries(signed.headers.entries()) };
} catch (error) {
  result = { error: `${error.name}: ${error.message}` };
}
process.stdout.write(JSON.stringify(result));
