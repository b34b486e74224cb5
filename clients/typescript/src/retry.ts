import { StorageError } from './errors.js';
import type { StorageLogger } from './logger.js';

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
  now(): number;
  sleep(ms: number): Promise<void>;
  random(): number;
}

export const realClock: Clock = {
  now: Date.now,
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};

/** One call's attempts: what may be repeated, until when, and who hears about it. */
export interface Attempts {
  op: string;
  policy: RetryPolicy;
  /** False for calls a repeat could answer wrongly (nonces). */
  repeatable: boolean;
  /** No attempt starts, and none runs, past this time (`clock.now()`, ms). */
  deadline: number;
  logger: StorageLogger | undefined;
}

/**
 * Runs `attempt` (given the ms left before the deadline) until it succeeds, fails with an
 * error that is not worth repeating, or the attempts or the time are spent; then throws the
 * last error. Only a `StorageError` with `retryable` is repeated, and only when `repeatable`.
 */
export async function withRetries<T>(
  plan: Attempts,
  attempt: (timeLeftMs: number) => Promise<T>,
  clock: Clock = realClock,
): Promise<T> {
  const { op, policy, logger } = plan;
  if (plan.deadline <= clock.now()) {
    logger?.error({ op, attempt: 0, reason: 'deadline' }, 'storage call not made, giving up');
    throw new StorageError('Unavailable', op, `${op}: no time left for the call before its deadline`);
  }
  for (let attempts = 1; ; attempts++) {
    try {
      return await attempt(plan.deadline - clock.now());
    } catch (error) {
      if (!(error instanceof StorageError)) throw error;
      const about = { op, attempt: attempts, errorType: error.type, requestId: error.requestId };
      if (!error.retryable) {
        logger?.debug(about, 'storage call failed');
        throw error;
      }
      const delayMs = backoffDelay(policy, attempts, clock.random());
      const stop = !plan.repeatable
        ? 'not repeatable'
        : attempts >= policy.maxAttempts
          ? 'attempts spent'
          : clock.now() + delayMs >= plan.deadline
            ? 'deadline'
            : undefined;
      if (stop !== undefined) {
        logger?.error({ ...about, reason: stop }, 'storage call failed, giving up');
        throw error;
      }
      logger?.warn({ ...about, delayMs }, 'storage call failed, retrying');
      await clock.sleep(delayMs);
    }
  }
}

function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(options).filter(([, value]) => value !== undefined),
  ) as Partial<T>;
}
