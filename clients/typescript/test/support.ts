// Helpers shared by the client's tests: a Lambda client aimed at a local endpoint, a scripted
// Invoke API for the unit tests, and the real storage function under `cargo lambda watch` on a
// PostgreSQL schema of the test's own for the others.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import pg from 'pg';

/** A Lambda client for a local endpoint: fixed region and credentials, nothing from the machine. */
export function localLambdaClient(endpoint: string): LambdaClient {
  return new LambdaClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
}

/** Counts the Invoke requests a client sends, by op, to tell how many calls a flow costs. */
export function countInvocations(client: LambdaClient): Map<string, number> {
  const counts = new Map<string, number>();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'InvokeCommand') {
        const input = args.input as { Payload?: Uint8Array };
        const { op } = JSON.parse(new TextDecoder().decode(input.Payload)) as { op: string };
        counts.set(op, (counts.get(op) ?? 0) + 1);
      }
      return next(args);
    },
    { step: 'initialize', name: 'countInvocations' },
  );
  return counts;
}

/**
 * Loses the answers `lose` picks after they arrived, as a dropped connection would: the
 * function ran (and committed), the caller sees a network error. Sits inside the client's
 * own guard against the AWS SDK's retries, so every attempt here is one of LambdaStorage's.
 * Returns the payloads sent, in order.
 */
export function loseAnswers(
  client: LambdaClient,
  lose: (payload: Record<string, unknown>, index: number) => boolean,
): Array<Record<string, unknown>> {
  const sent: Array<Record<string, unknown>> = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      if (context.commandName !== 'InvokeCommand') return result;
      const input = args.input as { Payload?: Uint8Array };
      const payload = JSON.parse(new TextDecoder().decode(input.Payload)) as Record<string, unknown>;
      sent.push(payload);
      if (lose(payload, sent.length - 1)) {
        throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      }
      return result;
    },
    { step: 'deserialize', priority: 'low', name: 'loseAnswers' },
  );
  return sent;
}

// ---- a scripted Invoke API --------------------------------------------------------------------

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
}

export interface ScriptedLambda {
  endpoint: string;
  /** Every payload received, in order. */
  calls: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** An HTTP server that answers each Invoke request with what `answer` returns for it. */
export async function scriptedLambda(
  answer: (payload: Record<string, unknown>, index: number) => Reply | 'hang' | 'reset',
): Promise<ScriptedLambda> {
  const calls: Array<Record<string, unknown>> = [];
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const payload = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      calls.push(payload);
      const reply = answer(payload, calls.length - 1);
      if (reply === 'hang') return; // never answers
      if (reply === 'reset') {
        request.socket.destroy();
        return;
      }
      const body = reply.body === undefined ? '' : JSON.stringify(reply.body);
      response.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
      response.end(body);
    });
  });
  const endpoint = await listen(server);
  return {
    endpoint,
    calls,
    close: () => closeServer(server),
  };
}

/** Lambda's answer to a successful invocation. */
export const ok = (result: unknown): Reply => ({ status: 200, body: result });

/** Lambda's answer to a function error. */
export const functionError = (errorType: string, errorMessage: string): Reply => ({
  status: 200,
  headers: { 'x-amz-function-error': 'Unhandled' },
  body: { errorType, errorMessage },
});

/** `cargo lambda watch`'s answer to a function error: status 500, no header. */
export const emulatorFunctionError = (errorType: string, errorMessage: string): Reply => ({
  status: 500,
  body: { errorType, errorMessage },
});

/** The Lambda service throttling the invocation. */
export const throttled = (): Reply => ({
  status: 429,
  headers: { 'x-amzn-errortype': 'TooManyRequestsException' },
  body: { message: 'Rate exceeded', Type: 'User', Reason: 'ReservedFunctionConcurrentInvocationLimitExceeded' },
});

export async function listen(server: Server): Promise<string> {
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}

export function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((done) => server.close(() => done()));
}

// ---- the real storage function ----------------------------------------------------------------

const workspace = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** How long the first invocation may take: `cargo lambda watch` compiles the functions. */
export const STARTUP_LIMIT_MS = 20 * 60_000;

export interface LocalStorage {
  /** The Invoke API endpoint of `cargo lambda watch`. */
  endpoint: string;
  functionName: string;
  /** A connection to the test's schema, to look at rows as psql would. */
  sql: pg.Client;
  stop(): Promise<void>;
}

/**
 * The storage function under `cargo lambda watch` (the real Lambda runtime loop), on a schema
 * of this test's own in TEST_DATABASE_URL, migrated. `env` adds to the function's environment.
 */
export async function startLocalStorage(env: Record<string, string> = {}): Promise<LocalStorage> {
  const adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) {
    throw new Error(
      'TEST_DATABASE_URL is not set: run the tests with scripts/test-client.sh (or under scripts/with-postgres.sh)',
    );
  }
  const schema = `lti_client_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  // %-encoded by hand: URLSearchParams would write the space as '+', which libpq-style URL
  // parsers do not read as a space.
  const separator = adminUrl.includes('?') ? '&' : '?';
  const url = `${adminUrl}${separator}options=-c%20search_path%3D${schema}`;
  const sql = new pg.Client({ connectionString: url });
  await sql.connect();

  const port = await freePort();
  const target = join(workspace, 'target/lambda-watch');
  mkdirSync(target, { recursive: true });
  const log = openSync(join(target, `client-watch-${port}.log`), 'w');
  const watch = spawn(
    'cargo',
    ['lambda', 'watch', '--ignore-changes', '--invoke-address', '127.0.0.1', '--invoke-port', String(port)],
    {
      cwd: workspace,
      detached: true, // its own process group, so stopping it stops the functions too
      stdio: ['ignore', log, log],
      env: {
        ...process.env,
        DATABASE_URL: url,
        CARGO_TARGET_DIR: target,
        LOG_LEVEL: 'info',
        // cargo lambda watch names no alias: this opens the admin ops (migrate, updateClient...)
        // that the tests call, as scripts/run-local.sh does.
        ADMIN_ON_ANY_QUALIFIER: 'true',
        ...env,
      },
    },
  );
  closeSync(log);
  const endpoint = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await stopProcessGroup(watch);
    await sql.end();
    const cleanup = new pg.Client({ connectionString: adminUrl });
    await cleanup.connect();
    await cleanup.query(`DROP SCHEMA ${schema} CASCADE`);
    await cleanup.end();
  };
  try {
    await invokeUntilUp(endpoint, watch);
  } catch (error) {
    await stop();
    throw error;
  }
  return { endpoint, functionName: 'storage', sql, stop };
}

/** Applies the migrations through the function, retrying while it still compiles or starts. */
async function invokeUntilUp(endpoint: string, watch: ChildProcess): Promise<void> {
  const client = localLambdaClient(endpoint);
  const deadline = Date.now() + STARTUP_LIMIT_MS;
  let last: unknown;
  while (Date.now() < deadline) {
    if (watch.exitCode !== null) {
      throw new Error(`cargo lambda watch exited with ${watch.exitCode}; see target/lambda-watch/client-watch-*.log`);
    }
    try {
      const out = await client.send(
        new InvokeCommand({
          FunctionName: 'storage',
          Payload: new TextEncoder().encode(JSON.stringify({ op: 'migrate' })),
        }),
      );
      const body = new TextDecoder().decode(out.Payload);
      if (out.FunctionError) throw new Error(`migrate failed: ${body}`);
      return;
    } catch (error) {
      last = error;
      // An answer of the function (cargo lambda watch sends function errors as a 500) is final;
      // a refused connection means it is still compiling or starting.
      const answered = typeof error === 'object' && error !== null && 'errorType' in error;
      if (answered) throw new Error(`migrate failed: ${JSON.stringify(error)}`);
      if (error instanceof Error && error.message.startsWith('migrate failed')) throw error;
      await new Promise((done) => setTimeout(done, 500));
    }
  }
  throw new Error(`the storage function did not answer within ${STARTUP_LIMIT_MS} ms: ${String(last)}`);
}

async function stopProcessGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  process.kill(-child.pid, 'SIGTERM');
  const killed = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }, 5_000);
  await exited;
  clearTimeout(killed);
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  await new Promise((done) => server.close(done));
  return port;
}
