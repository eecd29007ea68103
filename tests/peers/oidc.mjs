// oidc-provider (npm), a real OAuth2 server, for tests: client_credentials with private_key_jwt
// (RS384/ES384), JWT access tokens. Environment: PORT, CLIENT_ID, CLIENT_PUB (PEM path),
// AUDIENCE (the FHIR base URL the tokens are for), TOKEN_TTL (seconds, default 300).
import fs from 'node:fs';
import Provider from 'oidc-provider';
import { exportJWK, importSPKI } from 'jose';

const port = Number(process.env.PORT);
const audience = process.env.AUDIENCE;
const ttl = Number(process.env.TOKEN_TTL ?? 300);
const pub = await importSPKI(fs.readFileSync(process.env.CLIENT_PUB, 'utf8'), 'RS384', { extractable: true });
const jwk = { ...(await exportJWK(pub)), kid: 'k1', alg: 'RS384', use: 'sig' };
const SCOPES = ['system/Patient.rs', 'system/Appointment.cruds', 'system/Slot.rus', 'system/Schedule.rs',
  'system/Practitioner.rs', 'system/Location.rs', 'system/Communication.c', 'system/Task.c'];
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{ client_id: process.env.CLIENT_ID, token_endpoint_auth_method: 'private_key_jwt',
              token_endpoint_auth_signing_alg: 'RS384', grant_types: ['client_credentials'],
              redirect_uris: [], response_types: [], jwks: { keys: [jwk] }, scope: SCOPES.join(' ') }],
  scopes: SCOPES,
  enabledJWA: { clientAuthSigningAlgValues: ['RS384', 'ES384', 'RS256', 'ES256'] },
  ttl: { ClientCredentials: ttl },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: { enabled: true, defaultResource: () => audience,
      getResourceServerInfo: () => ({ scope: SCOPES.join(' '), audience, accessTokenTTL: ttl,
        accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }) },
  },
});
provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider on http://127.0.0.1:${port}`));
