// A strict, independent OpenID Connect relying party (oauth4webapi) run against a real Rose Ash server.
// Usage: node rp.mjs '<json>' with {issuer, client_id, client_secret, redirect_uri, cookie}.
// `cookie` is a signed-in browser session; the client is first-party, so no consent screen appears.
// Prints one JSON object describing each step; exits non-zero on the first failure.
import { createHash } from 'node:crypto'
import * as oauth from 'oauth4webapi'

const cfg = JSON.parse(process.argv[2])
const opts = { [oauth.allowInsecureRequests]: true }
const report = {}

const issuer = new URL(cfg.issuer)
const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { ...opts, algorithm: 'oidc' }))
report.discovery = as.issuer

const client = { client_id: cfg.client_id }
const clientAuth = oauth.ClientSecretBasic(cfg.client_secret)
const codeVerifier = oauth.generateRandomCodeVerifier()
const codeChallenge = await oauth.calculatePKCECodeChallenge(codeVerifier)
const state = oauth.generateRandomState()
const nonce = oauth.generateRandomNonce()

const authorizationUrl = new URL(as.authorization_endpoint)
for (const [k, v] of Object.entries({
  client_id: client.client_id, redirect_uri: cfg.redirect_uri, response_type: 'code',
  scope: 'openid profile email api', code_challenge: codeChallenge, code_challenge_method: 'S256', state, nonce,
})) authorizationUrl.searchParams.set(k, v)

// The browser part: a signed-in session; follow nothing, read the redirect.
const authResponse = await fetch(authorizationUrl, { redirect: 'manual', headers: { cookie: cfg.cookie } })
const location = authResponse.headers.get('location')
if (!location || !location.startsWith(cfg.redirect_uri)) throw new Error(`authorize answered ${authResponse.status} ${location}`)
const callbackParams = oauth.validateAuthResponse(as, client, new URL(location), state) // checks state and RFC 9207 iss
report.authorize = { iss: new URL(location).searchParams.get('iss') }

const tokenResponse = await oauth.authorizationCodeGrantRequest(as, client, clientAuth, callbackParams, cfg.redirect_uri, codeVerifier, opts)
const tokens = await oauth.processAuthorizationCodeResponse(as, client, tokenResponse, { expectedNonce: nonce, requireIdToken: true })
await oauth.validateApplicationLevelSignature(as, tokenResponse, opts) // ID token signature against the JWKS
const claims = oauth.getValidatedIdTokenClaims(tokens)
const digest = createHash('sha256').update(tokens.access_token).digest()
const atHash = digest.subarray(0, 16).toString('base64url')
if (claims.at_hash !== atHash) throw new Error(`at_hash ${claims.at_hash} != ${atHash}`)
report.id_token = { sub: claims.sub, aud: claims.aud, iss: claims.iss, nonce_ok: claims.nonce === nonce, at_hash_ok: true }

const userinfo = await oauth.processUserInfoResponse(as, client, claims.sub, await oauth.userInfoRequest(as, client, tokens.access_token, opts))
report.userinfo = { preferred_username: userinfo.preferred_username, email: userinfo.email }

const refreshed = await oauth.processRefreshTokenResponse(as, client,
  await oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, opts))
if (refreshed.refresh_token === tokens.refresh_token) throw new Error('refresh token was not rotated')
report.refresh = { rotated: true, scope: refreshed.scope }

// The rotated-away refresh token must now fail.
const reuse = await oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, opts)
try {
  await oauth.processRefreshTokenResponse(as, client, reuse)
  throw new Error('reused refresh token was accepted')
} catch (err) {
  if (!(err instanceof oauth.ResponseBodyError) || err.error !== 'invalid_grant') throw err
  report.reuse = err.error
}

// Reuse revoked the family, so introspect a fresh grant: sign in again.
const state2 = oauth.generateRandomState()
const verifier2 = oauth.generateRandomCodeVerifier()
authorizationUrl.searchParams.set('state', state2)
authorizationUrl.searchParams.set('nonce', oauth.generateRandomNonce())
authorizationUrl.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(verifier2))
const again = await fetch(authorizationUrl, { redirect: 'manual', headers: { cookie: cfg.cookie } })
const params2 = oauth.validateAuthResponse(as, client, new URL(again.headers.get('location')), state2)
const tokens2 = await oauth.processAuthorizationCodeResponse(as, client,
  await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params2, cfg.redirect_uri, verifier2, opts),
  { requireIdToken: true, expectedNonce: authorizationUrl.searchParams.get('nonce') })

const active = await oauth.processIntrospectionResponse(as, client,
  await oauth.introspectionRequest(as, client, clientAuth, tokens2.access_token, opts))
report.introspection = { active: active.active, username: active.username, client_id: active.client_id }

await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, clientAuth, tokens2.refresh_token, opts))
const after = await oauth.processIntrospectionResponse(as, client,
  await oauth.introspectionRequest(as, client, clientAuth, tokens2.access_token, opts))
report.revocation = { active_after: after.active }
report.access_token = tokens2.access_token

console.log(JSON.stringify(report))
