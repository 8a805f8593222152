import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InterruptedError, StepFailedError, RefusedError } from '../../src/core/errors.js';
import { checkProbe, executePlan } from '../../src/core/execute.js';
import { type Plan, type Step, SECRET_TOKEN } from '../../src/core/plan.js';
import { CommandError } from '../../src/ports/index.js';
import { config } from '../fakes/config.js';
import { FakeProcess, commandContext } from '../fakes/context.js';
import { MemoryFiles } from '../fakes/memory-files.js';
import {
  backupDirFor,
  createSecretStore,
  embeddedTarget,
  localTarget,
  peerTarget,
  statePaths,
  withLock,
} from '../../src/core/context.js';

// executePlan and checkProbe (src/core/execute.ts)

const run = (id: string, ...argv: [string, ...string[]]): Extract<Step, { kind: 'run' }> => ({
  kind: 'run',
  id,
  title: `run ${id}`,
  argv,
  timeoutMs: 1_000,
});

function planOf(steps: readonly Step[], extra: Partial<Plan> = {}): Plan {
  return { command: 'setup-master', summary: 'test plan', steps, ...extra };
}

/** A plan touching every port: a file, a command, local and peer SQL, a removal, a backup and an action. */
const EVERY_KIND: readonly Step[] = [
  {
    kind: 'write',
    id: 'write-conf',
    title: 'write a file',
    path: '/etc/x/a.conf',
    content: 'a\n',
    mode: 0o644,
  },
  run('run-cmd', '/bin/true'),
  { kind: 'sql', id: 'sql-local', title: 'local sql', on: 'local', database: 'postgres', text: 'SELECT 1' },
  { kind: 'sql', id: 'sql-peer', title: 'peer sql', on: 'peer', database: 'postgres', text: 'SELECT 2' },
  { kind: 'remove', id: 'remove-old', title: 'remove', path: '/var/old' },
  { kind: 'backup', id: 'backup-etc', title: 'backup', method: 'move', from: '/etc/x', to: '/backups/x' },
  {
    kind: 'wait',
    id: 'wait-up',
    title: 'wait',
    until: { name: 'local-postgres-up' },
    timeoutMs: 1_000,
    intervalMs: 100,
  },
  {
    kind: 'action',
    id: 'record',
    title: 'record',
    action: 'record-state',
    args: { path: '/var/opt/chef-ha/h.json', data: { a: 1 } },
  },
];

function failure(promise: Promise<unknown>): Promise<StepFailedError> {
  return promise.then(
    () => assert.fail('expected a StepFailedError'),
    (error: unknown) => {
      assert.ok(error instanceof StepFailedError, `expected a StepFailedError, got ${String(error)}`);
      return error;
    },
  );
}

describe('executePlan in dry-run', () => {
  test('makes zero calls to the shell, PostgreSQL, files or archive', async () => {
    const f = commandContext({ options: { dryRun: true } });
    const result = await executePlan(f.ctx, planOf(EVERY_KIND), { dryRun: true });
    assert.deepEqual(f.shell.calls, []);
    assert.deepEqual(f.pg.calls, []);
    assert.deepEqual(f.files.calls, []);
    assert.deepEqual(f.archive.calls, []);
    assert.deepEqual(f.clock.sleeps, []);
    assert.deepEqual(result, { completed: [], skipped: [] });
  });

  test('shows the plan as a dry run and reports the done steps as skipped', async () => {
    const f = commandContext();
    const steps = [run('a', 'x'), { ...run('b', 'y'), done: 'already there' }];
    const result = await executePlan(f.ctx, planOf(steps), { dryRun: true });
    assert.deepEqual(result, { completed: [], skipped: ['b'] });
    assert.deepEqual(
      f.reporter.calls.map((c) => c.method),
      ['showPlan'],
    );
    const [shown] = f.reporter.of('showPlan');
    assert.equal(shown?.dryRun, true);
  });
});

describe('executePlan', () => {
  test('runs every step in order and reports each', async () => {
    const f = commandContext();
    f.files.seedDir('/etc/x').seed('/etc/x/old.conf', 'x');
    f.files.seed('/var/opt/chef-ha/secrets/replication.password', 'pw\n', 0o600);
    f.pg.answer(/SELECT 1 AS ok/, [{ ok: 1 }]);
    const result = await executePlan(f.ctx, planOf(EVERY_KIND), { dryRun: false });
    assert.deepEqual(
      result.completed,
      EVERY_KIND.map((s) => s.id),
    );
    assert.deepEqual(result.skipped, []);
    assert.deepEqual(
      f.reporter.of('stepDone').map((c) => [c.index, c.total, c.id]),
      EVERY_KIND.map((s, i) => [i + 1, EVERY_KIND.length, s.id]),
    );
    assert.equal(f.reporter.of('showPlan')[0]?.dryRun, false);
    assert.equal(
      f.files.text('/etc/x/a.conf'),
      undefined,
      'the write went into /etc/x, which was then moved',
    );
    assert.equal(f.files.text('/backups/x/a.conf'), 'a\n');
    assert.equal(f.files.text('/var/opt/chef-ha/h.json'), '{\n  "a": 1\n}\n');
  });

  test('skips done steps without running them and reports why', async () => {
    const f = commandContext();
    const steps = [run('a', 'cmd-a'), { ...run('b', 'cmd-b'), done: 'already in place' }, run('c', 'cmd-c')];
    const result = await executePlan(f.ctx, planOf(steps), { dryRun: false });
    assert.deepEqual(result, { completed: ['a', 'c'], skipped: ['b'] });
    assert.deepEqual(f.shell.lines(), ['cmd-a', 'cmd-c']);
    assert.deepEqual(f.reporter.of('stepSkipped'), [
      { method: 'stepSkipped', index: 2, total: 3, id: 'b', reason: 'already in place' },
    ]);
  });

  test('stops at a failing step k, naming it, the command, its stderr and steps 1..k-1', async () => {
    const f = commandContext();
    f.shell.on('pg_ctlcluster', { exitCode: 2, stderr: 'line 1\nCluster is not running.\n' });
    const steps = [
      run('first', 'echo', '1'),
      run('second', 'echo', '2'),
      run('start-postgresql', 'pg_ctlcluster', '15', 'main', 'start'),
      run('never', 'echo', '4'),
    ];
    const error = await failure(
      executePlan(f.ctx, planOf(steps, { backupDir: '/var/opt/chef-ha/backups/T' }), { dryRun: false }),
    );
    assert.equal(error.stepId, 'start-postgresql');
    assert.deepEqual(error.completed, ['first', 'second']);
    assert.equal(
      error.message,
      'step start-postgresql failed: run start-postgresql\npg_ctlcluster 15 main start: exited 2\nline 1\nCluster is not running.\ncompleted steps: first, second',
    );
    assert.equal(
      error.hint,
      'fix the cause above and run `chef-ha-ctl setup-master` again: completed steps are found done and skipped; backups are in /var/opt/chef-ha/backups/T',
    );
    assert.ok(error.cause instanceof CommandError);
    assert.deepEqual(f.shell.lines(), ['echo 1', 'echo 2', 'pg_ctlcluster 15 main start']);
  });

  test('says "(none)" when the first step fails', async () => {
    const f = commandContext();
    f.shell.on('false', { exitCode: 1, stdout: 'only stdout' });
    const error = await failure(executePlan(f.ctx, planOf([run('one', 'false')]), { dryRun: false }));
    assert.deepEqual(error.completed, []);
    assert.match(error.message, /\nfalse: exited 1\nonly stdout\ncompleted steps: \(none\)$/);
    assert.doesNotMatch(error.hint ?? '', /backups/);
  });

  test('spells out that irreversible steps cannot be undone when one completed before the failure', async () => {
    const f = commandContext();
    f.shell.on('reindex', { exitCode: 1, stderr: 'solr down' });
    const steps = [
      run('fence', 'x'),
      { ...run('promote', 'pg_ctl', 'promote'), irreversible: true },
      run('reindex', 'reindex'),
    ];
    const error = await failure(
      executePlan(f.ctx, planOf(steps, { command: 'failover' }), { dryRun: false }),
    );
    assert.equal(
      error.hint,
      'steps promote cannot be undone: fix the cause above, then run `chef-ha-ctl failover` again (done steps are skipped) or `chef-ha-ctl status` to see where the pair stands',
    );
  });

  test('points at the backups in the irreversible-step hint too', async () => {
    const f = commandContext();
    f.shell.on('reindex', { exitCode: 1 });
    const steps = [{ ...run('promote', 'promote'), irreversible: true }, run('reindex', 'reindex')];
    const error = await failure(
      executePlan(f.ctx, planOf(steps, { command: 'failover', backupDir: '/b/T' }), { dryRun: false }),
    );
    assert.match(error.hint ?? '', /^steps promote cannot be undone: .*; backups are in \/b\/T$/);
  });

  test('keeps the safe-to-re-run hint when the irreversible step itself failed', async () => {
    const f = commandContext();
    f.shell.on('promote', { exitCode: 1 });
    const steps = [run('fence', 'x'), { ...run('promote', 'pg_ctl', 'promote'), irreversible: true }];
    const error = await failure(
      executePlan(f.ctx, planOf(steps, { command: 'failover' }), { dryRun: false }),
    );
    assert.match(error.hint ?? '', /^fix the cause above and run `chef-ha-ctl failover` again/);
  });

  test('wraps a command that cannot start (the port throws) with the step id', async () => {
    const f = commandContext();
    f.shell.throwOn('missing-binary', new CommandError('missing-binary', undefined, '', 'could not start'));
    const error = await failure(executePlan(f.ctx, planOf([run('x', 'missing-binary')]), { dryRun: false }));
    assert.equal(
      error.message,
      'step x failed: run x\nmissing-binary: could not start\ncompleted steps: (none)',
    );
  });

  test('wraps an SQL error with the SQL that failed', async () => {
    const f = commandContext();
    f.pg.fail(/pg_create_physical_replication_slot/, 'ERROR:  function does not exist');
    const steps: Step[] = [
      {
        kind: 'sql',
        id: 'create-slot',
        title: 'create the slot',
        on: 'local',
        database: 'postgres',
        text: 'SELECT pg_create_physical_replication_slot($$x$$)',
      },
    ];
    const error = await failure(executePlan(f.ctx, planOf(steps), { dryRun: false }));
    assert.equal(error.stepId, 'create-slot');
    assert.match(
      error.message,
      /^step create-slot failed: create the slot\nSQL pg_create_physical_replication_slot: ERROR: {2}function does not exist\n/,
    );
  });

  test('wraps a plain Error from an action with its message', async () => {
    const f = commandContext();
    const steps: Step[] = [
      { kind: 'action', id: 'dump', title: 'dump tables', action: 'londiste', args: { op: 'bogus' } },
    ];
    const error = await failure(executePlan(f.ctx, planOf(steps), { dryRun: false }));
    assert.match(error.message, /^step dump failed: dump tables\ninternal: unknown londiste action bogus\n/);
  });
});

describe('executePlan concurrent groups', () => {
  /** A shell whose commands end only when the test says so, recording when each started. */
  function gatedShell(f: ReturnType<typeof commandContext>) {
    const started: string[] = [];
    const gates = new Map<string, (exitCode: number) => void>();
    f.shell.run = (argv) => {
      const name = argv.join(' ');
      started.push(name);
      return new Promise((resolve) => {
        gates.set(name, (exitCode) => {
          resolve({ exitCode, stdout: '', stderr: exitCode === 0 ? '' : `${name} broke`, durationMs: 1 });
        });
      });
    };
    const open = async (name: string, exitCode = 0): Promise<void> => {
      for (let i = 0; i < 100 && !gates.has(name); i++) {
        await new Promise((r) => setImmediate(r));
      }
      const gate = gates.get(name);
      assert.ok(gate, `${name} was started`);
      gate(exitCode);
    };
    return { started, open };
  }
  const grouped = (id: string, cmd: string): Step => ({ ...run(id, cmd), concurrent: 'g' });

  test('starts every step of a group before any has ended, and the next step only after all ended', async () => {
    const f = commandContext();
    const { started, open } = gatedShell(f);
    const steps = [grouped('a', 'cmd-a'), grouped('b', 'cmd-b'), run('c', 'cmd-c')];
    const done = executePlan(f.ctx, planOf(steps), { dryRun: false });
    await open('cmd-b');
    assert.deepEqual(started, ['cmd-a', 'cmd-b'], 'both started while neither had ended');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(started, ['cmd-a', 'cmd-b'], 'c waits for a');
    await open('cmd-a');
    await open('cmd-c');
    const result = await done;
    assert.deepEqual(result.completed, ['b', 'a', 'c']);
  });

  test('lets the other steps of the group finish when one fails, then reports the failure', async () => {
    const f = commandContext();
    const { open } = gatedShell(f);
    const steps = [grouped('a', 'cmd-a'), grouped('b', 'cmd-b'), run('c', 'cmd-c')];
    const done = failure(executePlan(f.ctx, planOf(steps), { dryRun: false }));
    await open('cmd-b', 1);
    await open('cmd-a');
    const error = await done;
    assert.equal(error.stepId, 'b');
    assert.deepEqual(error.completed, ['a']);
  });

  test('skips the done steps of a group and runs the rest', async () => {
    const f = commandContext();
    const steps = [{ ...grouped('a', 'cmd-a'), done: 'in place' }, grouped('b', 'cmd-b')];
    const result = await executePlan(f.ctx, planOf(steps), { dryRun: false });
    assert.deepEqual(result, { completed: ['b'], skipped: ['a'] });
    assert.deepEqual(f.shell.lines(), ['cmd-b']);
  });
});

describe('executePlan background run steps', () => {
  test('starts the command detached, records the job and does not wait', async () => {
    const f = commandContext();
    f.files.seed('/var/opt/chef-ha/logs/reindex.log.exit', '0\n');
    const step: Step = {
      ...run('reindex', '/opt/chef-server/bin/chef-server-ctl', 'reindex'),
      background: { log: '/var/opt/chef-ha/logs/reindex.log', job: '/var/opt/chef-ha/reindex.json' },
    };
    const result = await executePlan(f.ctx, planOf([step]), { dryRun: false });
    assert.deepEqual(result.completed, ['reindex']);
    assert.deepEqual(f.shell.lines(), [], 'nothing run in the foreground');
    assert.deepEqual(f.proc.spawned, [
      {
        argv: [
          'sh',
          '-c',
          '"$@"; echo $? >"$0"',
          '/var/opt/chef-ha/logs/reindex.log.exit',
          '/opt/chef-server/bin/chef-server-ctl',
          'reindex',
        ],
        logFile: '/var/opt/chef-ha/logs/reindex.log',
      },
    ]);
    assert.equal(
      f.files.text('/var/opt/chef-ha/logs/reindex.log.exit'),
      undefined,
      "the last run's status is cleared",
    );
    const job = JSON.parse(f.files.text('/var/opt/chef-ha/reindex.json') ?? '{}') as {
      pid?: number;
      log?: string;
    };
    assert.equal(job.pid, 5001);
    assert.equal(job.log, '/var/opt/chef-ha/logs/reindex.log');
  });
});

describe('executePlan on SIGINT', () => {
  test('stops before the next step with InterruptedError naming the completed steps', async () => {
    const f = commandContext();
    f.shell.on('second', () => {
      f.abort.abort();
      return { exitCode: 0 };
    });
    const steps = [run('a', 'first'), run('b', 'second'), run('c', 'third')];
    await assert.rejects(executePlan(f.ctx, planOf(steps), { dryRun: false }), (error: unknown) => {
      assert.ok(error instanceof InterruptedError);
      assert.deepEqual(error.completed, ['a', 'b']);
      assert.equal(error.exitCode, 130);
      assert.equal(error.message, 'interrupted; completed steps: a, b');
      return true;
    });
    assert.deepEqual(f.shell.lines(), ['first', 'second']);
  });

  test('reports an interrupted step as an interruption, not a failure', async () => {
    const f = commandContext();
    f.shell.on('long', () => {
      f.abort.abort();
      return { exitCode: 143, stderr: 'terminated' };
    });
    await assert.rejects(
      executePlan(f.ctx, planOf([run('a', 'short'), run('b', 'long')]), { dryRun: false }),
      (error: unknown) => {
        assert.ok(error instanceof InterruptedError);
        assert.deepEqual(error.completed, ['a']);
        return true;
      },
    );
  });

  test('runs nothing when the signal fired before the start', async () => {
    const f = commandContext();
    f.abort.abort();
    await assert.rejects(executePlan(f.ctx, planOf([run('a', 'x')]), { dryRun: false }), InterruptedError);
    assert.deepEqual(f.shell.calls, []);
  });

  test('stops a wait that is sleeping', async () => {
    const f = commandContext();
    f.pg.answer(/pg_is_in_recovery/, () => {
      f.abort.abort();
      return [{ r: true }];
    });
    const steps: Step[] = [
      {
        kind: 'wait',
        id: 'wait-writable',
        title: 'wait',
        until: { name: 'local-writable' },
        timeoutMs: 60_000,
        intervalMs: 50,
      },
    ];
    await assert.rejects(executePlan(f.ctx, planOf(steps), { dryRun: false }), InterruptedError);
  });
});

describe('executePlan wait steps', () => {
  const waitWritable: Step = {
    kind: 'wait',
    id: 'wait-writable',
    title: 'wait until this node accepts writes',
    until: { name: 'local-writable' },
    timeoutMs: 1_000,
    intervalMs: 200,
  };

  test('polls every intervalMs until the probe holds', async () => {
    const f = commandContext();
    f.pg.answer(/SELECT pg_is_in_recovery\(\) AS r/, (_sql, call) => [{ r: call < 4 }]);
    const started = f.clock.now();
    const result = await executePlan(f.ctx, planOf([waitWritable]), { dryRun: false });
    assert.deepEqual(result.completed, ['wait-writable']);
    assert.deepEqual(f.clock.sleeps, [200, 200, 200]);
    assert.equal(f.clock.now() - started, 600);
    assert.equal(f.pg.calls.length, 4);
  });

  test('times out with a clear message after timeoutMs on the fixed clock', async () => {
    const f = commandContext();
    f.pg.answer(/pg_is_in_recovery/, [{ r: true }]);
    const error = await failure(executePlan(f.ctx, planOf([waitWritable]), { dryRun: false }));
    assert.equal(
      error.message,
      'step wait-writable failed: wait until this node accepts writes\ntimed out after 1s waiting until the local PostgreSQL accepts writes\ncompleted steps: (none)',
    );
    assert.deepEqual(f.clock.sleeps, [200, 200, 200, 200, 200]);
  });

  test('treats an unreachable server as "not yet"', async () => {
    const f = commandContext();
    f.pg.fail(/SELECT 1 AS ok/, 'connection refused');
    const steps: Step[] = [
      {
        kind: 'wait',
        id: 'wait-up',
        title: 'wait',
        until: { name: 'local-postgres-up' },
        timeoutMs: 300,
        intervalMs: 100,
      },
    ];
    const error = await failure(executePlan(f.ctx, planOf(steps), { dryRun: false }));
    assert.match(error.message, /timed out after 0s waiting until the local PostgreSQL accepts connections/);
  });
});

describe('waiting for the old master health endpoint', () => {
  const waitHealth: Step = {
    kind: 'wait',
    id: 'wait-old-master-health',
    title: "wait until db2's health endpoint has seen the fence",
    until: { name: 'health-not-primary', on: 'peer' },
    timeoutMs: 1_000,
    intervalMs: 250,
    onTimeout: 'continue',
  };
  const url = 'http://10.0.0.2:5445/primary';

  test('ends once the endpoint answers something other than 200, or nothing listens there', async () => {
    const f = commandContext();
    f.http.statuses.set(url, 503);
    assert.deepEqual((await executePlan(f.ctx, planOf([waitHealth]), { dryRun: false })).completed, [
      'wait-old-master-health',
    ]);
    assert.deepEqual(f.clock.sleeps, []);
    const g = commandContext();
    g.http.refused.add(url);
    assert.equal(await checkProbe(g.ctx, { name: 'health-not-primary', on: 'peer' }), true);
  });

  test('keeps waiting on 200 or no answer, and goes on with a warning at the timeout', async () => {
    const f = commandContext();
    f.http.statuses.set(url, 200);
    const result = await executePlan(f.ctx, planOf([waitHealth]), { dryRun: false });
    assert.deepEqual(result.completed, ['wait-old-master-health']);
    assert.deepEqual(f.clock.sleeps, [250, 250, 250, 250]);
    const warnings = f.reporter.calls.flatMap((c) => (c.method === 'warn' ? [c.text] : []));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /wait-old-master-health: not seen within 1\.0s .* going on/);
    const g = commandContext();
    assert.equal(
      await checkProbe(g.ctx, { name: 'health-not-primary', on: 'peer' }),
      false,
      'no answer: unknown',
    );
  });
});

describe('refresh-health action', () => {
  const refresh = (on: 'local' | 'peer'): Step => ({
    kind: 'action',
    id: 'refresh-health',
    title: 'ask for a new snapshot',
    action: 'refresh-health',
    args: { on },
  });

  test("asks the node's or the peer's health endpoint for a new snapshot", async () => {
    const f = commandContext();
    f.http.statuses.set('http://10.0.0.2:5445/refresh', 204);
    await executePlan(f.ctx, planOf([refresh('peer')]), { dryRun: false });
    const done = f.reporter.calls.find((c) => c.method === 'stepDone');
    assert.ok(done?.method === 'stepDone');
    assert.equal(done.note, "db2's health endpoint took a new snapshot");
  });

  test('never fails: an endpoint that is not running is only noted', async () => {
    const f = commandContext();
    f.http.refused.add('http://10.0.0.1:5445/refresh');
    const result = await executePlan(f.ctx, planOf([refresh('local')]), { dryRun: false });
    assert.deepEqual(result.completed, ['refresh-health']);
    const done = f.reporter.calls.find((c) => c.method === 'stepDone');
    assert.ok(done?.method === 'stepDone');
    assert.match(done.note ?? '', /db1's health endpoint did not answer \(not running\)/);
  });
});

describe('fence-peer-sql action', () => {
  test("ends the old master's client sessions but not superusers' (the replication role may not, and one would fail the statement)", async () => {
    const f = commandContext();
    await f.ctx.secrets.write('replication', 'secret');
    const steps: Step[] = [
      {
        kind: 'action',
        id: 'fence-old-master',
        title: 'fence',
        action: 'fence-peer-sql',
        args: { peerDataDir: '/var/lib/postgresql/15/main', peerMajor: '15' },
      },
    ];
    await executePlan(f.ctx, planOf(steps), { dryRun: false });
    const terminate = f.pg.calls.find(
      (c) => c.method === 'queryPeer' && c.sql.includes('pg_terminate_backend'),
    );
    assert.ok(terminate);
    assert.match(terminate.sql, /usesysid NOT IN \(SELECT oid FROM pg_roles WHERE rolsuper\)/);
  });
});

describe('checkProbe', () => {
  test('sees a standby streaming (and sync) in the local pg_stat_replication', async () => {
    const f = commandContext();
    f.pg.answer(/pg_stat_replication WHERE application_name = 'chef_ha_db2'/, [
      { state: 'streaming', sync_state: 'async' },
    ]);
    const probe = {
      name: 'standby-streaming',
      on: 'local',
      applicationName: 'chef_ha_db2',
      sync: false,
    } as const;
    assert.equal(await checkProbe(f.ctx, probe), true);
    assert.equal(await checkProbe(f.ctx, { ...probe, sync: true }), false);
  });

  test('asks the peer with the stored secret, and says no without one', async () => {
    const f = commandContext();
    f.pg.answer(/pg_stat_replication/, [{ state: 'streaming', sync_state: 'sync' }], 'peer');
    const probe = {
      name: 'standby-streaming',
      on: 'peer',
      applicationName: 'chef_ha_db1',
      sync: true,
    } as const;
    assert.equal(await checkProbe(f.ctx, probe), false);
    assert.equal(f.pg.calls.length, 0);
    f.files.seed('/var/opt/chef-ha/secrets/replication.password', 'pw\n', 0o600);
    assert.equal(await checkProbe(f.ctx, probe), true);
    const [call] = f.pg.calls;
    assert.ok(call?.method === 'queryPeer');
    assert.deepEqual(call.target, {
      host: '10.0.0.2',
      port: 5432,
      user: 'chef_ha_replication',
      password: 'pw',
      database: 'postgres',
    });
  });

  test('compares the replayed LSN numerically', async () => {
    const f = commandContext();
    f.pg.answer(/pg_last_wal_replay_lsn/, [{ lsn: '0/A0000000' }]);
    assert.equal(await checkProbe(f.ctx, { name: 'local-replayed', lsn: '0/9FFFFFFF' }), true);
    assert.equal(await checkProbe(f.ctx, { name: 'local-replayed', lsn: '0/A0000000' }), true);
    assert.equal(await checkProbe(f.ctx, { name: 'local-replayed', lsn: '1/0' }), false);
    const g = commandContext();
    g.pg.answer(/replay/, [{ lsn: null }]);
    assert.equal(await checkProbe(g.ctx, { name: 'local-replayed', lsn: '0/0' }), false);
  });
});

describe('executePlan step kinds', () => {
  test('passes user, env, timeout and progress of a run step to the shell', async () => {
    const f = commandContext();
    f.shell.on('pg_basebackup', (_argv, options) => {
      options.onStderr?.('  1024/2048 kB (50%)\n');
      return { exitCode: 0 };
    });
    const step: Step = {
      kind: 'run',
      id: 'pg-basebackup',
      title: 'copy',
      argv: ['pg_basebackup', '-D', '/data'],
      user: 'postgres',
      env: { PGPASSFILE: '/p' },
      timeoutMs: 42,
      progress: true,
    };
    await executePlan(f.ctx, planOf([step]), { dryRun: false });
    const [call] = f.shell.calls;
    assert.equal(call?.options.user, 'postgres');
    assert.deepEqual(call?.options.env, { PGPASSFILE: '/p' });
    assert.equal(call?.options.timeoutMs, 42);
    assert.deepEqual(f.reporter.of('progress'), [{ method: 'progress', text: '  1024/2048 kB (50%)\n' }]);
  });

  test('writes the secret in place of its token, creating the folder, with the mode', async () => {
    const f = commandContext();
    f.files.seed('/var/opt/chef-ha/secrets/replication.password', 's3cret\n', 0o600);
    const step: Step = {
      kind: 'write',
      id: 'write-passfile',
      title: 'passfile',
      path: '/var/lib/postgresql/.chef-ha.pgpass',
      content: `*:*:*:rep:${SECRET_TOKEN}\n`,
      secret: 'replication',
      mode: 0o600,
    };
    await executePlan(f.ctx, planOf([step]), { dryRun: false });
    assert.equal(f.files.text('/var/lib/postgresql/.chef-ha.pgpass'), '*:*:*:rep:s3cret\n');
    assert.equal(f.files.modeOf('/var/lib/postgresql/.chef-ha.pgpass'), 0o600);
    assert.match(
      f.reporter.of('log')[0]?.text ?? '',
      /write \/var\/lib\/postgresql\/\.chef-ha\.pgpass \(mode 0600\)/,
    );
    assert.ok(
      !f.reporter.calls.some((c) => JSON.stringify(c).includes('s3cret')),
      'the secret is never reported',
    );
  });

  test('fails a secret write when the secret is missing', async () => {
    const f = commandContext();
    const step: Step = {
      kind: 'write',
      id: 'w',
      title: 'w',
      path: '/x/y',
      content: SECRET_TOKEN,
      secret: 'replication',
      mode: 0o600,
    };
    const error = await failure(executePlan(f.ctx, planOf([step]), { dryRun: false }));
    assert.match(error.message, /secret "replication" is missing from the state directory/);
    assert.equal(f.files.text('/x/y'), undefined);
  });

  test('chowns written files to their owner only when running as root', async () => {
    const asRoot = commandContext({ proc: new FakeProcess(4100, true) });
    const step: Step = {
      kind: 'write',
      id: 'w',
      title: 'w',
      path: '/etc/pg/chef-ha.conf',
      content: 'x',
      mode: 0o644,
      owner: 'postgres',
    };
    await executePlan(asRoot.ctx, planOf([step]), { dryRun: false });
    assert.equal(asRoot.files.nodes.get('/etc/pg/chef-ha.conf')?.uid, 105);
    const unknown = commandContext({ proc: new FakeProcess(4100, true) });
    const error = await failure(
      executePlan(unknown.ctx, planOf([{ ...step, owner: 'nobody-here' }]), { dryRun: false }),
    );
    assert.match(error.message, /unknown OS user "nobody-here"/);
    const notRoot = commandContext();
    await executePlan(notRoot.ctx, planOf([{ ...step, owner: 'nobody-here' }]), { dryRun: false });
    assert.equal(notRoot.files.nodes.get('/etc/pg/chef-ha.conf')?.uid, 0);
  });

  test('runs peer SQL with the replication role and fails without the secret', async () => {
    const f = commandContext();
    const step: Step = {
      kind: 'sql',
      id: 'peer',
      title: 'peer',
      on: 'peer',
      database: 'postgres',
      text: 'SELECT pg_reload_conf()',
    };
    const error = await failure(executePlan(f.ctx, planOf([step]), { dryRun: false }));
    assert.match(error.message, /no replication secret to reach the peer/);
    f.files.seed('/var/opt/chef-ha/secrets/replication.password', 'pw\n');
    await executePlan(f.ctx, planOf([step]), { dryRun: false });
    assert.deepEqual(
      f.pg.calls.map((c) => [c.method, c.sql]),
      [['queryPeer', 'SELECT pg_reload_conf()']],
    );
  });

  test('notes a backup of something that does not exist', async () => {
    const f = commandContext();
    const step: Step = {
      kind: 'backup',
      id: 'b',
      title: 'b',
      method: 'copy',
      from: '/nothing',
      to: '/backups/nothing',
    };
    await executePlan(f.ctx, planOf([step]), { dryRun: false });
    assert.equal(f.reporter.of('stepDone')[0]?.note, 'nothing to back up');
    assert.deepEqual(f.shell.calls, []);
  });

  test('copies a backup with cp -a and keeps the source', async () => {
    const f = commandContext();
    f.files.seed('/etc/chef-server/chef-server.rb', 'x');
    const step: Step = {
      kind: 'backup',
      id: 'b',
      title: 'b',
      method: 'copy',
      from: '/etc/chef-server',
      to: '/backups/etc',
    };
    await executePlan(f.ctx, planOf([step]), { dryRun: false });
    assert.deepEqual(f.shell.lines(), ['cp -a /etc/chef-server /backups/etc']);
    assert.equal(f.reporter.of('stepDone')[0]?.note, 'saved in /backups/etc');
    assert.equal(f.files.text('/etc/chef-server/chef-server.rb'), 'x');
    assert.equal(f.files.modeOf('/backups'), 0o700);
  });

  test('moves a backup by renaming on the same filesystem, by copy and removal across filesystems', async () => {
    const same = commandContext();
    same.files.seed('/var/lib/postgresql/15/main/PG_VERSION', '15\n');
    const step: Step = {
      kind: 'backup',
      id: 'b',
      title: 'b',
      method: 'move',
      from: '/var/lib/postgresql/15/main',
      to: '/var/backups/data',
    };
    await executePlan(same.ctx, planOf([step]), { dryRun: false });
    assert.deepEqual(same.shell.calls, []);
    assert.equal(same.files.text('/var/backups/data/PG_VERSION'), '15\n');
    assert.equal(same.reporter.of('stepDone')[0]?.note, 'moved to /var/backups/data');

    const files = new MemoryFiles();
    files.deviceOf = (p) => (p.startsWith('/var/backups') ? 2 : 1);
    const across = commandContext({ files });
    files.seed('/var/lib/postgresql/15/main/PG_VERSION', '15\n');
    await executePlan(across.ctx, planOf([step]), { dryRun: false });
    assert.deepEqual(across.shell.lines(), ['cp -a /var/lib/postgresql/15/main /var/backups/data']);
    assert.equal(files.text('/var/lib/postgresql/15/main/PG_VERSION'), undefined);
    assert.ok(files.calls.some((c) => c.method === 'removeTree' && c.path === '/var/lib/postgresql/15/main'));
  });

  test('fails a backup whose copy fails and keeps the source', async () => {
    const files = new MemoryFiles();
    files.deviceOf = (p) => (p.startsWith('/var/backups') ? 2 : 1);
    const f = commandContext({ files });
    files.seed('/data/PG_VERSION', '15\n');
    f.shell.on('cp -a', { exitCode: 1, stderr: 'No space left on device' });
    const step: Step = {
      kind: 'backup',
      id: 'backup-data-dir',
      title: 'move',
      method: 'move',
      from: '/data',
      to: '/var/backups/data',
    };
    const error = await failure(executePlan(f.ctx, planOf([step]), { dryRun: false }));
    assert.match(error.message, /cp -a \/data \/var\/backups\/data: exited 1\nNo space left on device/);
    assert.equal(files.text('/data/PG_VERSION'), '15\n');
  });

  test('removes a tree for a remove step', async () => {
    const f = commandContext();
    f.files.seed('/var/opt/chef-ha/fenced.json', '{}');
    await executePlan(
      f.ctx,
      planOf([{ kind: 'remove', id: 'clear-fence', title: 'c', path: '/var/opt/chef-ha/fenced.json' }]),
      { dryRun: false },
    );
    assert.equal(f.files.text('/var/opt/chef-ha/fenced.json'), undefined);
  });

  test('appends history records with the time of the fixed clock', async () => {
    const f = commandContext({ config: config() });
    const step: Step = {
      kind: 'action',
      id: 'record-failover',
      title: 'record',
      action: 'record-state',
      args: { path: '/var/opt/chef-ha/history.jsonl', append: true, data: { event: 'failover' } },
    };
    await executePlan(f.ctx, planOf([step, { ...step, id: 'again' }]), { dryRun: false });
    assert.equal(
      f.files.text('/var/opt/chef-ha/history.jsonl'),
      '{"event":"failover","at":"2026-01-15T12:03:00.000Z"}\n{"event":"failover","at":"2026-01-15T12:03:00.000Z"}\n',
    );
    assert.equal(f.files.modeOf('/var/opt/chef-ha/history.jsonl'), 0o600);
  });
});

// withLock, the secret store, targets and paths (src/core/context.ts)

const LOCK = '/var/opt/chef-ha/chef-ha-ctl.lock';

function lockRecord(pid: number, command = 'failover'): string {
  return JSON.stringify({ pid, command, started: '2026-01-15T12:03:00.000Z' });
}

describe('withLock', () => {
  test('holds a 0600 lock file with its pid and command while fn runs, and removes it after', async () => {
    const f = commandContext();
    let seen: string | undefined;
    const result = await withLock(f.ctx, 'setup-master', () => {
      seen = f.files.text(LOCK);
      return Promise.resolve(42);
    });
    assert.equal(result, 42);
    const record = JSON.parse(seen ?? 'null') as { pid: number; command: string; started: string };
    assert.equal(record.pid, 4100);
    assert.equal(record.command, 'setup-master');
    assert.match(record.started, /^\d{4}-\d\d-\d\dT/);
    assert.equal(f.files.text(LOCK), undefined);
    assert.ok(f.files.calls.some((c) => c.method === 'createExclusive' && c.mode === 0o600));
    assert.equal(f.files.modeOf('/var/opt/chef-ha'), 0o700);
  });

  test('removes the lock when fn throws, and passes the error on', async () => {
    const f = commandContext();
    await assert.rejects(
      withLock(f.ctx, 'fence', () => Promise.reject(new Error('boom'))),
      /^Error: boom$/,
    );
    assert.equal(f.files.text(LOCK), undefined);
  });

  test('refuses a second holder while the first runs, naming its pid, and changes nothing', async () => {
    const f = commandContext();
    f.files.seed(LOCK, lockRecord(4242), 0o600);
    f.proc.alive.add(4242);
    let ran = false;
    await assert.rejects(
      withLock(f.ctx, 'setup-slave', () => {
        ran = true;
        return Promise.resolve();
      }),
      (error: unknown) => {
        assert.ok(error instanceof RefusedError);
        assert.equal(
          error.message,
          'another chef-ha-ctl holds the lock (pid 4242, failover, started 2026-01-15T12:03:00.000Z); nothing was changed',
        );
        assert.equal(error.hint, `wait for it to finish; if no chef-ha-ctl runs, remove ${LOCK}`);
        assert.equal(error.exitCode, 4);
        return true;
      },
    );
    assert.equal(ran, false);
    assert.equal(f.files.text(LOCK), lockRecord(4242), "the holder's lock is left alone");
  });

  test("waits for the monitor's short action (a fence) to release the lock instead of refusing", async () => {
    const f = commandContext();
    f.files.seed(LOCK, lockRecord(4242, 'monitor (fence)'), 0o600);
    f.proc.alive.add(4242);
    // the monitor finishes after 5 polls
    const sleep = f.clock.sleep.bind(f.clock);
    f.clock.sleep = async (ms, signal) => {
      await sleep(ms, signal);
      if (f.clock.sleeps.length === 5) {
        await f.files.remove(LOCK);
      }
    };
    assert.equal(await withLock(f.ctx, 'rejoin', () => Promise.resolve('ran')), 'ran');
    assert.deepEqual(f.clock.sleeps, [100, 100, 100, 100, 100]);
  });

  test('refuses once the monitor has held the lock for longer than the wait', async () => {
    const f = commandContext();
    f.files.seed(LOCK, lockRecord(4242, 'monitor (fence)'), 0o600);
    f.proc.alive.add(4242);
    await assert.rejects(
      withLock(f.ctx, 'rejoin', () => Promise.resolve()),
      /holds the lock \(pid 4242, monitor \(fence\)/,
    );
    assert.equal(f.clock.sleeps.length, 150);
  });

  test('refuses a second chef-ha-ctl (another pid) while the first holds the lock', async () => {
    const first = commandContext();
    const second = commandContext({ files: first.files, proc: new FakeProcess(4200) });
    second.proc.alive.add(4100);
    await withLock(first.ctx, 'failover', async () => {
      await assert.rejects(
        withLock(second.ctx, 'setup-master', () => Promise.resolve()),
        /\(pid 4100, failover, started /,
      );
    });
    assert.equal(first.files.text(LOCK), undefined);
  });

  test('takes no lock and creates no state directory in a dry run', async () => {
    const f = commandContext({ options: { dryRun: true } });
    assert.equal(await withLock(f.ctx, 'setup-master', () => Promise.resolve('planned')), 'planned');
    assert.deepEqual(f.files.calls, []);
  });

  test('takes over a stale lock left by a dead process', async () => {
    const f = commandContext();
    f.files.seed(LOCK, lockRecord(999), 0o600);
    let ran = false;
    await withLock(f.ctx, 'setup-master', () => {
      ran = true;
      assert.match(f.files.text(LOCK) ?? '', /"pid":4100/);
      return Promise.resolve();
    });
    assert.equal(ran, true);
    assert.equal(f.files.text(LOCK), undefined);
  });

  test('takes over a lock file it cannot read', async () => {
    const f = commandContext();
    f.files.seed(LOCK, 'garbage', 0o600);
    assert.equal(await withLock(f.ctx, 'fence', () => Promise.resolve('ok')), 'ok');
  });

  test('gives up with a refusal when the lock cannot be created twice in a row', async () => {
    class NoLockFiles extends MemoryFiles {
      override createExclusive(): Promise<boolean> {
        return Promise.resolve(false);
      }
    }
    const f = commandContext({ files: new NoLockFiles() });
    await assert.rejects(
      withLock(f.ctx, 'fence', () => Promise.resolve()),
      (error: unknown) => {
        assert.ok(error instanceof RefusedError);
        assert.equal(error.message, `could not take the lock ${LOCK}`);
        return true;
      },
    );
  });
});

describe('the secret store', () => {
  const SECRET = '/var/opt/chef-ha/secrets/replication.password';

  test('writes a secret 0600 through Files, in 0700 folders, and remembers it for redaction', async () => {
    const files = new MemoryFiles();
    const store = createSecretStore(config(), { files });
    await store.write('replication', 'pw-value');
    assert.equal(files.text(SECRET), 'pw-value\n');
    assert.equal(files.modeOf(SECRET), 0o600);
    assert.equal(files.modeOf('/var/opt/chef-ha'), 0o700);
    assert.equal(files.modeOf('/var/opt/chef-ha/secrets'), 0o700);
    assert.deepEqual(
      files.mutations().map((c) => [c.method, c.path, c.mode]),
      [
        ['mkdirp', '/var/opt/chef-ha', 0o700],
        ['mkdirp', '/var/opt/chef-ha/secrets', 0o700],
        ['writeAtomic', SECRET, 0o600],
      ],
    );
    assert.deepEqual(store.known(), ['pw-value']);
  });

  test('reads a secret without its newline and remembers it', async () => {
    const files = new MemoryFiles().seed(SECRET, '  pw-value \n', 0o600);
    const store = createSecretStore(config(), { files });
    assert.equal(await store.read('replication'), 'pw-value');
    assert.deepEqual(store.known(), ['pw-value']);
  });

  test('reads a missing or empty secret as undefined', async () => {
    const store = createSecretStore(config(), { files: new MemoryFiles() });
    assert.equal(await store.read('replication'), undefined);
    const empty = createSecretStore(config(), { files: new MemoryFiles().seed(SECRET, '\n') });
    assert.equal(await empty.read('replication'), undefined);
    assert.deepEqual(empty.known(), []);
  });

  test('ensure keeps an existing secret and writes nothing', async () => {
    const files = new MemoryFiles().seed(SECRET, 'kept\n', 0o600);
    const store = createSecretStore(config(), { files });
    assert.equal(await store.ensure('replication'), 'kept');
    assert.deepEqual(files.mutations(), []);
  });

  test('ensure creates a random 32-character secret once', async () => {
    const files = new MemoryFiles();
    const store = createSecretStore(config(), { files });
    const value = await store.ensure('replication');
    assert.match(value, /^[A-Za-z0-9_-]{32}$/);
    assert.equal(files.text(SECRET), `${value}\n`);
    assert.equal(files.modeOf(SECRET), 0o600);
    assert.equal(await store.ensure('replication'), value);
    const other = await createSecretStore(config(), { files: new MemoryFiles() }).ensure('replication');
    assert.notEqual(other, value);
  });

  test('keeps secrets under the configured state directory', async () => {
    const files = new MemoryFiles();
    await createSecretStore(config({ stateDir: '/srv/ha' }), { files }).write('replication', 'x');
    assert.equal(files.text('/srv/ha/secrets/replication.password'), 'x\n');
  });
});

describe('targets and paths', () => {
  test('reaches the local cluster as its superuser over the socket', () => {
    assert.deepEqual(localTarget(config()), {
      bindir: '/usr/lib/postgresql/15/bin',
      socketDir: '/var/run/postgresql',
      port: 5432,
      osUser: 'postgres',
      superuser: 'postgres',
    });
    assert.deepEqual(embeddedTarget(config()), {
      bindir: '/opt/chef-server/embedded/bin',
      socketDir: '/tmp',
      port: 5432,
      osUser: 'opscode-pgsql',
      superuser: 'opscode-pgsql',
    });
  });

  test('reaches the peer over TCP as the replication role', () => {
    assert.deepEqual(peerTarget(config({ peer: { postgresPort: 6432 } }), 'pw'), {
      host: '10.0.0.2',
      port: 6432,
      user: 'chef_ha_replication',
      password: 'pw',
      database: 'postgres',
    });
    assert.equal(peerTarget(config(), 'pw', 500).connectTimeoutMs, 500);
  });

  test('keeps its state under stateDir and names backup folders by UTC time', () => {
    const paths = statePaths(config({ stateDir: '/srv/ha' }));
    assert.equal(paths.secrets, '/srv/ha/secrets');
    assert.equal(paths.backups, '/srv/ha/backups');
    assert.equal(paths.bundle, '/srv/ha/join-bundle.tar.gz');
    assert.equal(paths.lock, '/srv/ha/chef-ha-ctl.lock');
    assert.equal(paths.recipeRecord, '/srv/ha/recipe-original.json');
    assert.equal(paths.fence, '/srv/ha/fenced.json');
    assert.equal(paths.basebackupMarker, '/srv/ha/basebackup-in-progress');
    assert.equal(paths.history, '/srv/ha/history.jsonl');
    assert.equal(
      backupDirFor(config(), Date.UTC(2026, 0, 15, 12, 3, 4, 567)),
      '/var/opt/chef-ha/backups/2026-01-15T120304Z',
    );
  });
});
