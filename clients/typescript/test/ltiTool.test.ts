// A real @lti-tool/core LTITool on LambdaStorage, against the storage function under cargo
// lambda watch: the switch from PostgresStorage is the constructor, nothing else.

import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';

import { LTITool } from '@lti-tool/core';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LambdaStorage } from '../src/index.js';
import {
  closeServer,
  countInvocations,
  listen,
  localLambdaClient,
  startLocalStorage,
  type LocalStorage,
} from './support.js';

/** How often the storage re-checks for changes made elsewhere (CHANGE_CHECK_INTERVAL_MS). */
const CHANGE_CHECK_INTERVAL_MS = 500;
const CLIENT_CACHE_TTL_MS = 1_000;
const ISS = 'https://canvas.test';
const CLIENT_ID = '10000000000042';
const DEPLOYMENT_ID = '7:deployment';

let local: LocalStorage;
let jwks: Server;
let platformKey: CryptoKey;
let jwksUrl: string;

beforeAll(async () => {
  local = await startLocalStorage({ CHANGE_CHECK_INTERVAL_MS: String(CHANGE_CHECK_INTERVAL_MS) });
  const keys = await generateKeyPair('RS256');
  platformKey = keys.privateKey;
  const publicJwk: JWK = { ...(await exportJWK(keys.publicKey)), kid: 'platform', alg: 'RS256' };
  jwks = createServer((_, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ keys: [publicJwk] }));
  });
  jwksUrl = `${await listen(jwks)}/jwks`;
});
afterAll(async () => {
  if (jwks) await closeServer(jwks);
  await local?.stop();
});

/** An LTITool as a tool's Lambda builds it, on LambdaStorage; counts its invocations. */
async function tool(launchConfigCache: false | { ttlMs: number }, sessionCache = false) {
  const client = localLambdaClient(local.endpoint);
  const invocations = countInvocations(client);
  const storage = new LambdaStorage({
    functionName: local.functionName,
    client,
    launchConfigCache,
    sessionCache,
  });
  const lti = new LTITool({
    stateSecret: crypto.getRandomValues(new Uint8Array(32)),
    keyPair: await generateKeyPair('RS256'),
    storage,
  });
  return { lti, storage, invocations };
}

async function registerPlatform(storage: LambdaStorage): Promise<string> {
  const platform = {
    name: 'Canvas test',
    iss: ISS,
    clientId: CLIENT_ID,
    authUrl: 'https://canvas.test/api/lti/authorize_redirect',
    tokenUrl: 'https://canvas.test/login/oauth2/token',
    jwksUrl,
  };
  // As @lti-tool/postgresql's own tests pass it: the whole object, deployments included.
  const id = await storage.addClient({ ...platform, deployments: [] } as typeof platform);
  await storage.addDeployment(id, { deploymentId: DEPLOYMENT_ID, name: 'Course' });
  return id;
}

/** What the platform does between login and launch: an id_token for the login's nonce. */
async function platformIdToken(authUrl: string): Promise<{ idToken: string; state: string }> {
  const url = new URL(authUrl);
  const nonce = url.searchParams.get('nonce')!;
  const state = url.searchParams.get('state')!;
  const now = Math.floor(Date.now() / 1000);
  const idToken = await new SignJWT({
    nonce,
    given_name: 'Ada',
    family_name: 'Lovelace',
    name: 'Ada Lovelace',
    email: 'ada@example.edu',
    'https://purl.imsglobal.org/spec/lti/claim/message_type': 'LtiResourceLinkRequest',
    'https://purl.imsglobal.org/spec/lti/claim/version': '1.3.0',
    'https://purl.imsglobal.org/spec/lti/claim/deployment_id': DEPLOYMENT_ID,
    'https://purl.imsglobal.org/spec/lti/claim/target_link_uri': 'https://tool.test/content',
    'https://purl.imsglobal.org/spec/lti/claim/roles': [
      'http://purl.imsglobal.org/vocab/lis/v2/membership#Learner',
    ],
    'https://purl.imsglobal.org/spec/lti/claim/context': { id: 'course-1', label: 'CS101', title: 'Computing' },
    'https://purl.imsglobal.org/spec/lti/claim/resource_link': { id: 'link-1', title: 'Week 1' },
  })
    .setProtectedHeader({ alg: 'RS256', kid: 'platform' })
    .setIssuer(ISS)
    .setSubject('user-1')
    .setAudience(CLIENT_ID)
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(platformKey);
  return { idToken, state };
}

function login(lti: LTITool): Promise<string> {
  return lti.handleLogin({
    client_id: CLIENT_ID,
    iss: ISS,
    launchUrl: 'https://tool.test/launch',
    login_hint: 'user-1',
    target_link_uri: 'https://tool.test/content',
    lti_deployment_id: DEPLOYMENT_ID,
  });
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

describe('an LTITool on LambdaStorage', () => {
  it('logs in, verifies the launch, keeps the session, refuses replays; a deleted platform stops', async () => {
    const { lti, storage, invocations } = await tool(false);
    const clientId = await registerPlatform(storage);

    invocations.clear();
    const authUrl = await login(lti);
    expect(new URL(authUrl).origin).toBe('https://canvas.test');
    expect(Object.fromEntries(invocations)).toEqual({ storeNonce: 1, getLaunchConfig: 1 });

    invocations.clear();
    const { idToken, state } = await platformIdToken(authUrl);
    const payload = await lti.verifyLaunch(idToken, state);
    expect(payload.sub).toBe('user-1');
    expect(Object.fromEntries(invocations)).toEqual({ getLaunchConfig: 1, validateNonce: 1 });

    const session = await lti.createSession(payload);
    expect(session.user.id).toBe('user-1');
    expect(await lti.getSession(session.id)).toEqual(session);
    expect(await lti.getSession(randomUUID())).toBeUndefined();

    // The same launch again: its nonce is spent.
    await expect(lti.verifyLaunch(idToken, state)).rejects.toThrow(/Nonce has already been used/);

    // Eight replays of one fresh launch at once: exactly one gets in.
    const fresh = await platformIdToken(await login(lti));
    const outcomes = await Promise.allSettled(
      Array.from({ length: 8 }, () => lti.verifyLaunch(fresh.idToken, fresh.state)),
    );
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);

    // Deleted by another writer (psql, @lti-tool/postgresql, another storage container): logins
    // stop within CHANGE_CHECK_INTERVAL_MS.
    await login(lti);
    await local.sql.query('DELETE FROM deployments WHERE client_id = $1', [clientId]);
    await local.sql.query('DELETE FROM clients WHERE id = $1', [clientId]);
    await sleep(CHANGE_CHECK_INTERVAL_MS + 500);
    await expect(login(lti)).rejects.toThrow(/No valid launch config/);
  });

  it('with the client launch-config cache: one invocation per login and per launch, and a deleted platform still stops', async () => {
    const { lti, storage, invocations } = await tool({ ttlMs: CLIENT_CACHE_TTL_MS });
    const clientId = await registerPlatform(storage);

    const first = await login(lti); // fills the cache
    invocations.clear();
    const authUrl = await login(lti);
    expect(Object.fromEntries(invocations)).toEqual({ storeNonce: 1 });

    invocations.clear();
    const { idToken, state } = await platformIdToken(authUrl);
    await lti.verifyLaunch(idToken, state);
    expect(Object.fromEntries(invocations)).toEqual({ validateNonce: 1 });
    void first;

    await local.sql.query('DELETE FROM deployments WHERE client_id = $1', [clientId]);
    await local.sql.query('DELETE FROM clients WHERE id = $1', [clientId]);
    // The bound widens by the client cache's TTL.
    await sleep(CLIENT_CACHE_TTL_MS + CHANGE_CHECK_INTERVAL_MS + 500);
    await expect(login(lti)).rejects.toThrow(/No valid launch config/);
  });

  it('with the session cache: the page views of a launched user after the first need no invocation', async () => {
    const { lti, storage, invocations } = await tool(false, true);
    const clientId = await registerPlatform(storage);
    const { idToken, state } = await platformIdToken(await login(lti));
    const session = await lti.createSession(await lti.verifyLaunch(idToken, state));

    invocations.clear();
    for (let view = 0; view < 3; view++) expect(await lti.getSession(session.id)).toEqual(session);
    expect(Object.fromEntries(invocations)).toEqual({ getSession: 1 });
    await storage.deleteClient(clientId);
  });
});
