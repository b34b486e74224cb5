import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

import { LambdaClient } from '@aws-sdk/client-lambda';
import type {
  LTIClient,
  LTIDeployment,
  LTIDynamicRegistrationSession,
  LTILaunchConfig,
  LTISession,
  LTIStorage,
} from '@lti-tool/core';

import {
  optionalCache,
  type LaunchConfigCacheOptions,
  type SessionCacheOptions,
  type TtlCache,
} from './cache.js';
import { StorageError } from './errors.js';
import { invokeStorage, type StorageCall } from './invoke.js';
import type { StorageLogger } from './logger.js';
import { retryPolicy, withRetries, type RetryOptions, type RetryPolicy } from './retry.js';

export interface LambdaStorageOptions {
  /**
   * The storage function's runtime alias: the stack's `RuntimeFunctionName` output
   * (`<function>:runtime`), or a name or ARN with the alias.
   */
  functionName: string;
  /** The Lambda client to invoke it with (default: `new LambdaClient({})`, closed by `close()`). */
  client?: LambdaClient;
  /** How long one invocation may take before it counts as Unavailable, in ms (default 25000). */
  timeoutMs?: number;
  /**
   * How long one method call may take in all, its retries and their waits included, in ms
   * (default 25000). No attempt outlives it; none starts when the backoff would end past it.
   * `withRemainingTime` shortens it for the calls made inside.
   */
  deadlineMs?: number;
  /** Repeats of calls that failed as Unavailable or throttled; never of nonce calls. */
  retry?: RetryOptions;
  /** Told about retries (`warn`), give-ups (`error`) and errors the storage answered (`debug`). */
  logger?: StorageLogger;
  /**
   * Keep launch configs found by the storage in this process (off by default): each hit saves
   * one invocation at every login and launch, and widens how long a changed or deleted
   * platform can still be used here by up to `ttlMs`. `true` takes the defaults.
   */
  launchConfigCache?: boolean | LaunchConfigCacheOptions;
  /**
   * Keep sessions found by `getSession` in this process (off by default), as `PostgresStorage`
   * does: each hit saves one invocation at every page view of a launched user. A session is
   * never changed once stored; one that expires or is deleted in the storage may still be
   * served here for up to `ttlMs`. `addSession` of an id through this client drops it. `true`
   * takes the defaults.
   */
  sessionCache?: boolean | SessionCacheOptions;
}

/** What `cleanup()` deleted, as `PostgresStorage.cleanup()` of `@lti-tool/postgresql` says. */
export interface CleanupResult {
  noncesDeleted: number;
  sessionsDeleted: number;
  registrationSessionsDeleted: number;
}

/**
 * Nonce calls are never repeated here: a repeat from outside is a fresh call, to which the
 * nonce stored or consumed by the failed one is a Conflict or false. The function repeats them
 * once itself after a dropped connection, recognising its own earlier attempt; its Unavailable
 * means that did not help either. Everything else is safe to repeat.
 */
const NOT_REPEATABLE: ReadonlySet<string> = new Set(['storeNonce', 'validateNonce']);

/**
 * `LTIStorage` for `@lti-tool/core` backed by the storage function: one invocation per method.
 *
 *     const storage = new LambdaStorage({ functionName: process.env.LTI_STORAGE_FUNCTION! });
 *     const tool = new LTITool({ storage, ... });
 */
export class LambdaStorage implements LTIStorage {
  private readonly functionName: string;
  private readonly client: LambdaClient;
  /** Whether `client` was made here, so `close()` is the one to release it. */
  private readonly ownsClient: boolean;
  private readonly timeoutMs: number;
  private readonly deadlineMs: number;
  private readonly retry: RetryPolicy;
  private readonly logger: StorageLogger | undefined;
  private readonly launchConfigs: TtlCache<LTILaunchConfig> | undefined;
  private readonly sessions: TtlCache<LTISession> | undefined;
  /** The deadline (epoch ms) set by the innermost `withRemainingTime` around a call. */
  private readonly scopedDeadline = new AsyncLocalStorage<number>();

  constructor(options: LambdaStorageOptions) {
    if (typeof options?.functionName !== 'string' || options.functionName === '') {
      throw new TypeError('LambdaStorage: functionName must be the storage function\'s name or ARN');
    }
    this.functionName = options.functionName;
    this.ownsClient = options.client === undefined;
    this.timeoutMs = positiveMs('timeoutMs', options.timeoutMs ?? 25_000);
    this.deadlineMs = positiveMs('deadlineMs', options.deadlineMs ?? 25_000);
    this.retry = retryPolicy(options.retry);
    this.logger = options.logger;
    this.launchConfigs = optionalCache('launchConfigCache', options.launchConfigCache, {
      ttlMs: 60_000,
      maxEntries: 100,
    });
    this.sessions = optionalCache('sessionCache', options.sessionCache, {
      ttlMs: 300_000,
      maxEntries: 1000,
    });
    this.client = options.client ?? new LambdaClient({});
  }

  /**
   * Runs `fn` with every storage call it makes, directly or through `LTITool`, ending within
   * `remainingTimeMs` from now (and within `deadlineMs` each). In a Lambda handler, pass
   * `context.getRemainingTimeInMillis()` less the time the handler needs to answer after a
   * failed call, so that the storage gives up before Lambda or API Gateway does.
   */
  withRemainingTime<T>(remainingTimeMs: number, fn: () => Promise<T>): Promise<T> {
    if (!Number.isFinite(remainingTimeMs)) {
      throw new RangeError('LambdaStorage.withRemainingTime: remainingTimeMs must be a number');
    }
    const deadline = Date.now() + remainingTimeMs;
    const outer = this.scopedDeadline.getStore();
    return this.scopedDeadline.run(Math.min(deadline, outer ?? deadline), fn);
  }

  // Clients

  async listClients(): Promise<Omit<LTIClient, 'deployments'>[]> {
    return (await this.call({ op: 'listClients' })) as Omit<LTIClient, 'deployments'>[];
  }

  async getClientById(clientId: string): Promise<LTIClient | undefined> {
    return orUndefined((await this.call({ op: 'getClientById', clientId })) as LTIClient | null);
  }

  /**
   * The id is drawn here, once per call, and sent with every attempt: a retry of an attempt
   * that committed but whose answer was lost gets the same id back, not a Conflict.
   */
  async addClient(client: Omit<LTIClient, 'id' | 'deployments'>): Promise<string> {
    return (await this.write({ op: 'addClient', id: randomUUID(), client })) as string;
  }

  async updateClient(
    clientId: string,
    client: Partial<Omit<LTIClient, 'id' | 'deployments'>>,
  ): Promise<void> {
    await this.write({ op: 'updateClient', clientId, client });
  }

  async deleteClient(clientId: string): Promise<void> {
    await this.write({ op: 'deleteClient', clientId });
  }

  // Deployments

  async listDeployments(clientId: string): Promise<LTIDeployment[]> {
    return (await this.call({ op: 'listDeployments', clientId })) as LTIDeployment[];
  }

  async getDeployment(clientId: string, deploymentId: string): Promise<LTIDeployment | undefined> {
    const deployment = await this.call({ op: 'getDeployment', clientId, deploymentId });
    return orUndefined(deployment as LTIDeployment | null);
  }

  async addDeployment(clientId: string, deployment: Omit<LTIDeployment, 'id'>): Promise<string> {
    const id = randomUUID(); // as in addClient
    return (await this.write({ op: 'addDeployment', clientId, id, deployment })) as string;
  }

  async updateDeployment(
    clientId: string,
    deploymentId: string,
    deployment: Partial<LTIDeployment>,
  ): Promise<void> {
    await this.write({ op: 'updateDeployment', clientId, deploymentId, deployment });
  }

  async deleteDeployment(clientId: string, deploymentId: string): Promise<void> {
    await this.write({ op: 'deleteDeployment', clientId, deploymentId });
  }

  // Sessions

  async getSession(sessionId: string): Promise<LTISession | undefined> {
    const cached = this.sessions?.get(sessionId);
    if (cached !== undefined) return cached;
    const session = (await this.call({ op: 'getSession', sessionId })) as LTISession | null;
    if (session !== null) this.sessions?.set(sessionId, session);
    return orUndefined(session);
  }

  async addSession(session: LTISession): Promise<string> {
    try {
      return (await this.call({ op: 'addSession', session })) as string;
    } finally {
      this.sessions?.delete(session.id);
    }
  }

  // Nonces

  async storeNonce(nonce: string, expiresAt: Date): Promise<void> {
    await this.call({ op: 'storeNonce', nonce, expiresAt: isoDate('storeNonce', expiresAt) });
  }

  async validateNonce(nonce: string): Promise<boolean> {
    return (await this.call({ op: 'validateNonce', nonce })) as boolean;
  }

  // Launch configs

  async getLaunchConfig(
    iss: string,
    clientId: string,
    deploymentId: string,
  ): Promise<LTILaunchConfig | undefined> {
    const key = JSON.stringify([iss, clientId, deploymentId]);
    const cached = this.launchConfigs?.get(key);
    if (cached !== undefined) return cached;
    const config = (await this.call({ op: 'getLaunchConfig', iss, clientId, deploymentId })) as
      | LTILaunchConfig
      | null;
    if (config !== null) this.launchConfigs?.set(key, config);
    return orUndefined(config);
  }

  async saveLaunchConfig(launchConfig: LTILaunchConfig): Promise<void> {
    await this.call({ op: 'saveLaunchConfig', launchConfig });
  }

  // Dynamic registration

  async setRegistrationSession(
    sessionId: string,
    session: LTIDynamicRegistrationSession,
  ): Promise<void> {
    await this.call({ op: 'setRegistrationSession', sessionId, session });
  }

  async getRegistrationSession(
    sessionId: string,
  ): Promise<LTIDynamicRegistrationSession | undefined> {
    const session = await this.call({ op: 'getRegistrationSession', sessionId });
    return orUndefined(session as LTIDynamicRegistrationSession | null);
  }

  async deleteRegistrationSession(sessionId: string): Promise<void> {
    await this.call({ op: 'deleteRegistrationSession', sessionId });
  }

  // As `PostgresStorage` of `@lti-tool/postgresql`

  /**
   * Deletes the nonces, sessions and registration sessions that have expired, as the storage
   * stack's cleanup function does on its schedule; for code that calls it itself. One run
   * takes at most 20 s in the function; what is left then goes at the next run.
   */
  async cleanup(): Promise<CleanupResult> {
    return (await this.call({ op: 'cleanup' })) as CleanupResult;
  }

  /**
   * Empties this client's caches and releases the `LambdaClient` it made (one passed in as
   * `client` stays open: it is the caller's). Not needed in Lambda; for tests and shutdown.
   */
  async close(): Promise<void> {
    this.launchConfigs?.clear();
    this.sessions?.clear();
    if (this.ownsClient) this.client.destroy();
  }

  /** One storage call, repeated by the retry policy where that is safe, within its deadline. */
  private call(call: StorageCall): Promise<unknown> {
    const ownDeadline = Date.now() + this.deadlineMs;
    const scoped = this.scopedDeadline.getStore();
    const plan = {
      op: call.op,
      policy: this.retry,
      repeatable: !NOT_REPEATABLE.has(call.op),
      deadline: Math.min(ownDeadline, scoped ?? ownDeadline),
      logger: this.logger,
    };
    return withRetries(plan, (timeLeftMs) =>
      invokeStorage(this.client, this.functionName, call, Math.min(this.timeoutMs, timeLeftMs)),
    );
  }

  /** A client or deployment write: what this process cached may no longer hold. */
  private async write(call: StorageCall): Promise<unknown> {
    try {
      return await this.call(call);
    } finally {
      this.launchConfigs?.clear();
    }
  }
}

function positiveMs(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`LambdaStorage: ${name} must be a positive number`);
  }
  return value;
}

function orUndefined<T>(value: T | null): T | undefined {
  return value === null ? undefined : value;
}

/** `Date` → ISO string; an invalid date is the caller's error, found before invoking. */
function isoDate(op: string, date: Date): string {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw new StorageError('InvalidInput', op, `${op}: expiresAt must be a valid Date`);
  }
  return date.toISOString();
}
