// The client against a scripted Invoke API: what each method sends, how answers and errors
// come back, what is repeated and what never is. No storage function here: see storage.test.ts.

import { afterEach, describe, expect, it } from 'vitest';

import { LambdaStorage, StorageError, type LambdaStorageOptions } from '../src/index.js';
import { TtlCache } from '../src/cache.js';
import { backoffDelay, retryPolicy, withRetries, type Clock } from '../src/retry.js';
import {
  emulatorFunctionError,
  functionError,
  localLambdaClient,
  ok,
  scriptedLambda,
  throttled,
  type Reply,
  type ScriptedLambda,
} from './support.js';

let lambda: ScriptedLambda | undefined;
afterEach(async () => {
  await lambda?.close();
  lambda = undefined;
});

async function storageAnswering(
  answer: (payload: Record<string, unknown>, index: number) => Reply | 'hang' | 'reset',
  { maxAttempts, ...options }: Partial<LambdaStorageOptions> & { maxAttempts?: number } = {},
): Promise<{ storage: LambdaStorage; calls: Array<Record<string, unknown>> }> {
  lambda = await scriptedLambda(answer);
  const storage = new LambdaStorage({
    functionName: 'storage',
    client: localLambdaClient(lambda.endpoint),
    timeoutMs: 5_000,
    retry: { maxAttempts: maxAttempts ?? 3, baseDelayMs: 1, maxDelayMs: 5 },
    ...options,
  });
  return { storage, calls: lambda.calls };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const LAUNCH_CONFIG = {
  iss: 'https://canvas.instructure.com',
  clientId: '10000000000001',
  deploymentId: '1:abc',
  authUrl: 'https://sso.canvaslms.com/api/lti/authorize_redirect',
  tokenUrl: 'https://sso.canvaslms.com/login/oauth2/token',
  jwksUrl: 'https://sso.canvaslms.com/api/lti/security/jwks',
};

describe('what each method sends and returns', () => {
  it('sends one payload per call, in the function\'s shape, and maps null to undefined', async () => {
    const { storage, calls } = await storageAnswering(() => ok(null));
    const client = { ...LAUNCH_CONFIG, name: 'Canvas' };
    const session = { id: 's', user: { id: 'u', roles: [] } } as never;
    const registration = { openIdConfiguration: {} as never, expiresAt: 1 };

    expect(await storage.getClientById('c')).toBeUndefined();
    expect(await storage.getDeployment('c', 'd')).toBeUndefined();
    expect(await storage.getSession('s')).toBeUndefined();
    expect(await storage.getLaunchConfig('i', 'c', 'd')).toBeUndefined();
    expect(await storage.getRegistrationSession('r')).toBeUndefined();
    expect(await storage.updateClient('c', { name: 'n' })).toBeUndefined();
    await storage.deleteClient('c');
    await storage.updateDeployment('c', 'd', { name: 'n' });
    await storage.deleteDeployment('c', 'd');
    await storage.storeNonce('n', new Date(Date.UTC(2030, 0, 2, 3, 4, 5, 6)));
    await storage.saveLaunchConfig(LAUNCH_CONFIG);
    await storage.setRegistrationSession('r', registration);
    await storage.deleteRegistrationSession('r');
    await storage.addClient(client);
    await storage.addDeployment('c', { deploymentId: 'd' });
    await storage.addSession(session);
    await storage.listClients();
    await storage.listDeployments('c');
    await storage.validateNonce('n');

    expect(calls).toEqual([
      { op: 'getClientById', clientId: 'c' },
      { op: 'getDeployment', clientId: 'c', deploymentId: 'd' },
      { op: 'getSession', sessionId: 's' },
      { op: 'getLaunchConfig', iss: 'i', clientId: 'c', deploymentId: 'd' },
      { op: 'getRegistrationSession', sessionId: 'r' },
      { op: 'updateClient', clientId: 'c', client: { name: 'n' } },
      { op: 'deleteClient', clientId: 'c' },
      { op: 'updateDeployment', clientId: 'c', deploymentId: 'd', deployment: { name: 'n' } },
      { op: 'deleteDeployment', clientId: 'c', deploymentId: 'd' },
      { op: 'storeNonce', nonce: 'n', expiresAt: '2030-01-02T03:04:05.006Z' },
      { op: 'saveLaunchConfig', launchConfig: LAUNCH_CONFIG },
      { op: 'setRegistrationSession', sessionId: 'r', session: registration },
      { op: 'deleteRegistrationSession', sessionId: 'r' },
      { op: 'addClient', id: expect.stringMatching(UUID), client },
      { op: 'addDeployment', clientId: 'c', id: expect.stringMatching(UUID), deployment: { deploymentId: 'd' } },
      { op: 'addSession', session },
      { op: 'listClients' },
      { op: 'listDeployments', clientId: 'c' },
      { op: 'validateNonce', nonce: 'n' },
    ]);
  });

  it('returns results as the function answers them', async () => {
    const answers: Record<string, unknown> = {
      addClient: 'client-id',
      validateNonce: true,
      getLaunchConfig: LAUNCH_CONFIG,
      listClients: [{ id: 'a' }],
    };
    const { storage } = await storageAnswering((payload) => ok(answers[payload.op as string]));
    expect(await storage.addClient({ ...LAUNCH_CONFIG, name: 'n' })).toBe('client-id');
    expect(await storage.validateNonce('n')).toBe(true);
    expect(await storage.getLaunchConfig('i', 'c', 'd')).toEqual(LAUNCH_CONFIG);
    expect(await storage.listClients()).toEqual([{ id: 'a' }]);
  });

  it('refuses an invalid Date before invoking', async () => {
    const { storage, calls } = await storageAnswering(() => ok(null));
    const error = await storage.storeNonce('n', new Date(Number.NaN)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StorageError);
    expect((error as StorageError).type).toBe('InvalidInput');
    expect(calls).toHaveLength(0);
  });
});

describe('errors', () => {
  for (const [surface, reply] of [
    ['real Lambda (200 + X-Amz-Function-Error)', functionError],
    ['cargo lambda watch (500)', emulatorFunctionError],
  ] as const) {
    it(`a function error from ${surface} is a StorageError of its type`, async () => {
      const { storage } = await storageAnswering(() =>
        reply('Conflict', 'addClient: a client with this iss and clientId exists'),
      );
      const error = await storage.addClient({ ...LAUNCH_CONFIG, name: 'n' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StorageError);
      expect(error).toMatchObject({
        name: 'Conflict',
        type: 'Conflict',
        op: 'addClient',
        retryable: false,
        message: 'addClient: a client with this iss and clientId exists',
      });
    });

    it(`a function error from ${surface} carries Lambda's request id`, async () => {
      const { storage } = await storageAnswering(() => {
        const answer = reply('Internal', 'migrations not applied');
        return { ...answer, headers: { ...answer.headers, 'x-amzn-requestid': 'c0ffee00-0000-4000-8000-000000000001' } };
      });
      const error = (await storage.listClients().catch((e: unknown) => e)) as StorageError;
      expect(error.requestId).toBe('c0ffee00-0000-4000-8000-000000000001');
    });
  }

  it('throttling carries the request id; an answer that never came has none', async () => {
    const { storage } = await storageAnswering(
      (_, index) =>
        index === 0
          ? { ...throttled(), headers: { ...throttled().headers, 'x-amzn-requestid': 'throttled-1' } }
          : 'hang',
      { timeoutMs: 200, maxAttempts: 1 },
    );
    const first = (await storage.getSession('s').catch((e: unknown) => e)) as StorageError;
    expect(first).toMatchObject({ type: 'Unavailable', requestId: 'throttled-1' });
    const second = (await storage.getSession('s').catch((e: unknown) => e)) as StorageError;
    expect(second).toBeInstanceOf(StorageError);
    expect(second.requestId).toBeUndefined();
  });

  it('an error of the runtime itself (a crash, a timeout) is Internal and says which', async () => {
    const { storage } = await storageAnswering(() =>
      functionError('Sandbox.Timedout', 'Task timed out after 30.00 seconds'),
    );
    const error = (await storage.listClients().catch((e: unknown) => e)) as StorageError;
    expect(error.type).toBe('Internal');
    expect(error.message).toContain('Sandbox.Timedout');
  });

  it('AWS set-up errors come through as the AWS SDK threw them', async () => {
    const { storage } = await storageAnswering(() => ({
      status: 404,
      headers: { 'x-amzn-errortype': 'ResourceNotFoundException' },
      body: { message: 'Function not found: storage' },
    }));
    const error = (await storage.listClients().catch((e: unknown) => e)) as Error;
    expect(error).not.toBeInstanceOf(StorageError);
    expect(error.name).toBe('ResourceNotFoundException');
  });

  it('no answer within timeoutMs is Unavailable', async () => {
    const { storage } = await storageAnswering(() => 'hang', { timeoutMs: 200, maxAttempts: 1 });
    const error = (await storage.getSession('s').catch((e: unknown) => e)) as StorageError;
    expect(error).toBeInstanceOf(StorageError);
    expect(error.type).toBe('Unavailable');
    expect(error.retryable).toBe(true);
    expect(error.message).toContain('200 ms');
  });
});

describe('what is repeated', () => {
  const unavailable = () => functionError('Unavailable', 'the database did not answer in time');
  const safeCalls: Array<[string, (storage: LambdaStorage) => Promise<unknown>]> = [
    ['getLaunchConfig', (s) => s.getLaunchConfig('i', 'c', 'd')],
    ['getSession', (s) => s.getSession('s')],
    ['addSession', (s) => s.addSession({ id: 's' } as never)],
    ['addClient', (s) => s.addClient({ ...LAUNCH_CONFIG, name: 'n' })],
    ['deleteDeployment', (s) => s.deleteDeployment('c', 'd')],
  ];

  for (const [op, run] of safeCalls) {
    it(`${op}: Unavailable is retried up to maxAttempts, then thrown`, async () => {
      const { storage, calls } = await storageAnswering(unavailable);
      const error = (await run(storage).catch((e: unknown) => e)) as StorageError;
      expect(error.type).toBe('Unavailable');
      expect(calls).toHaveLength(3);
    });
  }

  it('a retry that succeeds returns its result', async () => {
    const { storage, calls } = await storageAnswering((_, index) =>
      index < 2 ? unavailable() : ok(LAUNCH_CONFIG),
    );
    expect(await storage.getLaunchConfig('i', 'c', 'd')).toEqual(LAUNCH_CONFIG);
    expect(calls).toHaveLength(3);
  });

  it('Lambda throttling and lost connections are retried for safe calls', async () => {
    const { storage, calls } = await storageAnswering((_, index) =>
      index === 0 ? throttled() : index === 1 ? 'reset' : ok(null),
    );
    expect(await storage.getSession('s')).toBeUndefined();
    expect(calls).toHaveLength(3);
  });

  it('the answer from cargo lambda watch (a 500) is not repeated by the AWS SDK', async () => {
    const { storage, calls } = await storageAnswering(
      () => emulatorFunctionError('Unavailable', 'no database'),
      { maxAttempts: 1 },
    );
    await expect(storage.getSession('s')).rejects.toMatchObject({ type: 'Unavailable' });
    expect(calls).toHaveLength(1);
  });

  for (const op of ['storeNonce', 'validateNonce'] as const) {
    for (const [what, reply] of [
      ['Unavailable', unavailable],
      ['a 500 from cargo lambda watch', () => emulatorFunctionError('Unavailable', 'x')],
      ['throttling', throttled],
      ['a lost connection', (): 'reset' => 'reset'],
    ] as const) {
      it(`${op} is never repeated, after ${what}`, async () => {
        const { storage, calls } = await storageAnswering(reply);
        const run =
          op === 'storeNonce' ? storage.storeNonce('n', new Date()) : storage.validateNonce('n');
        await expect(run).rejects.toMatchObject({ type: 'Unavailable', op });
        expect(calls).toHaveLength(1);
      });
    }
  }

  it('errors that would fail again are not repeated', async () => {
    for (const type of ['InvalidInput', 'NotFound', 'Conflict', 'Forbidden', 'Internal']) {
      const { storage, calls } = await storageAnswering(() => functionError(type, 'x'));
      await expect(storage.getSession('s')).rejects.toMatchObject({ type });
      expect(calls).toHaveLength(1);
      await lambda?.close();
    }
  });
});

describe('safe adds', () => {
  for (const [op, add] of [
    ['addClient', (s: LambdaStorage) => s.addClient({ ...LAUNCH_CONFIG, name: 'n' })],
    ['addDeployment', (s: LambdaStorage) => s.addDeployment('c', { deploymentId: 'd' })],
  ] as const) {
    it(`${op} sends one id of its own, the same on every attempt of a call`, async () => {
      const { storage, calls } = await storageAnswering((payload, index) =>
        index < 2 ? functionError('Unavailable', 'x') : ok(payload.id),
      );
      const id = await add(storage);
      expect(id).toMatch(UUID);
      expect(calls.map((call) => call.id)).toEqual([id, id, id]);
      const next = await add(storage);
      expect(next).not.toBe(id);
    });
  }
});

describe('deadline', () => {
  const unavailable = () => Promise.reject(new StorageError('Unavailable', 'getSession', 'down'));

  it('stops retries when the next attempt would start past it, and cuts each attempt to what is left', async () => {
    let now = 0;
    const clock: Clock = { now: () => now, sleep: async (ms) => void (now += ms), random: () => 0.5 };
    const policy = retryPolicy({ maxAttempts: 10, baseDelayMs: 100, maxDelayMs: 1000 });
    const given: number[] = [];
    const attempt = (timeLeftMs: number) => {
      given.push(timeLeftMs);
      now += 10; // each attempt takes 10 ms
      return unavailable();
    };
    const plan = { op: 'getSession', policy, repeatable: true, deadline: 300, logger: undefined };
    await expect(withRetries(plan, attempt, clock)).rejects.toMatchObject({ type: 'Unavailable' });
    // Waits 50, 100, 200: the third would end at 380, past 300.
    expect(given).toEqual([300, 240, 130]);
  });

  it('deadlineMs bounds a call whose first attempt hangs: no retry after it', async () => {
    const { storage, calls } = await storageAnswering(() => 'hang', { deadlineMs: 200 });
    const error = (await storage.getSession('s').catch((e: unknown) => e)) as StorageError;
    expect(error).toMatchObject({ type: 'Unavailable', op: 'getSession' });
    expect(calls).toHaveLength(1);
  });

  it('withRemainingTime bounds every call made inside it, and none starts once it has passed', async () => {
    const { storage, calls } = await storageAnswering((payload) =>
      payload.op === 'getSession' ? 'hang' : ok(null),
    );
    const error = (await storage
      .withRemainingTime(200, async () => {
        await storage.getLaunchConfig('i', 'c', 'd'); // answered at once
        return storage.getSession('s');
      })
      .catch((e: unknown) => e)) as StorageError;
    expect(error).toMatchObject({ type: 'Unavailable', op: 'getSession' });
    expect(error.message).toMatch(/within (1\d\d|200) ms/);
    expect(calls.map((call) => call.op)).toEqual(['getLaunchConfig', 'getSession']);

    const late = (await storage
      .withRemainingTime(0, () => storage.listClients())
      .catch((e: unknown) => e)) as StorageError;
    expect(late).toMatchObject({ type: 'Unavailable', op: 'listClients' });
    expect(calls).toHaveLength(2);
  });
});

describe('logger', () => {
  function recordingLogger() {
    const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
    const at = (level: string) => (obj: Record<string, unknown>, msg: string) =>
      void lines.push({ level, obj, msg });
    return { logger: { debug: at('debug'), warn: at('warn'), error: at('error') }, lines };
  }
  const unavailable = (id: string): Reply => {
    const answer = functionError('Unavailable', 'no database');
    return { ...answer, headers: { ...answer.headers, 'x-amzn-requestid': id } };
  };

  it('hears of each retry and of the give-up, with op, attempt, error type and request id only', async () => {
    const { logger, lines } = recordingLogger();
    const { storage } = await storageAnswering((_, index) => unavailable(`r${index}`), { logger });
    await expect(storage.getSession('secret-session-id')).rejects.toMatchObject({ type: 'Unavailable' });
    expect(lines.map(({ level, obj }) => [level, obj.op, obj.attempt, obj.errorType, obj.requestId])).toEqual([
      ['warn', 'getSession', 1, 'Unavailable', 'r0'],
      ['warn', 'getSession', 2, 'Unavailable', 'r1'],
      ['error', 'getSession', 3, 'Unavailable', 'r2'],
    ]);
    expect(lines[2]!.obj.reason).toBe('attempts spent');
    expect(JSON.stringify(lines)).not.toContain('secret-session-id');
  });

  it('hears why a nonce call was not repeated, and of errors the storage answered at debug', async () => {
    const { logger, lines } = recordingLogger();
    const { storage } = await storageAnswering((payload) =>
      payload.op === 'validateNonce' ? unavailable('n1') : functionError('Conflict', 'x'),
      { logger },
    );
    await expect(storage.validateNonce('secret-nonce')).rejects.toMatchObject({ type: 'Unavailable' });
    await expect(storage.addSession({ id: 's' } as never)).rejects.toMatchObject({ type: 'Conflict' });
    expect(lines.map(({ level, obj }) => [level, obj.op, obj.reason])).toEqual([
      ['error', 'validateNonce', 'not repeatable'],
      ['debug', 'addSession', undefined],
    ]);
    expect(JSON.stringify(lines)).not.toContain('secret-nonce');
  });
});

describe('backoff', () => {
  it('waits capped exponential backoff with full jitter between attempts', async () => {
    const policy = retryPolicy({ maxAttempts: 6, baseDelayMs: 100, maxDelayMs: 1000 });
    // The ceiling doubles from baseDelayMs and stops at maxDelayMs; the wait is a random share.
    expect([1, 2, 3, 4, 5].map((n) => backoffDelay(policy, n, 0.999999))).toEqual([
      99, 199, 399, 799, 999,
    ]);
    expect(backoffDelay(policy, 3, 0)).toBe(0);
    expect(backoffDelay(policy, 3, 0.5)).toBe(200);

    const waits: number[] = [];
    const clock: Clock = { now: () => 0, sleep: async (ms) => void waits.push(ms), random: () => 0.5 };
    let attempts = 0;
    const failing = () => {
      attempts++;
      return Promise.reject(new StorageError('Unavailable', 'getSession', 'down'));
    };
    const plan = { op: 'getSession', policy, repeatable: true, deadline: Infinity, logger: undefined };
    await expect(withRetries(plan, failing, clock)).rejects.toMatchObject({
      type: 'Unavailable',
    });
    expect(attempts).toBe(6);
    expect(waits).toEqual([50, 100, 200, 400, 500]);

    waits.length = 0;
    attempts = 0;
    await expect(withRetries({ ...plan, repeatable: false }, failing, clock)).rejects.toBeInstanceOf(
      StorageError,
    );
    expect(attempts).toBe(1);
    expect(waits).toEqual([]);
  });

  it('refuses settings that make no sense, naming them', () => {
    expect(() => retryPolicy({ maxAttempts: 0 })).toThrow(/maxAttempts/);
    expect(() => retryPolicy({ baseDelayMs: -1 })).toThrow(/baseDelayMs/);
    expect(() => new LambdaStorage({ functionName: '' })).toThrow(/functionName/);
    expect(() => new LambdaStorage({ functionName: 'f', timeoutMs: 0 })).toThrow(/timeoutMs/);
    expect(() => new LambdaStorage({ functionName: 'f', deadlineMs: -1 })).toThrow(/deadlineMs/);
    expect(() => new LambdaStorage({ functionName: 'f', sessionCache: { maxEntries: 0 } })).toThrow(
      /sessionCache\.maxEntries/,
    );
  });
});

describe('launch-config cache (opt-in)', () => {
  it('is off by default: every getLaunchConfig invokes', async () => {
    const { storage, calls } = await storageAnswering(() => ok(LAUNCH_CONFIG));
    await storage.getLaunchConfig('i', 'c', 'd');
    await storage.getLaunchConfig('i', 'c', 'd');
    expect(calls).toHaveLength(2);
  });

  it('serves repeats from memory, never caches a miss, and forgets everything on a write', async () => {
    let registered = false;
    const { storage, calls } = await storageAnswering((payload) =>
      payload.op === 'getLaunchConfig' ? ok(registered ? LAUNCH_CONFIG : null) : ok(null),
      { launchConfigCache: true },
    );
    expect(await storage.getLaunchConfig('i', 'c', 'd')).toBeUndefined();
    registered = true;
    expect(await storage.getLaunchConfig('i', 'c', 'd')).toEqual(LAUNCH_CONFIG);
    expect(await storage.getLaunchConfig('i', 'c', 'd')).toEqual(LAUNCH_CONFIG);
    expect(calls.filter((c) => c.op === 'getLaunchConfig')).toHaveLength(2);

    await storage.deleteClient('c');
    registered = false;
    expect(await storage.getLaunchConfig('i', 'c', 'd')).toBeUndefined();
    expect(calls.filter((c) => c.op === 'getLaunchConfig')).toHaveLength(3);
  });
});

describe('session cache (opt-in)', () => {
  const SESSION = { id: '5e55e55e-0000-4000-8000-000000000001', user: { id: 'u', roles: [] } };

  it('is off by default: every getSession invokes', async () => {
    const { storage, calls } = await storageAnswering(() => ok(SESSION));
    await storage.getSession(SESSION.id);
    await storage.getSession(SESSION.id);
    expect(calls).toHaveLength(2);
  });

  it('serves repeats from memory, never caches a miss, and drops a session this client adds', async () => {
    let stored: unknown = null;
    const { storage, calls } = await storageAnswering(
      (payload) => (payload.op === 'getSession' ? ok(stored) : ok(SESSION.id)),
      { sessionCache: true },
    );
    const gets = () => calls.filter((call) => call.op === 'getSession').length;
    expect(await storage.getSession(SESSION.id)).toBeUndefined();
    stored = SESSION;
    expect(await storage.getSession(SESSION.id)).toEqual(SESSION);
    expect(await storage.getSession(SESSION.id)).toEqual(SESSION);
    expect(gets()).toBe(2);

    await storage.addSession(SESSION as never);
    expect(await storage.getSession(SESSION.id)).toEqual(SESSION);
    expect(gets()).toBe(3);

    await storage.close();
    expect(await storage.getSession(SESSION.id)).toEqual(SESSION);
    expect(gets()).toBe(4);
  });

  it('keeps an entry for ttlMs and at most maxEntries, the least recently used out first', () => {
    let now = 0;
    const cache = new TtlCache<string>('sessionCache', { ttlMs: 100, maxEntries: 2 }, { ttlMs: 1, maxEntries: 1 }, () => now);
    cache.set('a', 'A');
    cache.set('b', 'B');
    expect(cache.get('a')).toBe('A'); // a is now the most recently used
    cache.set('c', 'C');
    expect([cache.get('a'), cache.get('b'), cache.get('c')]).toEqual(['A', undefined, 'C']);
    now = 99;
    expect(cache.get('c')).toBe('C');
    now = 100;
    expect(cache.get('c')).toBeUndefined();
    expect(cache.size).toBe(1);
  });
});

describe('cleanup, as PostgresStorage has it', () => {
  it('cleanup() sends the cleanup op and returns its counts', async () => {
    const counts = { noncesDeleted: 3, sessionsDeleted: 2, registrationSessionsDeleted: 1 };
    const { storage, calls } = await storageAnswering(() => ok(counts));
    expect(await storage.cleanup()).toEqual(counts);
    expect(calls).toEqual([{ op: 'cleanup' }]);
  });
});
