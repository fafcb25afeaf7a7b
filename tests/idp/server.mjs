// Sealport test IdP: a real, OIDC-certified authorization server (panva/oidc-provider)
// configured for the RFC 8628 device flow, authorization code + PKCE with a loopback
// redirect (RFC 8252), DPoP (RFC 9449), refresh-token rotation, RFC 7009 revocation
// and introspection. TEST ONLY: in-memory storage, dev signing keys, dev login pages
// that accept any login name with any password.
//
// Environment (all optional):
//   PORT                   listen port on 127.0.0.1 (default 3000)
//   DEVICE_CODE_TTL        device code lifetime in seconds (default 600)
//   DEVICE_INTERVAL        add "interval": N to the device authorization response
//                          (oidc-provider omits it; RFC 8628 clients must then use 5)
//   ENFORCE_SLOW_DOWN=1    answer {"error":"slow_down"} and add 5 s to the code's interval
//                          whenever a device_code is polled sooner than its interval after
//                          the previous poll (or after it was issued). oidc-provider never
//                          sends slow_down on its own; this hook is not an oidc-provider feature.
//   SLOW_DOWN_TIME_SCALE   real seconds per interval second for ENFORCE_SLOW_DOWN
//                          (default 1; tests use e.g. 0.25 to keep runs short)
//
// The hooks only read and answer token requests for device codes; everything else is
// oidc-provider's own behaviour.
import Provider from 'oidc-provider';

const PORT = Number(process.env.PORT || 3000);
const ISSUER = `http://127.0.0.1:${PORT}`;
const DEVICE_INTERVAL = process.env.DEVICE_INTERVAL ? Number(process.env.DEVICE_INTERVAL) : 0;
const ENFORCE_SLOW_DOWN = process.env.ENFORCE_SLOW_DOWN === '1';
const TIME_SCALE = Number(process.env.SLOW_DOWN_TIME_SCALE || 1);
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

const configuration = {
  clients: [{
    client_id: 'sealport-test',
    client_name: 'Sealport (test)',
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    // authorization_code + PKCE with a loopback redirect (RFC 8252 §7.3): oidc-provider
    // accepts any port on a registered loopback redirect for native clients and
    // requires PKCE (S256) for them.
    grant_types: [DEVICE_GRANT, 'refresh_token', 'authorization_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
  }],
  features: {
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    dPoP: { enabled: true },
    devInteractions: { enabled: true },
  },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
  async findAccount(ctx, sub) {
    // any login name becomes the subject
    return {
      accountId: sub,
      async claims() {
        return { sub, name: `Artist ${sub}`, email: `${sub}@studio.test` };
      },
    };
  },
  rotateRefreshToken: true,
  ttl: {
    AccessToken: 300,
    DeviceCode: Number(process.env.DEVICE_CODE_TTL || 600),
    RefreshToken: 8 * 3600,
    IdToken: 300,
    Interaction: 600,
    Session: 3600,
    Grant: 8 * 3600,
  },
  cookies: { keys: ['test-only-cookie-key-change-me'] },
};

const provider = new Provider(ISSUER, configuration);

// device_code -> { interval (s), last (ms) }, only used with ENFORCE_SLOW_DOWN
const polls = new Map();

provider.on('device_authorization.success', (ctx, body) => {
  if (DEVICE_INTERVAL) body.interval = DEVICE_INTERVAL;
  if (ENFORCE_SLOW_DOWN) {
    polls.set(body.device_code, { interval: DEVICE_INTERVAL || 5, last: Date.now() });
  }
});

async function readRaw(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

if (ENFORCE_SLOW_DOWN) {
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/token'
        && ctx.is('application/x-www-form-urlencoded')) {
      // Consume the body here; oidc-provider then falls back to ctx.req.body.
      const params = Object.fromEntries(new URLSearchParams(await readRaw(ctx.req)));
      ctx.req.body = params;
      const state = params.grant_type === DEVICE_GRANT ? polls.get(params.device_code) : undefined;
      if (state) {
        const now = Date.now();
        const tooSoon = now - state.last < state.interval * 1000 * TIME_SCALE;
        state.last = now;
        if (tooSoon) {
          state.interval += 5;
          ctx.status = 400;
          ctx.set('Cache-Control', 'no-store');
          ctx.body = { error: 'slow_down', error_description: `poll interval is now ${state.interval}s` };
          return;
        }
      }
    }
    await next();
  });
}

provider.listen(PORT, '127.0.0.1');
console.log(`sealport test IdP listening on ${ISSUER}`);
