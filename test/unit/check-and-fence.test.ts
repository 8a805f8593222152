import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PairFacts, LocalFacts } from '../../src/core/facts.js';
import { toFenceFacts } from '../../src/core/facts.js';
import { evaluateChecks, type CheckResult } from '../../src/commands/check/index.js';
import { config } from '../fakes/config.js';
import {
  localPgDown,
  pairFacts,
  peerFacts,
  recipe,
  server,
  type LocalOverrides,
  localFacts,
} from '../fakes/facts.js';
import type { Config } from '../../src/core/config.js';
import { type Plan, type Step, stepIds } from '../../src/core/plan.js';
import { planFence } from '../../src/commands/fence/index.js';

// evaluateChecks (src/commands/check/index.ts)

const cfg = config();

function checks(local: LocalOverrides = {}, peer = pairFacts.freshMaster().peer): CheckResult[] {
  return evaluateChecks({ ...pairFacts.freshMaster(local), peer }, cfg);
}

function find(results: readonly CheckResult[], name: string): CheckResult {
  const found = results.find((r) => r.name === name);
  assert.ok(found, `no check ${name}`);
  return found;
}

const facts: PairFacts = pairFacts.primaryWithStreamingStandby({ local: 'primary' });

describe('evaluateChecks', () => {
  test('passes every check on a set-up primary whose peer answers', () => {
    const results = evaluateChecks(facts, cfg);
    assert.deepEqual(
      results.map((r) => [r.name, r.level]),
      [
        ['config', 'ok'],
        ['postgresql-binaries', 'ok'],
        ['postgresql-os-user', 'ok'],
        ['postgresql', 'ok'],
        ['chef-server-ctl', 'ok'],
        ['chef-server-etc', 'ok'],
        ['recipe', 'ok'],
        ['peer', 'ok'],
        ['disk', 'ok'],
      ],
    );
    assert.equal(find(results, 'postgresql').detail, 'running, PostgreSQL 15, primary');
    assert.equal(find(results, 'peer').detail, 'db2 answers at 10.0.0.2:5432');
    assert.equal(find(results, 'disk').detail, '100.0 GiB free for /var/lib/postgresql/15/main');
    assert.equal(find(results, 'recipe').detail, 'chef-ha override installed');
  });

  test('says "standby" for a running standby', () => {
    const results = evaluateChecks(pairFacts.primaryWithStreamingStandby(), cfg);
    assert.equal(find(results, 'postgresql').detail, 'running, PostgreSQL 15, standby');
  });

  const table: readonly {
    readonly scenario: string;
    readonly results: CheckResult[];
    readonly check: CheckResult;
  }[] = [
    {
      scenario: 'fails missing binaries and names the package',
      results: checks({ binaries: { pg_rewind: false, pg_dump: false } }),
      check: {
        name: 'postgresql-binaries',
        level: 'fail',
        detail: 'missing in /usr/lib/postgresql/15/bin: pg_rewind, pg_dump (apt-get install postgresql-15)',
      },
    },
    {
      scenario: 'fails an unknown OS user',
      results: checks({ osUserKnown: false }),
      check: { name: 'postgresql-os-user', level: 'fail', detail: 'OS user postgres does not exist' },
    },
    {
      scenario: 'fails a running major that differs from postgres.version',
      results: checks({ pg: { server: server.primary({ major: '12', versionNum: 120015 }) } }),
      check: {
        name: 'postgresql',
        level: 'fail',
        detail: 'running PostgreSQL 12, but postgres.version says 15',
      },
    },
    {
      scenario: 'fails a PostgreSQL that does not answer, with the socket and the error',
      results: checks({ pg: localPgDown('connection refused') }),
      check: {
        name: 'postgresql',
        level: 'fail',
        detail: 'not reachable on /var/run/postgresql port 5432: connection refused',
      },
    },
    {
      scenario: 'fails a missing chef-server-ctl',
      results: checks({ ctlExecutable: false }),
      check: {
        name: 'chef-server-ctl',
        level: 'fail',
        detail: '/opt/chef-server/bin/chef-server-ctl missing or not executable',
      },
    },
    {
      scenario: 'fails a missing /etc/chef-server',
      results: checks({ etcDirExists: false }),
      check: { name: 'chef-server-etc', level: 'fail', detail: '/etc/chef-server does not exist' },
    },
    {
      scenario: 'warns about an original recipe before setup',
      results: checks(),
      check: {
        name: 'recipe',
        level: 'warn',
        detail: 'original recipe (chef-server 11.1.4-11.1.7); setup-* installs the override',
      },
    },
    {
      scenario: 'fails an original recipe that came back after setup',
      results: checks({ recordedOriginalSha256: 'f'.repeat(64) }),
      check: {
        name: 'recipe',
        level: 'fail',
        detail:
          'the original recipe is back (a package upgrade?): run `chef-ha-ctl reconfigure` or setup-* to re-apply the override',
      },
    },
    {
      scenario: 'fails a missing recipe',
      results: checks({ recipe: recipe.missing() }),
      check: {
        name: 'recipe',
        level: 'fail',
        detail: '/opt/chef-server/embedded/cookbooks/chef-server/recipes/postgresql.rb missing',
      },
    },
    {
      scenario: 'fails an unrecognised recipe with its sha256',
      results: checks({ recipe: recipe.unknown() }),
      check: {
        name: 'recipe',
        level: 'fail',
        detail: `/opt/chef-server/embedded/cookbooks/chef-server/recipes/postgresql.rb is unrecognised (sha256 ${recipe.unknown().sha256!})`,
      },
    },
    {
      scenario: 'warns that the peer is not checked before setup',
      results: checks(),
      check: {
        name: 'peer',
        level: 'warn',
        detail: 'not set up yet (no replication secret): peer not checked',
      },
    },
    {
      scenario: 'warns about a peer that does not answer',
      results: checks({ secretPresent: true }, peerFacts.unreachable('timeout')),
      check: { name: 'peer', level: 'warn', detail: 'db2 does not answer at 10.0.0.2:5432: timeout' },
    },
    {
      scenario: 'warns that this node is fenced',
      results: checks({ fenced: { at: '2026-01-15T11:00:00.000Z', reason: 'failover to db2' } }),
      check: {
        name: 'fence',
        level: 'warn',
        detail: 'this node is fenced since 2026-01-15T11:00:00.000Z: failover to db2',
      },
    },
  ];
  for (const row of table) {
    test(row.scenario, () => {
      assert.deepEqual(find(row.results, row.check.name), row.check);
    });
  }

  test('adds no fence check on a node that is not fenced', () => {
    assert.ok(!checks().some((r) => r.name === 'fence'));
  });

  test('shows "?" for an unknown recipe without a sha256 and "" for an original without origin', () => {
    const unknown = checks({ recipe: { kind: 'unknown', path: '/r.rb' } });
    assert.equal(find(unknown, 'recipe').detail, '/r.rb is unrecognised (sha256 ?)');
    const original = checks({ recipe: { kind: 'original', path: '/r.rb' } });
    assert.equal(find(original, 'recipe').detail, 'original recipe (); setup-* installs the override');
  });

  test('says "no answer" for a PostgreSQL that is down without an error', () => {
    const base = pairFacts.freshMaster();
    const pg = { running: false, settings: {}, replicationRoleExists: false, slots: [], chefData: {} };
    const results = evaluateChecks({ ...base, local: { ...base.local, pg } }, cfg);
    assert.equal(
      find(results, 'postgresql').detail,
      'not reachable on /var/run/postgresql port 5432: no answer',
    );
  });
});

// planFence (src/commands/fence/index.ts)

const NOW = '2026-01-15T12:03:00.000Z';

function plan(local: LocalOverrides = {}, c: Config = config()): Plan {
  return planFence(toFenceFacts(localFacts(local)), c, { reason: 'failover to db2' }, NOW);
}

function step(p: Plan, id: string): Step {
  const found = p.steps.find((s) => s.id === id);
  assert.ok(found, `no step ${id}`);
  return found;
}

function done(p: Plan): Record<string, string | undefined> {
  return Object.fromEntries(p.steps.map((s) => [s.id, s.done]));
}

describe('planFence', () => {
  test('records the fence, writes the signal file, makes a running primary read-only and stops it', () => {
    const p = plan();
    assert.deepEqual(stepIds(p), ['record-fence', 'write-fence-file', 'make-read-only', 'stop-postgresql']);
    assert.equal(p.command, 'fence');
    assert.equal(p.summary, 'fence db1: failover to db2');
    assert.deepEqual(done(p), {
      'record-fence': undefined,
      'write-fence-file': undefined,
      'make-read-only': undefined,
      'stop-postgresql': undefined,
    });
  });

  test('records when and why in the state directory', () => {
    const record = step(plan(), 'record-fence');
    assert.ok(record.kind === 'action');
    assert.deepEqual(record.args, {
      path: '/var/opt/chef-ha/fenced.json',
      data: { at: NOW, reason: 'failover to db2' },
    });
  });

  test('ends client sessions and sets default_transaction_read_only on the running primary', () => {
    const sql = step(plan(), 'make-read-only');
    assert.ok(sql.kind === 'sql');
    assert.match(
      sql.text,
      /^ALTER SYSTEM SET default_transaction_read_only = on;\nSELECT pg_reload_conf\(\);\nSELECT pg_terminate_backend/,
    );
  });

  test('stops PostgreSQL with a fast stop through the service manager', () => {
    const stop = step(plan(), 'stop-postgresql');
    assert.ok(stop.kind === 'run');
    assert.deepEqual(stop.argv, ['pg_ctlcluster', '15', 'main', 'stop', '-m', 'fast']);
  });

  test('finds every step done on a stopped node already fenced with standby.signal', () => {
    const fenced: LocalFacts['fenced'] = { at: '2026-01-15T11:00:00.000Z', reason: 'by operator' };
    const p = plan({ fenced, pg: localPgDown(), dataDir: { standbySignal: true } });
    assert.deepEqual(done(p), {
      'record-fence': 'fenced since 2026-01-15T11:00:00.000Z',
      'write-fence-file': 'standby.signal is present',
      'make-read-only': 'PostgreSQL is not running as a primary',
      'stop-postgresql': 'PostgreSQL is not running',
    });
  });

  test('skips make-read-only on a running standby but still stops it', () => {
    const p = plan({ pg: { server: server.standby() }, dataDir: { standbySignal: true } });
    assert.equal(step(p, 'make-read-only').done, 'PostgreSQL is not running as a primary');
    assert.equal(step(p, 'stop-postgresql').done, undefined);
    assert.equal(step(p, 'write-fence-file').done, 'standby.signal is present');
  });

  const versions: readonly {
    readonly version: string;
    readonly file: string;
    readonly present: NonNullable<LocalOverrides['dataDir']>;
  }[] = [
    { version: '9.2', file: 'recovery.conf', present: { recoveryConf: true } },
    { version: '11', file: 'recovery.conf', present: { recoveryConf: true } },
    { version: '12', file: 'standby.signal', present: { standbySignal: true } },
    { version: '15', file: 'standby.signal', present: { standbySignal: true } },
  ];
  for (const v of versions) {
    test(`looks for ${v.file} on PostgreSQL ${v.version}`, () => {
      const c = config({ postgres: { version: v.version } });
      assert.equal(
        step(plan({}, c), 'write-fence-file').title,
        `write ${v.file} so that any later start is read-only`,
      );
      assert.equal(step(plan({ dataDir: v.present }, c), 'write-fence-file').done, `${v.file} is present`);
      const other = v.file === 'recovery.conf' ? { standbySignal: true } : { recoveryConf: true };
      assert.equal(step(plan({ dataDir: other }, c), 'write-fence-file').done, undefined);
    });
  }
});
