/**
 * Where `LambdaStorage` reports retries (`warn`), give-ups (`error`) and errors the storage
 * answered (`debug`): a pino logger fits as it is (`(obj, msg)`), and so does `console`. The
 * objects name the op, the attempt, the error type and Lambda's request id, never a call's
 * values.
 */
export interface StorageLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}
