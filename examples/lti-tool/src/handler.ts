// A minimal LTI 1.3 tool on one Lambda function behind an HTTP API: OIDC login initiation,
// the launch (form_post of id_token and state), the tool's JWKS, and a page showing who launched.
// Storage is the lti-storage function's runtime alias, through lti-storage-client.

import { createPrivateKey, createPublicKey, hkdfSync } from 'node:crypto';

import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { LTITool, type LTISession } from '@lti-tool/core';
import { calculateJwkThumbprint, exportJWK, importPKCS8, importSPKI } from 'jose';
import { LambdaStorage } from 'lti-storage-client';

/** The HTTP API's request (payload format 2.0), as far as the tool reads it. */
export interface HttpRequest {
  rawPath: string;
  rawQueryString: string;
  headers: Record<string, string | undefined>;
  cookies?: string[];
  body?: string;
  isBase64Encoded: boolean;
  requestContext: { domainName: string; http: { method: string } };
}

export interface HttpResponse {
  statusCode: number;
  headers: Record<string, string>;
  cookies?: string[];
  body: string;
}

const SESSION_COOKIE = 'lti_session';
/** How long the browser keeps the session cookie; the storage keeps the session as configured. */
const SESSION_COOKIE_SECONDS = 3600;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

let tool: Promise<LTITool> | undefined;

export async function handler(request: HttpRequest): Promise<HttpResponse> {
  // One LTITool per container, built on its first request; a failed build is tried again.
  tool ??= buildTool().catch((error: unknown) => {
    tool = undefined;
    throw error;
  });
  const lti = await tool;
  const method = request.requestContext.http.method;
  switch (`${method} ${request.rawPath}`) {
    case 'GET /login':
    case 'POST /login':
      return login(lti, request);
    case 'POST /launch':
      return launch(lti, request);
    case 'GET /jwks':
      return json(200, await lti.getJWKS());
    case 'GET /':
      return page(lti, request);
    default:
      return html(404, 'Not found', '<p>No such page.</p>');
  }
}

/**
 * The tool's keys come from one Secrets Manager secret holding its RSA private key (PKCS#8 PEM).
 * The state secret is derived from it, so there is one secret to make and to rotate (a rotation
 * only fails the logins in flight).
 */
async function buildTool(): Promise<LTITool> {
  const secret = await new SecretsManagerClient({}).send(
    new GetSecretValueCommand({ SecretId: setting('TOOL_KEY_SECRET_ARN') }),
  );
  if (secret.SecretString === undefined) throw new Error('the tool key secret holds no text');
  const privatePem = createPrivateKey(secret.SecretString).export({ type: 'pkcs8', format: 'pem' }) as string;
  const publicPem = createPublicKey(privatePem).export({ type: 'spki', format: 'pem' }) as string;
  const keyPair = {
    privateKey: await importPKCS8(privatePem, 'RS256'),
    publicKey: await importSPKI(publicPem, 'RS256', { extractable: true }),
  };
  const stateSecret = new Uint8Array(hkdfSync('sha256', privatePem, '', 'lti-tool state', 32));
  return new LTITool({
    stateSecret,
    keyPair,
    // A new key gets a new key id, so platforms fetch the JWKS again.
    security: { keyId: await calculateJwkThumbprint(await exportJWK(keyPair.publicKey)) },
    storage: new LambdaStorage({
      functionName: setting('LTI_STORAGE_FUNCTION'),
      // Within the function's own 20 s timeout (template.yaml), retries included.
      timeoutMs: 5_000,
      deadlineMs: 15_000,
      launchConfigCache: true,
    }),
  });
}

function setting(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`the environment variable ${name} is not set`);
  return value;
}

/** OIDC login initiation: the platform sends the browser here, the tool sends it back with a nonce. */
async function login(lti: LTITool, request: HttpRequest): Promise<HttpResponse> {
  const params = request.requestContext.http.method === 'POST' ? form(request) : new URLSearchParams(request.rawQueryString);
  const missing = ['iss', 'login_hint', 'target_link_uri', 'client_id', 'lti_deployment_id'].find((name) => !params.get(name));
  if (missing !== undefined) return html(400, 'Login failed', `<p>The login request has no <code>${missing}</code>.</p>`);
  try {
    const authUrl = await lti.handleLogin({
      iss: params.get('iss')!,
      login_hint: params.get('login_hint')!,
      target_link_uri: params.get('target_link_uri')!,
      client_id: params.get('client_id')!,
      lti_deployment_id: params.get('lti_deployment_id')!,
      lti_message_hint: params.get('lti_message_hint') ?? undefined,
      launchUrl: `${origin(request)}/launch`,
    });
    return { statusCode: 302, headers: { location: authUrl }, body: '' };
  } catch (error) {
    // LTITool's messages name the issuer and client id, nothing secret.
    console.error('login failed:', (error as Error).message);
    return html(400, 'Login failed', '<p>This platform is not registered with the tool, or the storage failed.</p>');
  }
}

/** The launch: the platform's form post of a signed id_token and the state from the login. */
async function launch(lti: LTITool, request: HttpRequest): Promise<HttpResponse> {
  const params = form(request);
  const idToken = params.get('id_token');
  const state = params.get('state');
  if (!idToken || !state) return html(400, 'Launch failed', '<p>The launch has no id_token or state.</p>');
  let session: LTISession;
  try {
    session = await lti.createSession(await lti.verifyLaunch(idToken, state));
  } catch (error) {
    // A replayed launch ends here: its nonce is spent. Only the kind of error is logged: the
    // message can carry the launch's values (the LMS user id).
    console.error('launch refused:', error instanceof Error ? error.name : 'unknown error');
    return html(401, 'Launch refused', '<p>This launch could not be verified. Open the tool from your course again.</p>');
  }
  // SameSite=None: the launch is a cross-site post, and the tool often runs in the platform's
  // iframe; Partitioned keeps the cookie to that embedding site where browsers block the others.
  const cookie = `${SESSION_COOKIE}=${session.id}; Path=/; Max-Age=${SESSION_COOKIE_SECONDS}; HttpOnly; Secure; SameSite=None; Partitioned`;
  return { statusCode: 303, headers: { location: '/' }, cookies: [cookie], body: '' };
}

/** The tool's page: who launched it, from the session the launch stored. */
async function page(lti: LTITool, request: HttpRequest): Promise<HttpResponse> {
  const sessionId = cookieValue(request, SESSION_COOKIE);
  let session: LTISession | undefined;
  try {
    session = sessionId !== undefined && UUID.test(sessionId) ? await lti.getSession(sessionId) : undefined;
  } catch {
    // LTITool's message names the session id, a bearer credential: not logged.
    console.error('session lookup failed');
    return html(503, 'Try again', '<p>The tool could not read your session. Try again in a moment.</p>');
  }
  if (session === undefined) {
    return html(401, 'Not launched', '<p>Open this tool from your course in your LMS.</p>');
  }
  const { user, context, platform } = session;
  const rows: Array<[string, string | undefined]> = [
    ['Name', user.name],
    ['Email', user.email],
    ['User id', user.id],
    ['Roles', user.roles.join(', ')],
    ['Course', context.title],
    ['Platform', platform.issuer],
    ['Deployment', platform.deploymentId],
  ];
  const table = rows.map(([label, value]) => `<tr><th>${label}</th><td>${escape(value ?? '-')}</td></tr>`).join('');
  return html(200, 'Launched', `<p>Hello, ${escape(user.name ?? user.id)}.</p><table>${table}</table>`);
}

/** Where the browser reached this function: the HTTP API (https) or a local server. */
function origin(request: HttpRequest): string {
  const scheme = request.headers['x-forwarded-proto'] === 'http' ? 'http' : 'https';
  return `${scheme}://${request.requestContext.domainName}`;
}

/** A form post's fields; the HTTP API may send such a body base64-encoded. */
function form(request: HttpRequest): URLSearchParams {
  const body = request.body ?? '';
  return new URLSearchParams(request.isBase64Encoded ? Buffer.from(body, 'base64').toString('utf8') : body);
}

function cookieValue(request: HttpRequest, name: string): string | undefined {
  for (const cookie of request.cookies ?? []) {
    const [key, ...value] = cookie.split('=');
    if (key?.trim() === name) return value.join('=').trim();
  }
  return undefined;
}

function json(statusCode: number, value: unknown): HttpResponse {
  return { statusCode, headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) };
}

function html(statusCode: number, title: string, content: string): HttpResponse {
  return {
    statusCode,
    headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' },
    body: `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${content}</body></html>`,
  };
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
