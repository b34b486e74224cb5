import { StorageError } from './errors.js';

/** How `LambdaStorage` repeats a call that failed with a retryable error. */
export interface RetryOptions {
  /** Attempts in all, the first included (default 3; 1 turns retries off). */
  maxAttempts?: number;
  /** The first backoff's upper bound, in ms (default 100). */
  baseDelayMs?: number;
  /** No backoff is longer than this, in ms (default 2000). */
  maxDelayMs?: number;
}

export type RetryPolicy = Required<RetryOptions>;

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 2000 };

export function retryPolicy(options: RetryOptions = {}): RetryPolicy {
  const policy = { ...DEFAULT_RETRY, ...definedOnly(options) };
  if (!Number.isInteger(policy.maxAttempts) || policy.maxAttempts < 1) {
    throw new RangeError('retry.maxAttempts must be an integer of at least 1');
  }
  for (const key of ['baseDelayMs', 'maxDelayMs'] as const) {
    if (!Number.isFinite(policy[key]) || policy[key] < 0) {
      throw new RangeError(`retry.${key} must be a number of at least 0`);
    }
  }
  return policy;
}

/**
 * The wait before attempt `attempt + 1` (after `attempt` failures, from 1): capped exponential
 * backoff with full jitter, as the AWS SDKs do, so many callers that failed together do not
 * come back together. `random` is in [0, 1).
 */
export function backoffDelay(policy: RetryPolicy, attempt: number, random: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.floor(random * ceiling);
}

/** What `withRetries` needs from the outside world; tests pass their own. */
export interface Clock {
  sleep(ms: number): Promise<void>;
  random(): number;
}

export const realClock: Clock = {
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};

/**
 * Runs `attempt` until it succeeds, fails with an error that is not worth repeating, or the
 * policy's attempts are spent; then throws the last error. Only a `StorageError` with
 * `retryable` is repeated, and only when `repeatable` is true.
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  repeatable: boolean,
  attempt: () => Promise<T>,
  clock: Clock = realClock,
): Promise<T> {
  for (let failures = 1; ; failures++) {
    try {
      return await attempt();
    } catch (error) {
      const again =
        repeatable &&
        failures < policy.maxAttempts &&
        error instanceof StorageError &&
        error.retryable;
      if (!again) throw error;
      await clock.sleep(backoffDelay(policy, failures, clock.random()));
    }
  }
}

function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(options).filter(([, value]) => value !== undefined),
  ) as Partial<T>;
}
