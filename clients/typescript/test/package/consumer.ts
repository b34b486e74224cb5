// A tool's code against the packed package as npm installed it (scripts/test-client.sh): it must
// type-check under strict tsc and run. A small HTTP server here answers as the Invoke API does.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import { LambdaClient } from '@aws-sdk/client-lambda';
import type { LTIStorage } from '@lti-tool/core';
import { LambdaStorage, StorageError, type CleanupResult, type StorageLogger } from 'lti-storage-client';

const counts: CleanupResult = { noncesDeleted: 2, sessionsDeleted: 1, registrationSessionsDeleted: 0 };

const lambda = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const { op } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { op: string };
    if (op === 'cleanup') {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify(counts));
      return;
    }
    response.writeHead(200, {
      'content-type': 'application/json',
      'x-amz-function-error': 'Unhandled',
      'x-amzn-requestid': 'f00dcafe-0000-4000-8000-000000000001',
    });
    response.end(JSON.stringify({ errorType: 'Conflict', errorMessage: `${op}: already registered` }));
  });
});
await new Promise<void>((done) => lambda.listen(0, '127.0.0.1', done));
const { port } = lambda.address() as AddressInfo;

const logged: string[] = [];
const logger: StorageLogger = {
  debug: (_, msg) => void logged.push(msg),
  warn: (_, msg) => void logged.push(msg),
  error: (_, msg) => void logged.push(msg),
};
const storage = new LambdaStorage({
  functionName: 'storage',
  client: new LambdaClient({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
  }),
  deadlineMs: 5_000,
  logger,
  sessionCache: { ttlMs: 60_000 },
});

// What LTITool takes.
const asLtiStorage: LTIStorage = storage;

const failures: string[] = [];
const cleaned = await storage.cleanup();
if (JSON.stringify(cleaned) !== JSON.stringify(counts)) failures.push('cleanup() counts');
const error: unknown = await asLtiStorage
  .addClient({ name: 'n', iss: 'i', clientId: 'c', authUrl: 'a', tokenUrl: 't', jwksUrl: 'j' })
  .catch((e: unknown) => e);
if (!(error instanceof StorageError) || error.type !== 'Conflict' || error.requestId !== 'f00dcafe-0000-4000-8000-000000000001') {
  failures.push('a Conflict as StorageError with its request id');
}
if (logged.length !== 1) failures.push('the logger told of the answered error');
await storage.close();
lambda.close();

if (failures.length > 0) {
  console.error(`consumer: wrong: ${failures.join('; ')}`);
  process.exit(1);
}
console.log('consumer: the installed package type-checks and works');
