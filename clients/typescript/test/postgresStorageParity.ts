// Type-level test, checked by `npm run typecheck` (tsc, strict) and never run: code written for
// `PostgresStorage` of `@lti-tool/postgresql`, as its README shows it (an LTITool, a scheduled
// cleanup, closing after tests or at shutdown, a pino logger), with only the import and the
// constructor changed. It must compile as it stands.

import { LTITool, type LTIStorage } from '@lti-tool/core';
import { generateKeyPair } from 'jose';
import { pino } from 'pino';

// before: import { PostgresStorage } from '@lti-tool/postgresql';
import { LambdaStorage } from '../src/index.js';

const logger = pino();

// before: const storage = new PostgresStorage({ connectionUrl: process.env.DATABASE_URL!, logger });
const storage = new LambdaStorage({ functionName: process.env.LTI_STORAGE_FUNCTION!, logger });

export async function makeTool(): Promise<LTITool> {
  return new LTITool({
    stateSecret: new TextEncoder().encode(process.env.LTI_STATE_SECRET!),
    keyPair: await generateKeyPair('RS256'),
    storage,
    logger,
  });
}

// A scheduled cleanup (e.g. an EventBridge rule every 30 minutes).
export const cleanupHandler = async (): Promise<{ statusCode: number; body: string }> => {
  const result = await storage.cleanup();
  logger.info(result, 'cleanup completed');
  const deleted: number = result.noncesDeleted + result.sessionsDeleted + result.registrationSessionsDeleted;
  return { statusCode: 200, body: JSON.stringify({ ...result, deleted }) };
};

// Tests and graceful shutdown.
export async function shutdown(): Promise<void> {
  await storage.close();
}

// Whatever takes a PostgresStorage takes a LambdaStorage: the members PostgresStorage has beyond
// LTIStorage, with PostgresStorage's types.
interface PostgresStorageShape extends LTIStorage {
  cleanup(): Promise<{ noncesDeleted: number; sessionsDeleted: number; registrationSessionsDeleted: number }>;
  close(): Promise<void>;
}
export const asPostgresStorage: PostgresStorageShape = storage;
