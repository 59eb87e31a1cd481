// A real OpenID Connect authorization server (oidc-provider, OpenID
// certified) for scopegate's end-to-end tests: loopback only, fixed test
// clients, a signing key generated at start. Client credentials issue RFC
// 9068 JWT access tokens for the resource https://jwt.api.test and opaque
// tokens for https://opaque.api.test; introspection (RFC 7662) and
// revocation (RFC 7009) are enabled, and DPoP (RFC 9449): a token request
// carrying a DPoP proof gets a token bound to the proof's key (cnf.jkt in
// the JWT, and in the introspection answer of an opaque token).
//
//   PORT=8999 node server.mjs    (prints "ready <issuer>" when listening)
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const issuer = `http://127.0.0.1:${port}`;
const secret = process.env.CLIENT_SECRET || 'e2e-secret';

export const resources = {
  'https://jwt.api.test': 'jwt',
  'https://opaque.api.test': 'opaque',
};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'e2e-1', use: 'sig', alg: 'RS256' };

const client = (id, scope) => ({
  client_id: id,
  client_secret: secret,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
  ...(scope ? { scope } : {}),
});

const provider = new Provider(issuer, {
  clients: [
    client('reader', 'orders:read'),
    client('writer', 'orders:write'),
    client('scopegate'),
  ],
  jwks: { keys: [jwk] },
  scopes: ['orders:read', 'orders:write'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://opaque.api.test',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        const format = resources[resource];
        if (!format) {
          throw new Error(`unknown resource ${resource}`);
        }
        return {
          scope: 'orders:read orders:write',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: format,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
