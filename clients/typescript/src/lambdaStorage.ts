import { LambdaClient } from '@aws-sdk/client-lambda';
import type {
  LTIClient,
  LTIDeployment,
  LTIDynamicRegistrationSession,
  LTILaunchConfig,
  LTISession,
  LTIStorage,
} from '@lti-tool/core';

import { StorageError } from './errors.js';
import { invokeStorage, type StorageCall } from './invoke.js';
import { LaunchConfigCache, type LaunchConfigCacheOptions } from './launchConfigCache.js';
import { retryPolicy, withRetries, type RetryOptions, type RetryPolicy } from './retry.js';

export interface LambdaStorageOptions {
  /**
   * The storage function's runtime alias: the stack's `RuntimeFunctionName` output
   * (`<function>:runtime`), or a name or ARN with the alias.
   */
  functionName: string;
  /** The Lambda client to invoke it with (default: `new LambdaClient({})`). */
  client?: LambdaClient;
  /** How long one invocation may take before it counts as Unavailable, in ms (default 25000). */
  timeoutMs?: number;
  /** Repeats of calls that failed as Unavailable or throttled; never of nonce calls. */
  retry?: RetryOptions;
  /**
   * Keep launch configs found by the storage in this process (off by default): each hit saves
   * one invocation at every login and launch, and widens how long a changed or deleted
   * platform can still be used here by up to `ttlMs`. `true` takes the defaults.
   */
  launchConfigCache?: boolean | LaunchConfigCacheOptions;
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
  private readonly timeoutMs: number;
  private readonly retry: RetryPolicy;
  private readonly launchConfigs: LaunchConfigCache | undefined;

  constructor(options: LambdaStorageOptions) {
    if (typeof options?.functionName !== 'string' || options.functionName === '') {
      throw new TypeError('LambdaStorage: functionName must be the storage function\'s name or ARN');
    }
    this.functionName = options.functionName;
    this.client = options.client ?? new LambdaClient({});
    this.timeoutMs = options.timeoutMs ?? 25_000;
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0) {
      throw new RangeError('LambdaStorage: timeoutMs must be a positive number');
    }
    this.retry = retryPolicy(options.retry);
    const cache = options.launchConfigCache;
    this.launchConfigs =
      cache === undefined || cache === false
        ? undefined
        : new LaunchConfigCache(cache === true ? {} : cache);
  }

  // Clients

  async listClients(): Promise<Omit<LTIClient, 'deployments'>[]> {
    return (await this.call({ op: 'listClients' })) as Omit<LTIClient, 'deployments'>[];
  }

  async getClientById(clientId: string): Promise<LTIClient | undefined> {
    return orUndefined((await this.call({ op: 'getClientById', clientId })) as LTIClient | null);
  }

  async addClient(client: Omit<LTIClient, 'id' | 'deployments'>): Promise<string> {
    return (await this.write({ op: 'addClient', client })) as string;
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
    return (await this.write({ op: 'addDeployment', clientId, deployment })) as string;
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
    return orUndefined((await this.call({ op: 'getSession', sessionId })) as LTISession | null);
  }

  async addSession(session: LTISession): Promise<string> {
    return (await this.call({ op: 'addSession', session })) as string;
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

  /** One storage call, repeated by the retry policy where that is safe. */
  private call(call: StorageCall): Promise<unknown> {
    return withRetries(this.retry, !NOT_REPEATABLE.has(call.op), () =>
      invokeStorage(this.client, this.functionName, call, this.timeoutMs),
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
