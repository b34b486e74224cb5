/** The error types the storage function answers with. */
export const STORAGE_ERROR_TYPES = [
  'InvalidInput',
  'NotFound',
  'Conflict',
  'Forbidden',
  'Unavailable',
  'Internal',
] as const;

export type StorageErrorType = (typeof STORAGE_ERROR_TYPES)[number];

/**
 * A storage call that failed. `name` and `type` are the error type, so callers can switch on
 * either; `message` says what was wrong and never holds the call's values.
 *
 * - `InvalidInput`: the call is wrong (fix it, do not retry).
 * - `NotFound`: the client or deployment to change does not exist.
 * - `Conflict`: a duplicate (same platform, same deployment, a nonce stored twice).
 * - `Forbidden`: the alias invoked does not answer this op (an admin op through `runtime`).
 * - `Unavailable`: the database, or the function itself, could not be reached in time.
 *   `retryable` is true; the client has already retried what is safe to retry.
 * - `Internal`: anything else, e.g. migrations not applied or the function crashed.
 */
export class StorageError extends Error {
  override readonly name: StorageErrorType;
  readonly type: StorageErrorType;
  /** The operation that failed, e.g. `getLaunchConfig`. */
  readonly op: string;
  /** True for `Unavailable`: the same call may succeed later. */
  readonly retryable: boolean;
  /**
   * Lambda's id of the invocation that answered (`RequestId` in the storage function's log
   * line for it); undefined when no answer came back (a time-out, a lost connection) or the
   * call was refused before invoking.
   */
  readonly requestId: string | undefined;

  constructor(
    type: StorageErrorType,
    op: string,
    message: string,
    options?: { cause?: unknown; requestId?: string | undefined },
  ) {
    super(message, options);
    this.name = type;
    this.type = type;
    this.op = op;
    this.retryable = type === 'Unavailable';
    this.requestId = options?.requestId;
  }
}

export function isStorageErrorType(value: unknown): value is StorageErrorType {
  return (STORAGE_ERROR_TYPES as readonly unknown[]).includes(value);
}
