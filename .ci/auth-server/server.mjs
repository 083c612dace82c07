// Starts panva's oidc-provider (an OpenID Certified OAuth 2.0 / OpenID Connect
// authorization server, installed from the npm registry by `npm ci`) on
// 127.0.0.1 for tests/real_server/.
//
//   node server.mjs [--port N] [--url-file PATH] [--exit-with-stdin]
//
// Listens on 127.0.0.1 (port 0, i.e. a free one, unless --port is given),
// prints `listening on http://127.0.0.1:PORT` on stdout when ready and, with
// --url-file, writes the URL to PATH. With --exit-with-stdin it exits when its
// standard input closes, so a test process that spawned it never leaves it
// behind. Everything below is configuration: clients (clients.json), token
// lifetimes, the features the tests use, an account finder that accepts
// any login, as the provider's bundled development login form does, an
// RFC 7523 §2.1 JWT-bearer grant and an RFC 8693 token-exchange grant
// (oidc-provider has neither built in).
import {
  createPublicKey, generateKeyPairSync, randomBytes, verify,
} from 'node:crypto';
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'url-file': { type: 'string' },
    'exit-with-stdin': { type: 'boolean', default: false },
  },
});

const registered = JSON.parse(readFileSync(new URL('./clients.json', import.meta.url), 'utf8')).clients;
const accessTokenTtl = new Map(registered.map((c) => [c.client_id, c.access_token_ttl]));
const clients = registered.map(({ access_token_ttl: _ttl, ...metadata }) => metadata);

// The provider needs its issuer URL before it is built, and the URL holds the
// port: listen first, then attach the provider.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(args.port), '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

// A fresh signing key per run (ID tokens); nothing here outlives the process.
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'test-es256' };

const ttlFor = (_ctx, _token, client) => accessTokenTtl.get(client?.clientId) ?? 300;

// The claims of the tokens issued by token exchange (below), which the
// opaque token format asks for when it saves a token.
const exchanged = new WeakMap();

const provider = new Provider(issuer, {
  clients,
  extraTokenClaims: (_ctx, token) => exchanged.get(token),
  // The one signing key is an ES256 key (quick to generate).
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'offline_access', 'inventory:read', 'inventory:write'],
  // RFC 9449 §5.1: every algorithm the client signs DPoP proofs with
  // (oidc-provider's default is ES256, Ed25519 and EdDSA), so each is
  // tested against this server.
  enabledJWA: {
    dPoPSigningAlgValues: ['ES256', 'Ed25519', 'EdDSA', 'PS256', 'RS256'],
  },
  features: {
    // RFC 6749 §4.4
    clientCredentials: { enabled: true },
    // RFC 7662, for the tests' resource server. The resource server is a
    // confidential client, so it may introspect any token.
    introspection: {
      enabled: true,
      allowedPolicy: (_ctx, client) => client.clientAuthMethod !== 'none',
    },
    // RFC 7009: a client may revoke its own tokens only.
    revocation: {
      enabled: true,
      allowedPolicy: (_ctx, client, token) => {
        if (token.clientId !== client.clientId) {
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        }
        return true;
      },
    },
    // RFC 9449: DPoP-bound tokens for clients registered with
    // dpop_bound_access_tokens; server nonces (a fresh secret per run),
    // required of svc-dpop-nonce only, so the tests see the round trip.
    dPoP: {
      enabled: true,
      nonceSecret: randomBytes(32),
      requireNonce: (ctx) => ctx.oidc?.client?.clientId === 'svc-dpop-nonce',
    },
    // The provider's own login and consent pages; the test fills them in
    // over HTTP as a browser would.
    devInteractions: { enabled: true },
  },
  // PKCE (RFC 7636) for every authorization code, confidential clients too.
  pkce: { required: () => true },
  // A new refresh token on every use; a reused one is refused and revokes
  // the grant (reuse detection).
  rotateRefreshToken: true,
  ttl: {
    AccessToken: ttlFor,
    ClientCredentials: ttlFor,
    AuthorizationCode: 60,
    IdToken: 300,
    RefreshToken: 3600,
    Interaction: 600,
    Session: 600,
    Grant: 3600,
  },
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  clientBasedCORS: () => false,
  renderError: (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});

// RFC 7523 §2.1 and §3: the JWT-bearer grant, for clients that list it in
// their grant_types. The assertion must be an ES256 JWS made with a key of
// the client's registered jwks (by kid), issued by the client, for this
// server (the token endpoint or the issuer as aud), unexpired, at most
// 5 minutes long, with a jti never seen before. The token is an ordinary
// client credentials access token of that client.
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const seenJti = new Set();
const jsonPart = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

function checkAssertion(assertion, registration) {
  const parts = String(assertion ?? '').split('.');
  if (parts.length !== 3) return 'the assertion is not a compact JWS';
  let header;
  let claims;
  try {
    [header, claims] = [jsonPart(parts[0]), jsonPart(parts[1])];
  } catch {
    return 'the assertion is not JSON';
  }
  const jwk = registration.jwks?.keys.find((k) => k.kid === header.kid);
  if (header.alg !== 'ES256' || !jwk) return 'no registered ES256 key for the assertion';
  const key = { key: createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' };
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  if (!verify('sha256', signed, key, Buffer.from(parts[2], 'base64url'))) return 'bad signature';
  const now = Math.floor(Date.now() / 1000);
  if (claims.iss !== registration.client_id || !claims.sub) return 'iss must be the client, sub set';
  if (![issuer, `${issuer}/token`].includes(claims.aud)) return 'aud is not this server';
  if (!(claims.exp > now - 5) || !(claims.exp - claims.iat <= 300)) return 'expired or too long';
  if (!claims.jti || seenJti.has(claims.jti)) return 'jti missing or replayed';
  seenJti.add(claims.jti);
  return undefined;
}

provider.registerGrantType(JWT_BEARER, async (ctx) => {
  const { client, params } = ctx.oidc;
  const registration = registered.find((c) => c.client_id === client.clientId);
  const refusal = checkAssertion(params.assertion, registration);
  if (refusal) throw new errors.InvalidGrant(refusal);
  const allowed = new Set(String(client.scope ?? '').split(' '));
  const scope = String(params.scope ?? '').split(' ').filter((s) => allowed.has(s)).join(' ');
  const token = new provider.ClientCredentials({ client, scope: scope || undefined });
  const value = await token.save();
  ctx.body = {
    access_token: value, expires_in: token.expiration, token_type: 'Bearer', scope: token.scope,
  };
}, ['assertion', 'scope']);

// RFC 8693: token exchange, for clients that list it in their grant_types.
// The subject token must be an access token this server issued and still
// holds (a user's, or a client's from client credentials), of type
// access_token; a dead or unknown one is `invalid_grant`. The token is an
// ordinary client credentials access token of the exchanging client, whose
// introspection names the subject (`act_for`) and the exchanging client
// (RFC 8693 §4.1 `act`), so a test can check whose token it is.
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
  const { client, params } = ctx.oidc;
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('subject_token_type must be an access token');
  }
  const value = String(params.subject_token ?? '');
  const subject = (await provider.AccessToken.find(value))
    ?? (await provider.ClientCredentials.find(value));
  if (!subject || subject.isExpired) throw new errors.InvalidGrant('subject token is invalid or expired');
  const allowed = new Set(String(client.scope ?? '').split(' '));
  const scope = String(params.scope ?? '').split(' ').filter((s) => allowed.has(s)).join(' ');
  const token = new provider.ClientCredentials({ client, scope: scope || undefined });
  exchanged.set(token, {
    act_for: subject.accountId ?? subject.clientId,
    act: { sub: client.clientId },
    ...(params.audience ? { exchanged_for: params.audience } : {}),
  });
  const issued = await token.save();
  ctx.body = {
    access_token: issued,
    issued_token_type: ACCESS_TOKEN_TYPE,
    expires_in: token.expiration,
    token_type: 'Bearer',
    scope: token.scope,
  };
}, ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'audience', 'scope']);

server.on('request', provider.callback());

if (args['url-file']) {
  // Written whole, then renamed, so a reader never sees half a URL.
  writeFileSync(`${args['url-file']}.tmp`, `${issuer}\n`);
  renameSync(`${args['url-file']}.tmp`, args['url-file']);
}
process.stdout.write(`listening on ${issuer}\n`);

if (args['exit-with-stdin']) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
