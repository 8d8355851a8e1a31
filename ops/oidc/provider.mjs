// A real OpenID provider for the tests: node_modules/oidc-provider (panva's certified
// implementation, from npm; ops/lib.sh installs it under IOC_OIDC_MODULES), configured from one JSON file:
//
//   {"issuer": "http://127.0.0.1:PORT", "port": PORT, "audience": "urn:ioc:api",
//    "key_dir": "...", "keys": [{"kid": "a", "alg": "RS256"}], "sign_kid": "a", "ttl_s": 600,
//    "clients": [{"client_id": "...", "client_secret": "...", "claims": {...}}],
//    "users": [{"id": "...", "claims": {...}}]}
//
// Keys are made once per kid and kept in key_dir, so a restart with another list rotates
// them the way a provider does (publish the new one, sign with it, drop the old one later).
// Access tokens are JWTs for any resource asked for (the audience is the resource), carrying
// the client's claims (client credentials) or the user's (authorization code).
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';

// Where ops/lib.sh installed the package (the script itself lives in the repository).
const modules = process.env.IOC_OIDC_MODULES;
if (!modules) throw new Error('IOC_OIDC_MODULES: the node_modules holding oidc-provider');
const { default: Provider } = await import(
  pathToFileURL(path.join(modules, 'oidc-provider', 'lib', 'index.js')).href
);

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

function key({ kid, alg }) {
  const file = path.join(cfg.key_dir, `${kid}.json`);
  if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8'));
  const pair = alg.startsWith('ES')
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
  fs.mkdirSync(cfg.key_dir, { recursive: true });
  fs.writeFileSync(file, JSON.stringify(jwk));
  return jwk;
}

const keys = cfg.keys.map(key);
const signing = cfg.keys.find((k) => k.kid === cfg.sign_kid) || cfg.keys[0];
const byClient = new Map(cfg.clients.map((c) => [c.client_id, c.claims || {}]));
const byUser = new Map((cfg.users || []).map((u) => [u.id, u.claims || {}]));

const provider = new Provider(cfg.issuer, {
  clients: cfg.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: c.redirect_uris || [`${cfg.issuer}/unused`],
    post_logout_redirect_uris: c.post_logout_redirect_uris || [],
    token_endpoint_auth_method: c.client_secret ? 'client_secret_post' : 'none',
    scope: 'openid profile offline_access api',
    // ID tokens are signed like access tokens: a provider holding only an ES256 key works.
    id_token_signed_response_alg: signing.alg,
  })),
  jwks: { keys },
  scopes: ['openid', 'offline_access', 'profile', 'api'],
  pkce: { required: () => true },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => cfg.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => ({
        scope: 'api',
        audience: resource,
        accessTokenTTL: cfg.ttl_s || 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: signing.alg, kid: signing.kid } },
      }),
    },
  },
  findAccount: (_ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, ...(byUser.get(id) || {}) }),
  }),
  extraTokenClaims: (_ctx, token) => (token.accountId
    ? byUser.get(token.accountId) || {}
    : byClient.get(token.clientId) || {}),
  ttl: { AccessToken: cfg.ttl_s || 600, ClientCredentials: cfg.ttl_s || 600 },
  // A page's login renews with a refresh token (no offline_access consent needed).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
});
provider.proxy = false;
provider.listen(cfg.port, '127.0.0.1', () => {
  console.log(`oidc-provider ${cfg.issuer} signing with ${signing.kid} (${signing.alg})`);
});
