// Every LTIStorage method through LambdaStorage against the real storage function (cargo lambda
// watch) on a real PostgreSQL, with the objects TypeScript code passes by habit.

import { randomUUID } from 'node:crypto';

import type { LTISession } from '@lti-tool/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LambdaStorage, StorageError, type LambdaStorageOptions } from '../src/index.js';
import { localLambdaClient, loseAnswers, startLocalStorage, type LocalStorage } from './support.js';

let local: LocalStorage;
let storage: LambdaStorage;

beforeAll(async () => {
  local = await startLocalStorage();
  storage = new LambdaStorage({
    functionName: local.functionName,
    client: localLambdaClient(local.endpoint),
  });
});
afterAll(async () => {
  await local?.stop();
});

const platform = (clientId: string) => ({
  name: 'Canvas',
  iss: 'https://canvas.instructure.com',
  clientId,
  authUrl: 'https://sso.canvaslms.com/api/lti/authorize_redirect',
  tokenUrl: 'https://sso.canvaslms.com/login/oauth2/token',
  jwksUrl: 'https://sso.canvaslms.com/api/lti/security/jwks',
});

describe('LambdaStorage against the storage function', () => {
  it('clients and deployments, passed as whole objects, round-trip without the extra fields', async () => {
    const wholeClient = { ...platform('10000000000001'), deployments: [], id: 'ignored', extra: 1 };
    const id = await storage.addClient(wholeClient);
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const deploymentId = await storage.addDeployment(id, {
      deploymentId: 'default',
      name: 'Default',
      ...{ id: 'ignored', clientId: 'ignored' },
    });
    const deployment = { id: deploymentId, deploymentId: 'default', name: 'Default', clientId: id };
    expect(await storage.getDeployment(id, deploymentId)).toEqual(deployment);
    expect(await storage.listDeployments(id)).toEqual([deployment]);

    const client = await storage.getClientById(id);
    expect(client).toEqual({ ...platform('10000000000001'), id, deployments: [deployment] });
    expect(await storage.listClients()).toEqual([{ ...platform('10000000000001'), id }]);

    // An admin UI sends back what it read, changed.
    await storage.updateClient(id, { ...client!, name: 'Canvas (prod)' });
    await storage.updateDeployment(id, deploymentId, { ...deployment, description: 'main' });
    expect(await storage.getClientById(id)).toMatchObject({
      name: 'Canvas (prod)',
      deployments: [{ ...deployment, description: 'main' }],
    });
    const rows = await local.sql.query('SELECT name, client_id FROM clients');
    expect(rows.rows).toEqual([{ name: 'Canvas (prod)', client_id: '10000000000001' }]);

    expect(await storage.getLaunchConfig(platform('').iss, '10000000000001', 'any')).toEqual({
      iss: 'https://canvas.instructure.com',
      clientId: '10000000000001',
      deploymentId: 'default',
      authUrl: platform('').authUrl,
      tokenUrl: platform('').tokenUrl,
      jwksUrl: platform('').jwksUrl,
    });
    await storage.saveLaunchConfig({ ...platform('x'), deploymentId: 'd' });

    await expect(storage.addClient(platform('10000000000001'))).rejects.toMatchObject({
      name: 'Conflict',
      type: 'Conflict',
      op: 'addClient',
    });
    await expect(storage.updateClient(randomUUID(), { name: 'x' })).rejects.toBeInstanceOf(
      StorageError,
    );

    await storage.deleteDeployment(id, deploymentId);
    expect(await storage.getDeployment(id, deploymentId)).toBeUndefined();
    await storage.deleteClient(id);
    expect(await storage.getClientById(id)).toBeUndefined();
    expect(await storage.getClientById('not-a-uuid')).toBeUndefined();
    expect(await storage.getLaunchConfig(platform('').iss, '10000000000001', 'any')).toBeUndefined();
  });

  it('nonces: a Date goes as its ISO string, and a nonce validates exactly once', async () => {
    const nonce = randomUUID();
    const expiresAt = new Date(Date.now() + 600_000);
    await storage.storeNonce(nonce, expiresAt);
    const rows = await local.sql.query('SELECT expires_at FROM nonces WHERE nonce = $1', [nonce]);
    expect((rows.rows[0] as { expires_at: Date }).expires_at.getTime()).toBe(expiresAt.getTime());
    await expect(storage.storeNonce(nonce, expiresAt)).rejects.toMatchObject({ type: 'Conflict' });
    expect(await storage.validateNonce(nonce)).toBe(true);
    expect(await storage.validateNonce(nonce)).toBe(false);
    expect(await storage.validateNonce(randomUUID())).toBe(false);
  });

  it('sessions and registration sessions round-trip whole', async () => {
    const session = {
      id: randomUUID(),
      jwtPayload: { iss: 'https://canvas.instructure.com', sub: 'u1' },
      user: { id: 'u1', name: 'Ada', roles: ['Learner'] },
      context: { id: 'c1', label: 'CS101', title: 'Computing' },
      platform: { issuer: 'i', clientId: 'c', deploymentId: 'd', name: 'Canvas' },
      launch: { target: 'https://tool.example/launch' },
      customParameters: { a: 'b' },
      isAdmin: false,
      isInstructor: false,
      isStudent: true,
      isAssignmentAndGradesAvailable: false,
      isDeepLinkingAvailable: false,
      isNameAndRolesAvailable: false,
    } as unknown as LTISession;
    expect(await storage.addSession(session)).toBe(session.id);
    expect(await storage.getSession(session.id)).toEqual(session);
    expect(await storage.getSession(randomUUID())).toBeUndefined();

    const sessionId = randomUUID();
    const registration = {
      openIdConfiguration: { issuer: 'https://moodle.example' } as never,
      registrationToken: 'token',
      expiresAt: Date.now() + 900_000,
    };
    await storage.setRegistrationSession(sessionId, registration);
    expect(await storage.getRegistrationSession(sessionId)).toEqual(registration);
    await storage.deleteRegistrationSession(sessionId);
    expect(await storage.getRegistrationSession(sessionId)).toBeUndefined();
  });

  it('bad input is an InvalidInput StorageError naming the field, not the value', async () => {
    const error = (await storage
      .addClient({ ...platform('1'), name: 'x'.repeat(300) })
      .catch((e: unknown) => e)) as StorageError;
    expect(error).toBeInstanceOf(StorageError);
    expect(error.type).toBe('InvalidInput');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('name');
    expect(error.message).not.toContain('xxxx');
  });
});

describe('retries against the storage function', () => {
  /** A LambdaStorage whose attempts lose the answers `lose` picks, after the function ran. */
  function losing(
    lose: (payload: Record<string, unknown>, index: number) => boolean,
    options: Partial<LambdaStorageOptions> = {},
  ) {
    const client = localLambdaClient(local.endpoint);
    const sent = loseAnswers(client, lose);
    return { storage: new LambdaStorage({ functionName: local.functionName, client, ...options }), sent };
  }
  const clientCount = async (clientId: string) =>
    (await local.sql.query('SELECT count(*)::int AS n FROM clients WHERE client_id = $1', [clientId]))
      .rows[0] as { n: number };

  it('an add that committed but whose answer was lost is retried: the same id back, one row', async () => {
    const { storage, sent } = losing((_, index) => index === 0 || index === 2);
    const id = await storage.addClient(platform('10000000000101'));
    const deploymentId = await storage.addDeployment(id, { deploymentId: 'lost-answer' });
    expect(sent.map((call) => [call.op, call.id])).toEqual([
      ['addClient', id],
      ['addClient', id],
      ['addDeployment', deploymentId],
      ['addDeployment', deploymentId],
    ]);
    expect(await clientCount('10000000000101')).toEqual({ n: 1 });
    const deployments = await local.sql.query('SELECT id FROM deployments WHERE client_id = $1', [id]);
    expect(deployments.rows).toEqual([{ id: deploymentId }]);
    expect(await storage.getClientById(id)).toMatchObject({ deployments: [{ id: deploymentId }] });
  });

  it('the deadline stops the retries of a call whose answers are all lost', async () => {
    const reasons: unknown[] = [];
    const logger = { debug() {}, warn() {}, error: (obj: Record<string, unknown>) => void reasons.push(obj.reason) };
    const { storage, sent } = losing(() => true, {
      deadlineMs: 1_000,
      retry: { maxAttempts: 1_000, baseDelayMs: 100, maxDelayMs: 100 },
      logger,
    });
    const error = await storage.addClient(platform('10000000000102')).catch((e: unknown) => e);
    expect(error).toMatchObject({ type: 'Unavailable', op: 'addClient' });
    expect(reasons).toEqual(['deadline']);
    expect(sent.length).toBeLessThan(1_000);
    // Every attempt carried the same id: the add is there once.
    expect(new Set(sent.map((call) => call.id)).size).toBe(1);
    expect(await clientCount('10000000000102')).toEqual({ n: 1 });
  });

  it('cleanup() deletes what has expired and answers the counts PostgresStorage.cleanup() answers', async () => {
    const past = "now() - interval '1 minute'";
    const future = "now() + interval '1 hour'";
    await local.sql.query(`DELETE FROM nonces; DELETE FROM sessions; DELETE FROM registration_sessions`);
    await local.sql.query(
      `INSERT INTO nonces (nonce, expires_at) VALUES ('old-1', ${past}), ('old-2', ${past}), ('new', ${future});
       INSERT INTO sessions (data, expires_at) VALUES ('{}', ${past}), ('{}', ${future});
       INSERT INTO registration_sessions (data, expires_at) VALUES ('{}', ${future})`,
    );
    expect(await storage.cleanup()).toEqual({
      noncesDeleted: 2,
      sessionsDeleted: 1,
      registrationSessionsDeleted: 0,
    });
    const left = await local.sql.query(
      'SELECT (SELECT count(*) FROM nonces)::int AS nonces, (SELECT count(*) FROM sessions)::int AS sessions',
    );
    expect(left.rows).toEqual([{ nonces: 1, sessions: 1 }]);
  });
});
