// The example tool as a browser uses it: the platform's page sends the browser to the tool's
// login, the tool redirects it to the platform's authorization endpoint, which form-posts a signed
// id_token to the tool's launch, which sets the session cookie and shows who launched. The tool is
// the built bundle (dist/index.mjs, what is deployed) behind a local server that hands it the
// requests an HTTP API would; its storage is the storage function under cargo lambda watch,
// its key a Secrets Manager secret in moto; the platform is registered with the lti-storage
// command, as the README's third step does.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importSPKI,
  SignJWT,
  type CryptoKey,
  type JWK,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  closeServer,
  freePort,
  listen,
  startLocalStorage,
  type LocalStorage,
} from '../../../clients/typescript/test/support.js';
import type { HttpRequest, HttpResponse } from '../src/handler.js';
import { Browser, postForm } from './browser.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLIENT_ID = '10000000000042';
const DEPLOYMENT_ID = '7:course-deployment';
const CREDENTIALS = { AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };

let storage: LocalStorage;
let moto: ChildProcess;
let platform: Server;
let platformUrl: string;
let platformKey: CryptoKey;
let toolServer: Server;
let toolUrl: string;
let toolPublicPem: string;

beforeAll(async () => {
  storage = await startLocalStorage();
  const motoEndpoint = await startMoto();

  // The tool's key, in the secret the template names.
  const toolKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
  toolPublicPem = toolKeys.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const secrets = new SecretsManagerClient({
    endpoint: motoEndpoint,
    region: CREDENTIALS.AWS_REGION,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const secret = await secrets.send(
    new CreateSecretCommand({
      Name: 'lti-tool/key',
      SecretString: toolKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    }),
  );

  // The environment template.yaml gives the function, and where the AWS SDK finds the local
  // services: the handler has no test switch of its own.
  Object.assign(process.env, CREDENTIALS, {
    TOOL_KEY_SECRET_ARN: secret.ARN!,
    LTI_STORAGE_FUNCTION: storage.functionName,
    AWS_ENDPOINT_URL_LAMBDA: storage.endpoint,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: motoEndpoint,
  });
  const { handler } = (await import(join(root, 'dist/index.mjs'))) as typeof import('../src/handler.js');
  toolServer = createServer((request, response) => {
    void httpApi(handler, request).then(
      (answer) => {
        response.writeHead(answer.statusCode, { ...answer.headers, 'set-cookie': answer.cookies ?? [] });
        response.end(answer.body);
      },
      (error: unknown) => {
        console.error(error);
        response.writeHead(500).end(); // what the HTTP API answers when the function fails
      },
    );
  });
  toolUrl = await listen(toolServer);

  const keys = await generateKeyPair('RS256');
  platformKey = keys.privateKey;
  const publicJwk: JWK = { ...(await exportJWK(keys.publicKey)), kid: 'platform-key', alg: 'RS256' };
  platform = createServer((request, response) => {
    const answer = platformPage(request, publicJwk);
    void answer.then(({ status, type, body }) => {
      response.writeHead(status, { 'content-type': type });
      response.end(body);
    });
  });
  platformUrl = await listen(platform);

  await register();
});

afterAll(async () => {
  if (toolServer) await closeServer(toolServer);
  if (platform) await closeServer(platform);
  moto?.kill();
  await storage?.stop();
});

/** The request an HTTP API hands the function (payload format 2.0). */
async function httpApi(
  handler: (request: HttpRequest) => Promise<HttpResponse>,
  request: IncomingMessage,
): Promise<HttpResponse> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const url = new URL(request.url!, 'http://localhost');
  const headers = Object.fromEntries(
    Object.entries(request.headers).map(([name, value]) => [name, Array.isArray(value) ? value.join(',') : value]),
  );
  delete headers.cookie; // the HTTP API passes them as `cookies`
  return handler({
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers: { ...headers, 'x-forwarded-proto': 'http' },
    cookies: request.headers.cookie?.split(';').map((cookie) => cookie.trim()),
    // The HTTP API sends a form post's body base64-encoded.
    body: chunks.length > 0 ? Buffer.concat(chunks).toString('base64') : undefined,
    isBase64Encoded: chunks.length > 0,
    requestContext: { domainName: request.headers.host!, http: { method: request.method! } },
  });
}

/** README step 3: the platform and its deployment, registered with the lti-storage command. */
async function register(): Promise<void> {
  const cli = (...args: string[]) =>
    promisify(execFile)(join(root, 'node_modules/.bin/lti-storage'), ['--endpoint', storage.endpoint, ...args]);
  const added = await cli(
    'platform', 'add',
    '--name', 'Test LMS',
    '--iss', platformUrl,
    '--client-id', CLIENT_ID,
    '--auth-url', `${platformUrl}/authorize`,
    '--token-url', `${platformUrl}/token`,
    '--jwks-url', `${platformUrl}/jwks`,
  );
  await cli('deployment', 'add', added.stdout.trim(), DEPLOYMENT_ID, '--name', 'Computing 101');
}

/** The LMS: a course page that starts the launch, its authorization endpoint and its JWKS. */
async function platformPage(
  request: IncomingMessage,
  publicJwk: JWK,
): Promise<{ status: number; type: string; body: string }> {
  const url = new URL(request.url!, platformUrl);
  if (url.pathname === '/jwks') {
    return { status: 200, type: 'application/json', body: JSON.stringify({ keys: [publicJwk] }) };
  }
  if (url.pathname === '/course') {
    // Third-party login initiation: the LMS posts the login hint to the tool's login URL.
    return autoSubmit(`${toolUrl}/login`, {
      iss: platformUrl,
      login_hint: 'user-1',
      target_link_uri: `${toolUrl}/`,
      client_id: CLIENT_ID,
      lti_deployment_id: DEPLOYMENT_ID,
    });
  }
  if (url.pathname === '/authorize') {
    const query = url.searchParams;
    const expected = {
      scope: 'openid',
      response_type: 'id_token',
      response_mode: 'form_post',
      prompt: 'none',
      client_id: CLIENT_ID,
      login_hint: 'user-1',
      redirect_uri: `${toolUrl}/launch`,
    };
    for (const [name, value] of Object.entries(expected)) {
      if (query.get(name) !== value) return { status: 400, type: 'text/plain', body: `bad ${name}` };
    }
    return autoSubmit(query.get('redirect_uri')!, {
      id_token: await idToken(query.get('nonce')!),
      state: query.get('state')!,
    });
  }
  return { status: 404, type: 'text/plain', body: 'not found' };
}

async function idToken(nonce: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const lti = 'https://purl.imsglobal.org/spec/lti/claim';
  return new SignJWT({
    nonce,
    name: 'Ada Lovelace',
    given_name: 'Ada',
    family_name: 'Lovelace',
    email: 'ada@example.edu',
    [`${lti}/message_type`]: 'LtiResourceLinkRequest',
    [`${lti}/version`]: '1.3.0',
    [`${lti}/deployment_id`]: DEPLOYMENT_ID,
    [`${lti}/target_link_uri`]: `${toolUrl}/`,
    [`${lti}/roles`]: ['http://purl.imsglobal.org/vocab/lis/v2/membership#Learner'],
    [`${lti}/context`]: { id: 'course-1', label: 'CS101', title: 'Computing 101' },
    [`${lti}/resource_link`]: { id: 'link-1', title: 'Week 1' },
  })
    .setProtectedHeader({ alg: 'RS256', kid: 'platform-key' })
    .setIssuer(platformUrl)
    .setSubject('user-1')
    .setAudience(CLIENT_ID)
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(platformKey);
}

/** A page whose form the browser posts at once, as the LMS's pages do. */
function autoSubmit(action: string, fields: Record<string, string>) {
  const inputs = Object.entries(fields)
    .map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`)
    .join('');
  const body = `<form method="post" action="${escape(action)}">${inputs}</form><script>document.forms[0].submit()</script>`;
  return { status: 200, type: 'text/html', body };
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** moto's Secrets Manager on a port of its own, once it answers. */
async function startMoto(): Promise<string> {
  const port = await freePort();
  moto = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const endpoint = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 600; attempt++) {
    if (moto.exitCode !== null) throw new Error(`moto_server exited with ${moto.exitCode}`);
    try {
      await fetch(endpoint);
      return endpoint;
    } catch {
      await new Promise((done) => setTimeout(done, 100));
    }
  }
  throw new Error('moto_server did not answer within 60 s');
}

describe('the example tool', () => {
  it('logs in, launches and shows who launched; a replayed launch is refused', async () => {
    const browser = new Browser();
    // The LMS's course page posts to the tool's login, which redirects to the authorization endpoint.
    const authorization = await browser.submit(postForm(await browser.open(`${platformUrl}/course`)));
    expect(authorization.url).toMatch(new RegExp(`^${platformUrl}/authorize\\?`));
    const launchForm = postForm(authorization);
    expect(launchForm.action).toBe(`${toolUrl}/launch`);

    const page = await browser.submit(launchForm);
    expect(page).toMatchObject({ url: `${toolUrl}/`, status: 200 });
    expect(page.body).toContain('Hello, Ada Lovelace.');
    expect(page.body).toContain('<th>Course</th><td>Computing 101</td>');
    expect(page.body).toContain('<th>Roles</th><td>student</td>');
    expect(page.body).toContain(`<th>Deployment</th><td>${DEPLOYMENT_ID}</td>`);
    const session = browser.cookies.get(new URL(toolUrl).host)?.get('lti_session');
    expect(session).toMatch(/^[0-9a-f-]{36}$/);

    // The same form post again, as an attacker who captured it would send it: its nonce is spent.
    const replay = new Browser();
    const refused = await replay.submit(launchForm);
    expect(refused.status).toBe(401);
    expect(refused.body).toContain('Launch refused');
    expect(replay.cookies.size).toBe(0);

    // The session belongs to the browser that launched: another one sees no page.
    expect((await replay.open(`${toolUrl}/`)).status).toBe(401);
    expect((await browser.open(`${toolUrl}/`)).body).toContain('Hello, Ada Lovelace.');
  });

  it('publishes its public key, the one in the secret, under its thumbprint', async () => {
    const page = await new Browser().open(`${toolUrl}/jwks`);
    const { keys } = JSON.parse(page.body) as { keys: JWK[] };
    const expected = await exportJWK(await importSPKI(toolPublicPem, 'RS256', { extractable: true }));
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ n: expected.n, e: expected.e, alg: 'RS256', use: 'sig' });
    expect(keys[0]!.kid).toBe(await calculateJwkThumbprint(expected));
  });

  it('refuses a login from a platform it does not know', async () => {
    const browser = new Browser();
    const page = await browser.open(
      `${toolUrl}/login?iss=${encodeURIComponent('https://unknown.example')}&login_hint=u&target_link_uri=${encodeURIComponent(`${toolUrl}/`)}&client_id=1&lti_deployment_id=d`,
    );
    expect(page.status).toBe(400);
    expect(page.body).toContain('not registered');
  });
});
