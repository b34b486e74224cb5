import {
  InvokeCommand,
  type InvokeCommandInput,
  type InvokeCommandOutput,
  type LambdaClient,
} from '@aws-sdk/client-lambda';
import type { DeserializeMiddleware } from '@smithy/types';

import { isStorageErrorType, StorageError } from './errors.js';

/** One storage call: `{"op": ..., ...arguments}`, as the function takes it. */
export interface StorageCall {
  op: string;
  [argument: string]: unknown;
}

/**
 * Invokes the storage function once and returns its result (`null` included), or throws a
 * `StorageError`. Errors that are about the caller's AWS set-up (access denied, no such
 * function, missing credentials) are thrown as the AWS SDK threw them.
 *
 * The SDK's own retries are turned off for the call: `LambdaStorage` decides what is repeated,
 * and a nonce call must never be repeated behind its back.
 */
export async function invokeStorage(
  client: LambdaClient,
  functionName: string,
  call: StorageCall,
  timeoutMs: number,
): Promise<unknown> {
  const command = new InvokeCommand({
    FunctionName: functionName,
    Payload: new TextEncoder().encode(JSON.stringify(call)),
  });
  command.middlewareStack.add(withoutSdkRetries, {
    step: 'deserialize',
    priority: 'high',
    name: 'ltiStorageWithoutSdkRetries',
  });
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), timeoutMs);
  try {
    const output = await client.send(command, { abortSignal: timeout.signal });
    const requestId = output.$metadata.requestId;
    const body = decode(call.op, output.Payload, requestId);
    if (output.FunctionError !== undefined) throw functionError(call.op, body, requestId);
    return body;
  } catch (thrown) {
    const error = thrown instanceof NotRepeated ? thrown.original : thrown;
    if (error instanceof StorageError) throw error;
    if (timeout.signal.aborted) {
      throw new StorageError(
        'Unavailable',
        call.op,
        `${call.op}: no answer from the storage function within ${timeoutMs} ms`,
        { cause: error },
      );
    }
    throw fromSdkError(call.op, error);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Sits inside the SDK's retry middleware and hides every error from it: an error the retry
 * strategy does not recognise (no status, no `$retryable`, no `cause`) is never retried.
 */
const withoutSdkRetries: DeserializeMiddleware<InvokeCommandInput, InvokeCommandOutput> = (next) => async (args) => {
  try {
    return await next(args);
  } catch (error) {
    throw new NotRepeated(error);
  }
};

class NotRepeated extends Error {
  constructor(readonly original: unknown) {
    super('storage call failed');
    this.name = 'LtiStorageCallFailed';
  }
}

function decode(op: string, payload: Uint8Array | undefined, requestId: string | undefined): unknown {
  const text = payload === undefined ? '' : new TextDecoder().decode(payload);
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new StorageError('Internal', op, `${op}: the storage function's reply is not JSON`, {
      requestId,
    });
  }
}

/**
 * A function error's body, `{"errorType", "errorMessage"}`: real Lambda sends it with status
 * 200 and `X-Amz-Function-Error`; `cargo lambda watch` with status 500.
 */
function functionError(op: string, body: unknown, requestId: string | undefined): StorageError {
  const { errorType, errorMessage } = (body ?? {}) as Record<string, unknown>;
  const message = typeof errorMessage === 'string' ? errorMessage : `${op}: failed`;
  if (isStorageErrorType(errorType)) return new StorageError(errorType, op, message, { requestId });
  // The runtime's own errors (a crash, Sandbox.Timedout): not an answer of the storage.
  const kind = typeof errorType === 'string' ? errorType : 'an unknown error';
  return new StorageError(
    'Internal',
    op,
    `${op}: the storage function failed (${kind}): ${message}`,
    { requestId },
  );
}

/** Lambda service errors that mean "not now": the function may not even have run. */
const UNAVAILABLE_SERVICE_ERRORS = new Set([
  'TooManyRequestsException',
  'ServiceException',
  'ResourceNotReadyException',
  'EC2ThrottledException',
  'ENILimitReachedException',
  'SubnetIPAddressLimitReachedException',
]);

/** Network failures on the way to Lambda. */
const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
]);

function fromSdkError(op: string, error: unknown): unknown {
  if (typeof error !== 'object' || error === null) return error;
  const fields = error as {
    name?: unknown;
    code?: unknown;
    errorType?: unknown;
    errorMessage?: unknown;
    $metadata?: { httpStatusCode?: number; requestId?: string };
  };
  const status = fields.$metadata?.httpStatusCode;
  const requestId = fields.$metadata?.requestId;
  if (status !== undefined && typeof fields.errorType === 'string') {
    // `cargo lambda watch`: the SDK made an error of the 500 and copied the body's fields.
    const body = { errorType: fields.errorType, errorMessage: fields.errorMessage };
    return functionError(op, body, requestId);
  }
  const name = typeof fields.name === 'string' ? fields.name : '';
  const code = typeof fields.code === 'string' ? fields.code : '';
  if (UNAVAILABLE_SERVICE_ERRORS.has(name) || status === 429 || NETWORK_ERROR_CODES.has(code)) {
    return new StorageError(
      'Unavailable',
      op,
      `${op}: the storage function could not be invoked (${name || code})`,
      { cause: error, requestId },
    );
  }
  return error;
}
