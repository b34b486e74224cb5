// `lti-storage`: platform administration through the storage function's admin alias (or a local
// `cargo lambda watch`), so operators never write the JSON payloads by hand.

import { randomUUID } from 'node:crypto';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { LambdaClient } from '@aws-sdk/client-lambda';

import { StorageError } from './errors.js';
import { invokeStorage, type StorageCall } from './invoke.js';
import { retryPolicy, withRetries } from './retry.js';

/** Exit codes, as the README documents them. */
export const EXIT = {
  ok: 0,
  /** The storage answered an error: InvalidInput, NotFound, Conflict, Forbidden, Internal. */
  storage: 1,
  /** The command line is wrong. */
  usage: 2,
  /** Unavailable: the storage or the database could not be reached in time; try again. */
  unavailable: 3,
  /** The call never reached the storage: credentials, permissions, no such function. */
  aws: 4,
} as const;

/** A command line that cannot be run: the message says what was wrong. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A command's call, its retries included, ends within this time. */
const CALL_DEADLINE_MS = 60_000;

/**
 * One attempt waits this long: past the storage function's own 30 s timeout, so an attempt is
 * never given up while the function may still answer it (migrate takes up to 25 s).
 */
const ATTEMPT_MS = 35_000;

/** Ops the command never sends twice. */
const NOT_REPEATED = ['migrate', 'cleanup'];

const USAGE = `Usage: lti-storage [--function NAME | --endpoint URL] [--region REGION] [--json] COMMAND

Commands:
  platform add --name N --iss URL --client-id ID --auth-url URL --token-url URL --jwks-url URL [--id UUID]
  platform list
  platform show PLATFORM
  platform update PLATFORM [--name N] [--iss URL] [--client-id ID] [--auth-url URL] [--token-url URL] [--jwks-url URL]
  platform delete PLATFORM
  deployment add PLATFORM DEPLOYMENT_ID [--name N] [--description D] [--id UUID]
  deployment list PLATFORM
  deployment delete PLATFORM DEPLOYMENT
  migrate
  cleanup

PLATFORM and DEPLOYMENT are the ids that "add" printed (and "list" shows as "id"); DEPLOYMENT_ID
is the LMS's deployment id. "add" draws the new id (or takes --id) and sends it, so an add that is
repeated, by the retries or by running the same command with the same --id, is done once.

Options:
  --function NAME  the storage function: the stack's AdminFunctionName output; a name or ARN
                   without an alias gets ":admin" (default: $LTI_STORAGE_ADMIN_FUNCTION)
  --endpoint URL   a local Invoke API instead of AWS, e.g. http://127.0.0.1:9000 for
                   scripts/run-local.sh (function "storage" unless --function is given)
  --region REGION  the AWS region (default: the AWS SDK's, e.g. $AWS_REGION)
  --json           print the storage's answer as JSON, for scripts
  -h, --help       this text

Exit codes: 0 done, 1 the storage answered an error, 2 usage, 3 Unavailable (try again),
4 the call did not reach the storage (credentials, permissions, no such function).
`;

const OPTIONS = {
  function: { type: 'string' },
  endpoint: { type: 'string' },
  region: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  id: { type: 'string' },
  name: { type: 'string' },
  iss: { type: 'string' },
  'client-id': { type: 'string' },
  'auth-url': { type: 'string' },
  'token-url': { type: 'string' },
  'jwks-url': { type: 'string' },
  description: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

type Values = ReturnType<typeof parse>['values'];
type OptionName = keyof typeof OPTIONS;

const GLOBAL_OPTIONS: OptionName[] = ['function', 'endpoint', 'region', 'json', 'help'];

/** Client fields by option, in the order tables show them. */
const PLATFORM_FIELDS = [
  ['name', 'name'],
  ['iss', 'iss'],
  ['client-id', 'clientId'],
  ['auth-url', 'authUrl'],
  ['token-url', 'tokenUrl'],
  ['jwks-url', 'jwksUrl'],
] as const satisfies ReadonlyArray<readonly [OptionName, string]>;

const PLATFORM_OPTIONS = PLATFORM_FIELDS.map(([option]) => option);
const PLATFORM_COLUMNS = ['id', ...PLATFORM_FIELDS.map(([, field]) => field)];

/** One command: its positional arguments, the options it takes, and the call it makes. */
interface Command {
  args: string[];
  options: OptionName[];
  call(args: string[], values: Values): StorageCall;
  /** How a person reads the answer; `--json` prints it as it came. */
  show(result: unknown, call: StorageCall): string;
}

const COMMANDS: Record<string, Command> = {
  'platform add': {
    args: [],
    options: [...PLATFORM_OPTIONS, 'id'],
    call: (_, values) => ({
      op: 'addClient',
      id: newId(values),
      client: platformFields(values, 'all'),
    }),
    show: (id) => `${String(id)}\n`,
  },
  'platform list': {
    args: [],
    options: [],
    call: () => ({ op: 'listClients' }),
    show: (clients) => table(clients as Row[], PLATFORM_COLUMNS),
  },
  'platform show': {
    args: ['PLATFORM'],
    options: [],
    call: ([clientId]) => ({ op: 'getClientById', clientId }),
    show: (client) => {
      const { deployments, ...fields } = client as Row & { deployments: Row[] };
      const keys = [...new Set([...PLATFORM_COLUMNS, ...Object.keys(fields)])];
      const width = Math.max(...keys.map((key) => key.length));
      const lines = keys.map((key) => `${key.padEnd(width)}  ${cell(fields[key])}`);
      return `${lines.join('\n')}\n\ndeployments:\n${table(deployments, DEPLOYMENT_COLUMNS)}`;
    },
  },
  'platform update': {
    args: ['PLATFORM'],
    options: PLATFORM_OPTIONS,
    call: ([clientId], values) => ({ op: 'updateClient', clientId, client: platformFields(values, 'some') }),
    show: (_, call) => `updated platform ${String(call.clientId)}\n`,
  },
  'platform delete': {
    args: ['PLATFORM'],
    options: [],
    call: ([clientId]) => ({ op: 'deleteClient', clientId }),
    show: (_, call) => `deleted platform ${String(call.clientId)} and its deployments\n`,
  },
  'deployment add': {
    args: ['PLATFORM', 'DEPLOYMENT_ID'],
    options: ['name', 'description', 'id'],
    call: ([clientId, deploymentId], values) => ({
      op: 'addDeployment',
      id: newId(values),
      clientId,
      deployment: { deploymentId, name: values.name, description: values.description },
    }),
    show: (id) => `${String(id)}\n`,
  },
  'deployment list': {
    args: ['PLATFORM'],
    options: [],
    call: ([clientId]) => ({ op: 'listDeployments', clientId }),
    show: (deployments) => table(deployments as Row[], DEPLOYMENT_COLUMNS),
  },
  'deployment delete': {
    args: ['PLATFORM', 'DEPLOYMENT'],
    options: [],
    call: ([clientId, deploymentId]) => ({ op: 'deleteDeployment', clientId, deploymentId }),
    show: (_, call) => `deleted deployment ${String(call.deploymentId)}\n`,
  },
  migrate: {
    args: [],
    options: [],
    call: () => ({ op: 'migrate' }),
    show: (result) => {
      const { applied } = result as { applied: unknown[] };
      return applied.length === 0 ? 'migrations: none to apply\n' : `migrations applied: ${applied.join(', ')}\n`;
    },
  },
  cleanup: {
    args: [],
    options: [],
    call: () => ({ op: 'cleanup' }),
    show: (counts) => table([counts as Row], ['noncesDeleted', 'sessionsDeleted', 'registrationSessionsDeleted']),
  },
};

const DEPLOYMENT_COLUMNS = ['id', 'deploymentId', 'name', 'description'];

function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
}

export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Record<string, string | undefined>;
}

/** Runs one command line; answers the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  let values: Values;
  let command: Command;
  let call: StorageCall;
  try {
    let positionals: string[];
    try {
      ({ values, positionals } = parse(argv));
    } catch (error) {
      // parseArgs names the option but not its value: its message is safe to show.
      throw new UsageError((error as Error).message);
    }
    if (values.help) {
      io.stdout(USAGE);
      return EXIT.ok;
    }
    [command, positionals] = findCommand(positionals);
    checkOptions(command, values);
    if (positionals.length !== command.args.length) {
      const expected = command.args.length === 0 ? 'no arguments' : command.args.join(' ');
      throw new UsageError(`expected ${expected}, got ${positionals.length} argument(s)`);
    }
    call = command.call(positionals, values);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`lti-storage: ${error.message}\nRun "lti-storage --help" for the commands and options.\n`);
    return EXIT.usage;
  }

  try {
    const target = storageTarget(values, io.env);
    const plan = {
      op: call.op,
      policy: retryPolicy(),
      // A migration or cleanup that timed out here may still be running: one sent again
      // would wait behind its locks. Everything else is a read or a write safe to repeat.
      repeatable: !NOT_REPEATED.includes(call.op),
      deadline: Date.now() + CALL_DEADLINE_MS,
      logger: undefined,
    };
    const result = await withRetries(plan, (timeLeftMs) =>
      invokeStorage(target.client, target.functionName, call, Math.min(ATTEMPT_MS, timeLeftMs)),
    );
    if (result === null && call.op === 'getClientById') {
      throw new StorageError('NotFound', call.op, `${call.op}: no platform with that id`);
    }
    io.stdout(values.json ? `${JSON.stringify(result, null, 2)}\n` : command.show(result, call));
    return EXIT.ok;
  } catch (error) {
    return reportFailure(error, io);
  }
}

function findCommand(positionals: string[]): [Command, string[]] {
  for (const words of [2, 1]) {
    const command = COMMANDS[positionals.slice(0, words).join(' ')];
    if (command !== undefined) return [command, positionals.slice(words)];
  }
  const names = Object.keys(COMMANDS);
  const group = names.filter((name) => name.startsWith(`${positionals[0]} `)).map((name) => name.split(' ')[1]);
  if (group.length > 0) throw new UsageError(`${positionals[0]} needs one of: ${group.join(', ')}`);
  const known = [...new Set(names.map((name) => name.split(' ')[0]))].join(', ');
  throw new UsageError(
    positionals.length === 0 ? `no command given (one of: ${known})` : `unknown command (one of: ${known})`,
  );
}

function checkOptions(command: Command, values: Values): void {
  for (const option of Object.keys(values) as OptionName[]) {
    if (!GLOBAL_OPTIONS.includes(option) && !command.options.includes(option)) {
      throw new UsageError(`this command does not take --${option}`);
    }
  }
  if (values.function === '' || values.endpoint === '') {
    throw new UsageError('--function and --endpoint must not be empty');
  }
}

function platformFields(values: Values, required: 'all' | 'some'): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const [option, field] of PLATFORM_FIELDS) {
    const value = values[option];
    if (value !== undefined) fields[field] = value;
    else if (required === 'all') throw new UsageError(`platform add needs --${option}`);
  }
  if (Object.keys(fields).length === 0) {
    throw new UsageError(`platform update needs at least one of ${PLATFORM_OPTIONS.map((o) => `--${o}`).join(', ')}`);
  }
  return fields;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The new row's id: drawn here, so that the retries of this add repeat the same one. */
function newId(values: Values): string {
  if (values.id === undefined) return randomUUID();
  if (!UUID.test(values.id)) throw new UsageError('--id must be a UUID');
  return values.id;
}

interface Target {
  client: LambdaClient;
  functionName: string;
}

function storageTarget(values: Values, env: Io['env']): Target {
  if (values.endpoint !== undefined) {
    // `cargo lambda watch` checks no signature and names no alias: any credentials do.
    return {
      client: new LambdaClient({
        endpoint: values.endpoint,
        region: values.region ?? 'us-east-1',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      }),
      functionName: values.function ?? 'storage',
    };
  }
  const name = values.function ?? env.LTI_STORAGE_ADMIN_FUNCTION;
  if (name === undefined || name === '') {
    throw new UsageError(
      'name the storage function: --function (the stack\'s AdminFunctionName output), $LTI_STORAGE_ADMIN_FUNCTION, or --endpoint for a local one',
    );
  }
  return {
    client: new LambdaClient(values.region === undefined ? {} : { region: values.region }),
    functionName: hasQualifier(name) ? name : `${name}:admin`,
  };
}

/**
 * Whether a function name or ARN names an alias or version: `fn:admin`,
 * `123456789012:function:fn:admin`, `arn:aws:lambda:region:account:function:fn:admin`.
 */
export function hasQualifier(name: string): boolean {
  const parts = name.split(':');
  if (parts[0] === 'arn') return parts.length === 8;
  if (parts[1] === 'function') return parts.length === 4;
  return parts.length === 2;
}

function reportFailure(error: unknown, io: Io): number {
  if (error instanceof UsageError) {
    io.stderr(`lti-storage: ${error.message}\n`);
    return EXIT.usage;
  }
  if (error instanceof StorageError) {
    io.stderr(`lti-storage: ${error.type}: ${error.message}\n`);
    return error.retryable ? EXIT.unavailable : EXIT.storage;
  }
  // The AWS SDK's errors: credentials, AccessDeniedException, ResourceNotFoundException...
  const { name, message } = error instanceof Error ? error : { name: 'Error', message: String(error) };
  io.stderr(`lti-storage: the call did not reach the storage function: ${name}: ${message}\n`);
  return EXIT.aws;
}

type Row = Record<string, unknown>;

/** Rows as aligned columns, for people. */
function table(rows: Row[], columns: string[]): string {
  if (rows.length === 0) return '(none)\n';
  const cells = [columns, ...rows.map((row) => columns.map((column) => cell(row[column])))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return cells.map((line) => line.map((text, i) => text.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

function cell(value: unknown): string {
  return value === null || value === undefined ? '-' : String(value);
}
