// The `lti-storage` command: against the storage function under cargo lambda watch as an operator
// uses it, and against a scripted Invoke API for the answers a local function cannot give.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { EXIT, hasQualifier, run } from '../src/cli.js';
import {
  emulatorFunctionError,
  ok,
  scriptedLambda,
  startLocalStorage,
  type LocalStorage,
  type Reply,
} from './support.js';

let local: LocalStorage;

beforeAll(async () => {
  local = await startLocalStorage();
});
afterAll(async () => {
  await local?.stop();
});

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one command line as `lti-storage ARGS`, with nothing from this process's environment. */
async function cli(...args: string[]): Promise<Outcome> {
  let stdout = '';
  let stderr = '';
  const code = await run(args, {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    env: {},
  });
  return { code, stdout, stderr };
}

/** The same against the local storage function. */
const atLocal = (...args: string[]) => cli('--endpoint', local.endpoint, ...args);

const CANVAS = [
  '--name', 'Canvas',
  '--iss', 'https://canvas.instructure.com',
  '--client-id', '10000000000001',
  '--auth-url', 'https://sso.canvaslms.com/api/lti/authorize_redirect',
  '--token-url', 'https://sso.canvaslms.com/login/oauth2/token',
  '--jwks-url', 'https://sso.canvaslms.com/api/lti/security/jwks',
];

describe('lti-storage against the storage function', () => {
  it('adds, lists, shows, updates and deletes platforms and deployments, for people and with --json', async () => {
    expect(await atLocal('--json', 'migrate')).toEqual({ code: 0, stdout: '{\n  "applied": []\n}\n', stderr: '' });
    expect((await atLocal('migrate')).stdout).toBe('migrations: none to apply\n');

    const added = await atLocal('platform', 'add', ...CANVAS);
    expect(added).toMatchObject({ code: 0, stderr: '' });
    const platform = added.stdout.trim();
    expect(platform).toMatch(/^[0-9a-f-]{36}$/);

    const deployment = (await atLocal('deployment', 'add', platform, '1:abc', '--name', 'Course')).stdout.trim();
    expect(deployment).toMatch(/^[0-9a-f-]{36}$/);

    const list = await atLocal('platform', 'list');
    expect(list.stdout.split('\n')[0]).toMatch(/^id +name +iss +clientId +authUrl +tokenUrl +jwksUrl$/);
    expect(list.stdout).toContain(`${platform}  Canvas  https://canvas.instructure.com  10000000000001`);

    const shown = await atLocal('platform', 'show', platform);
    expect(shown.stdout).toMatch(new RegExp(`^id +${platform}\nname +Canvas\niss +https://canvas.instructure.com\n`));
    expect(shown.stdout).toMatch(new RegExp(`deployments:\nid +deploymentId +name +description\n${deployment}  1:abc +Course +-\n$`));
    expect(JSON.parse((await atLocal('--json', 'platform', 'show', platform)).stdout)).toMatchObject({
      id: platform,
      clientId: '10000000000001',
      deployments: [{ id: deployment, deploymentId: '1:abc', name: 'Course' }],
    });

    expect(await atLocal('platform', 'update', platform, '--name', 'Canvas (prod)')).toMatchObject({ code: 0 });
    const rows = await local.sql.query('SELECT name, iss FROM clients WHERE id = $1', [platform]);
    expect(rows.rows).toEqual([{ name: 'Canvas (prod)', iss: 'https://canvas.instructure.com' }]);

    expect(JSON.parse((await atLocal('--json', 'deployment', 'list', platform)).stdout)).toHaveLength(1);
    expect(await atLocal('deployment', 'delete', platform, deployment)).toMatchObject({ code: 0 });
    expect((await atLocal('deployment', 'list', platform)).stdout).toBe('(none)\n');

    expect(await atLocal('platform', 'delete', platform)).toMatchObject({ code: 0 });
    const gone = await atLocal('platform', 'show', platform);
    expect(gone).toMatchObject({ code: EXIT.storage, stdout: '' });
    expect(gone.stderr).toMatch(/NotFound/);

    const cleaned = await atLocal('--json', 'cleanup');
    expect(Object.keys(JSON.parse(cleaned.stdout)).sort()).toEqual([
      'noncesDeleted',
      'registrationSessionsDeleted',
      'sessionsDeleted',
    ]);
  });

  it('an add run again with the same --id is done once; another add under that id is a Conflict', async () => {
    const id = randomUUID();
    const platform = [...CANVAS.slice(0, 4), '--client-id', '10000000000077', ...CANVAS.slice(6)];
    expect(await atLocal('platform', 'add', '--id', id, ...platform)).toEqual({ code: 0, stdout: `${id}\n`, stderr: '' });
    expect(await atLocal('platform', 'add', '--id', id, ...platform)).toEqual({ code: 0, stdout: `${id}\n`, stderr: '' });
    const rows = await local.sql.query('SELECT id FROM clients WHERE client_id = $1', ['10000000000077']);
    expect(rows.rows).toEqual([{ id }]);

    const other = [...CANVAS.slice(0, 4), '--client-id', '10000000000078', ...CANVAS.slice(6)];
    const conflict = await atLocal('platform', 'add', '--id', id, ...other);
    expect(conflict).toMatchObject({ code: EXIT.storage, stdout: '' });
    expect(conflict.stderr).toMatch(/^lti-storage: Conflict: /);

    const deploymentId = randomUUID();
    for (let i = 0; i < 2; i++) {
      expect((await atLocal('deployment', 'add', id, 'default', '--id', deploymentId)).stdout).toBe(`${deploymentId}\n`);
    }
  });

  it('the storage refusing a call is exit 1, with its message', async () => {
    const outcome = await atLocal('deployment', 'add', randomUUID(), 'default');
    expect(outcome.code).toBe(EXIT.storage);
    expect(outcome.stderr).toMatch(/^lti-storage: NotFound: no client/);
  });
});

describe('lti-storage command lines', () => {
  it('a wrong command line is exit 2, names what is wrong and not the values given, and calls nothing', async () => {
    const lambda = await scriptedLambda(() => ok(null));
    try {
      const cases: Array<[string[], RegExp]> = [
        [[], /no command given/],
        [['platform'], /platform needs one of: add, list, show, update, delete/],
        [['platforms', 'list'], /unknown command/],
        [['platform', 'add', ...CANVAS.slice(0, -2)], /platform add needs --jwks-url/],
        [['platform', 'update', randomUUID()], /at least one of --name/],
        [['platform', 'show'], /expected PLATFORM, got 0/],
        [['deployment', 'list', 'a', 'b'], /expected PLATFORM, got 2/],
        [['platform', 'list', '--iss', 'https://secret.example'], /does not take --iss/],
        [['deployment', 'add', 'p', 'd', '--id', 'not-a-uuid-secret'], /--id must be a UUID/],
        [['platform', 'list', '--password=hunter2'], /Unknown option '--password'/],
      ];
      for (const [args, message] of cases) {
        const outcome = await cli('--endpoint', lambda.endpoint, ...args);
        expect(outcome, args.join(' ')).toMatchObject({ code: EXIT.usage, stdout: '' });
        expect(outcome.stderr, args.join(' ')).toMatch(message);
        expect(outcome.stderr).not.toMatch(/secret|hunter2/);
      }
      expect(lambda.calls).toEqual([]);

      // On AWS, a function must be named.
      const unnamed = await cli('platform', 'list');
      expect(unnamed.code).toBe(EXIT.usage);
      expect(unnamed.stderr).toMatch(/--function/);
    } finally {
      await lambda.close();
    }
  });

  it('an add retried after Unavailable sends the same id, and prints it once', async () => {
    const lambda = await scriptedLambda((payload, index) =>
      index === 0 ? emulatorFunctionError('Unavailable', 'addClient: the database did not answer') : ok(payload.id),
    );
    try {
      const outcome = await cli('--endpoint', lambda.endpoint, 'platform', 'add', ...CANVAS);
      expect(lambda.calls).toHaveLength(2);
      expect(lambda.calls[0]!.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(lambda.calls[1]!.id).toBe(lambda.calls[0]!.id);
      expect(outcome).toEqual({ code: EXIT.ok, stdout: `${String(lambda.calls[0]!.id)}\n`, stderr: '' });
    } finally {
      await lambda.close();
    }
  });

  it('Unavailable to the end is exit 3; a call that does not reach the function is exit 4', async () => {
    const answers: Record<string, Reply> = {
      unavailable: emulatorFunctionError('Unavailable', 'listClients: the database did not answer'),
      missing: {
        status: 404,
        headers: { 'x-amzn-errortype': 'ResourceNotFoundException' },
        body: { Type: 'User', message: 'Function not found' },
      },
    };
    for (const [kind, reply] of Object.entries(answers)) {
      const lambda = await scriptedLambda(() => reply);
      try {
        const outcome = await cli('--endpoint', lambda.endpoint, 'platform', 'list');
        if (kind === 'unavailable') {
          expect(outcome).toMatchObject({ code: EXIT.unavailable, stdout: '' });
          expect(lambda.calls).toHaveLength(3); // the client's retries
        } else {
          expect(outcome).toMatchObject({ code: EXIT.aws, stdout: '' });
          expect(outcome.stderr).toMatch(/ResourceNotFoundException/);
        }
      } finally {
        await lambda.close();
      }
    }
  });

  it('a function named without an alias is invoked through its admin alias', () => {
    expect(hasQualifier('lti-storage-StorageFunction-abc')).toBe(false);
    expect(hasQualifier('lti-storage-StorageFunction-abc:admin')).toBe(true);
    expect(hasQualifier('123456789012:function:fn')).toBe(false);
    expect(hasQualifier('123456789012:function:fn:admin')).toBe(true);
    expect(hasQualifier('arn:aws:lambda:eu-west-1:123456789012:function:fn')).toBe(false);
    expect(hasQualifier('arn:aws:lambda:eu-west-1:123456789012:function:fn:admin')).toBe(true);
  });
});

describe('the README', () => {
  it('lists every exit code of the command, and no other', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Command-line administration'));
    const rows = section.slice(0, section.indexOf('\n## ')).matchAll(/^\| (\d+) \| /gm);
    expect([...rows].map((row) => Number(row[1]))).toEqual(Object.values(EXIT).sort());
  });
});
