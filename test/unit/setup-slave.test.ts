import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Config } from '../../src/core/config.js';
import { RefusedError } from '../../src/core/errors.js';
import type { PairFacts } from '../../src/core/facts.js';
import { type Plan, type Step, SECRET_TOKEN, stepIds } from '../../src/core/plan.js';
import { type BundleManifest, BUNDLE_FORMAT } from '../../src/chef/bundle.js';
import { desiredChefServerRb, desiredHba } from '../../src/commands/common.js';
import {
  HOST_SPECIFIC_AUTO_CONF,
  planSetupSlave,
  type SetupSlaveInput,
} from '../../src/commands/setup-slave/plan.js';
import { GiB, standbyConfig } from '../fakes/config.js';
import {
  OTHER_SYSTEM_ID,
  SYSTEM_ID,
  localPgDown,
  pairFacts,
  peerFacts,
  recipe,
  replicationRow,
  server,
  type LocalOverrides,
} from '../fakes/facts.js';

const BACKUP_DIR = '/var/opt/chef-ha/backups/20260115T120300Z';
const BUNDLE_DIR = '/var/opt/chef-ha/incoming-0a1b2c3d/bundle';
const BUNDLE_RB = "topology 'standalone'\napi_fqdn 'chef.example.com'\n";
const cfg = standbyConfig();

const rendered: SetupSlaveInput['rendered'] = {
  recipeOverride: '# chef-ha recipe override\n# standby\n',
  chefHaConf: "# managed by chef-ha-ctl\nprimary_conninfo = '...'\n",
  hbaBlock:
    '# BEGIN chef-ha (managed by chef-ha-ctl; do not edit inside this block)\nhost replication x 10.0.0.1/32 scram-sha-256\n# END chef-ha\n',
  standbyFile: { name: 'standby.signal', content: '# managed by chef-ha-ctl: this node is a standby\n' },
};

const manifest: BundleManifest = {
  format: BUNDLE_FORMAT,
  createdAt: '2026-01-15T11:59:00.000Z',
  chefHaVersion: '0.1.0',
  master: { name: 'db1', address: '10.0.0.1', port: 5432 },
  slave: { name: 'db2' },
  postgres: { major: '15', versionNum: 150008, systemIdentifier: SYSTEM_ID },
  replication: {
    mode: 'streaming',
    synchronous: false,
    user: 'chef_ha_replication',
    slotName: 'chef_ha_db2',
  },
  etc: [
    { path: 'chef-server.rb', type: 'file', mode: 0o644, user: 'root', group: 'root' },
    { path: 'webui_priv.pem', type: 'file', mode: 0o600, user: 'root', group: 'root' },
  ],
};

function input(facts: PairFacts, overrides: Partial<SetupSlaveInput> = {}): SetupSlaveInput {
  return {
    facts,
    config: cfg,
    options: { force: false, waitReindex: false },
    rendered,
    manifest,
    bundleDir: BUNDLE_DIR,
    bundleChefServerRb: BUNDLE_RB,
    etcMatches: false,
    secretMatches: false,
    passfileCurrent: false,
    neededBytes: 2 * GiB,
    backupDir: BACKUP_DIR,
    ...overrides,
  };
}

function plan(facts: PairFacts, overrides: Partial<SetupSlaveInput> = {}): Plan {
  return planSetupSlave(input(facts, overrides));
}

function step(p: Plan, id: string): Step {
  const found = p.steps.find((s) => s.id === id);
  assert.ok(found, `no step ${id}`);
  return found;
}

function refusal(fn: () => unknown): RefusedError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof RefusedError, `expected a RefusedError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a RefusedError');
}

/** db2 after a complete setup-slave: streaming standby of db1's cluster, every file current. */
function alreadyStandby(c: Config = cfg, overrides: LocalOverrides = {}): PairFacts {
  const localRb = desiredChefServerRb(BUNDLE_RB, c);
  return pairFacts.freshSlave(
    {
      recipe: recipe.override(rendered.recipeOverride),
      secretPresent: true,
      embedded: { running: false, hasChefDatabase: false },
      dataDir: { standbySignal: true },
      files: {
        chefServerRb: localRb,
        chefHaConf: rendered.chefHaConf,
        pgHba: desiredHba('local all postgres peer\n', rendered.hbaBlock),
        postgresqlConf: "include_dir = 'conf.d'\n",
      },
      ...overrides,
      pg: { server: server.standby(), ...overrides.pg },
    },
    { replication: [replicationRow({ application_name: 'chef_ha_db2' })] },
  );
}

const rerun = { etcMatches: true, secretMatches: true, passfileCurrent: true } as const;

const FRESH_ORDER = [
  'store-replication-secret',
  'write-passfile',
  'backup-etc-chef-server',
  'install-etc-chef-server',
  'write-chef-server-rb',
  'keep-original-recipe',
  'keep-original-recipe-beside',
  'record-original-recipe',
  'install-recipe-override',
  'start-postgresql-for-reconfigure',
  'remove-stale-copy',
  'mark-basebackup-started',
  'reconfigure',
  'pg-basebackup',
  'strip-copied-settings',
  'write-standby-signal',
  'stop-postgresql',
  'mark-exchange-started',
  'backup-data-dir',
  'move-copy-into-place',
  'include-chef-ha-conf',
  'write-chef-ha-conf',
  'write-pg-hba',
  'clear-fence',
  'mark-basebackup-finished',
  'start-postgresql',
  'wait-streaming',
  'reindex',
];

const BASE_BACKUP_STEPS = [
  'mark-basebackup-started',
  'pg-basebackup',
  'strip-copied-settings',
  'write-standby-signal',
  'stop-postgresql',
  'mark-exchange-started',
  'backup-data-dir',
  'move-copy-into-place',
  'mark-basebackup-finished',
];

describe('planSetupSlave on a fresh slave', () => {
  test('installs keys and recipe, reconfigures, then replaces the data with a base backup and streams', () => {
    const p = plan(pairFacts.freshSlave());
    assert.deepEqual(stepIds(p), FRESH_ORDER);
    assert.equal(p.command, 'setup-slave');
    assert.equal(p.backupDir, BACKUP_DIR);
    assert.equal(p.summary, 'make db2 the streaming standby of db1 (24 steps to do)');
  });

  test('leaves done only what a running fresh node already has', () => {
    const p = plan(pairFacts.freshSlave());
    assert.deepEqual(
      p.steps.filter((s) => s.done).map((s) => [s.id, s.done]),
      [
        ['start-postgresql-for-reconfigure', 'PostgreSQL is running'],
        ['remove-stale-copy', 'no unfinished copy'],
        ['clear-fence', 'not fenced'],
      ],
    );
  });

  test('stores the secret from the bundle and writes a 0600 passfile with a secret token, not the value', () => {
    const p = plan(pairFacts.freshSlave());
    const store = step(p, 'store-replication-secret');
    assert.ok(store.kind === 'action');
    assert.equal(store.action, 'import-secret');
    assert.deepEqual(store.args, { from: `${BUNDLE_DIR}/secret/replication.password` });
    assert.deepEqual(step(p, 'write-passfile'), {
      kind: 'write',
      id: 'write-passfile',
      title: 'write the passfile PostgreSQL uses to reach db1',
      path: '/var/lib/postgresql/.chef-ha.pgpass',
      content: `*:*:*:chef_ha_replication:${SECRET_TOKEN}\n`,
      secret: 'replication',
      mode: 0o600,
      owner: 'postgres',
      done: undefined,
    });
  });

  test("backs up /etc/chef-server and installs the master's entries", () => {
    const p = plan(pairFacts.freshSlave());
    const backup = step(p, 'backup-etc-chef-server');
    assert.ok(backup.kind === 'backup');
    assert.deepEqual(
      [backup.method, backup.from, backup.to],
      ['copy', '/etc/chef-server', `${BACKUP_DIR}/etc-chef-server`],
    );
    const install = step(p, 'install-etc-chef-server');
    assert.ok(install.kind === 'action');
    assert.deepEqual(install.args, { from: BUNDLE_DIR, entries: manifest.etc });
  });

  test("writes the chef-ha block into the master's chef-server.rb", () => {
    const write = step(plan(pairFacts.freshSlave()), 'write-chef-server-rb');
    assert.ok(write.kind === 'write');
    assert.equal(write.path, '/etc/chef-server/chef-server.rb');
    assert.equal(write.content, desiredChefServerRb(BUNDLE_RB, cfg));
    assert.ok(write.content.startsWith(BUNDLE_RB));
  });

  test('runs pg_basebackup as postgres with the passfile, the slot and streamed WAL', () => {
    const backup = step(plan(pairFacts.freshSlave()), 'pg-basebackup');
    assert.ok(backup.kind === 'run');
    assert.deepEqual(backup.argv, [
      '/usr/lib/postgresql/15/bin/pg_basebackup',
      '-h',
      '10.0.0.1',
      '-p',
      '5432',
      '-U',
      'chef_ha_replication',
      '-D',
      '/var/lib/postgresql/15/main.chef-ha-incoming',
      '-X',
      'stream',
      '--checkpoint=fast',
      '--progress',
      '--no-password',
      '-S',
      'chef_ha_db2',
    ]);
    assert.equal(backup.user, 'postgres');
    assert.deepEqual(backup.env, {
      PGPASSFILE: '/var/lib/postgresql/.chef-ha.pgpass',
      PGAPPNAME: 'chef_ha_db2',
    });
    assert.equal(backup.progress, true);
  });

  test('moves the old data directory into the backup folder and brackets the copy with a marker', () => {
    const p = plan(pairFacts.freshSlave());
    const move = step(p, 'backup-data-dir');
    assert.ok(move.kind === 'backup');
    assert.deepEqual(
      [move.method, move.from, move.to],
      ['move', '/var/lib/postgresql/15/main', `${BACKUP_DIR}/postgresql-data`],
    );
    const started = step(p, 'mark-basebackup-started');
    assert.ok(started.kind === 'action');
    assert.deepEqual(started.args, {
      path: '/var/opt/chef-ha/basebackup-in-progress',
      data: { phase: 'copy', master: 'db1', startedBy: 'setup-slave' },
    });
    const exchange = step(p, 'mark-exchange-started');
    assert.ok(exchange.kind === 'action');
    assert.deepEqual(exchange.args, {
      path: '/var/opt/chef-ha/basebackup-in-progress',
      data: { phase: 'swap', master: 'db1', startedBy: 'setup-slave' },
    });
    const finished = step(p, 'mark-basebackup-finished');
    assert.ok(finished.kind === 'remove');
    assert.equal(finished.path, '/var/opt/chef-ha/basebackup-in-progress');
  });

  test("strips the master's host-specific settings and writes the standby file into the copy before it is put in place", () => {
    const p = plan(pairFacts.freshSlave());
    const strip = step(p, 'strip-copied-settings');
    assert.ok(strip.kind === 'action');
    assert.deepEqual(strip.args, {
      keys: HOST_SPECIFIC_AUTO_CONF,
      dataDir: '/var/lib/postgresql/15/main.chef-ha-incoming',
    });
    const signal = step(p, 'write-standby-signal');
    assert.ok(signal.kind === 'write');
    assert.equal(signal.path, '/var/lib/postgresql/15/main.chef-ha-incoming/standby.signal');
    const ids = stepIds(p);
    assert.ok(ids.indexOf('write-standby-signal') < ids.indexOf('move-copy-into-place'));
    assert.equal(signal.content, rendered.standbyFile.content);
    assert.equal(signal.mode, 0o600);
  });

  test('writes recovery.conf where the version renders it', () => {
    const c = standbyConfig({ postgres: { version: '9.2' } });
    const p = planSetupSlave(
      input(pairFacts.freshSlave(), {
        config: c,
        rendered: { ...rendered, standbyFile: { name: 'recovery.conf', content: "standby_mode = 'on'\n" } },
      }),
    );
    const signal = step(p, 'write-standby-signal');
    assert.ok(signal.kind === 'write');
    assert.equal(signal.path, '/var/lib/postgresql/9.2/main.chef-ha-incoming/recovery.conf');
    const backup = step(p, 'pg-basebackup');
    assert.ok(backup.kind === 'run');
    assert.ok(backup.argv.includes('-x'));
    assert.ok(!backup.argv.includes('-S'));
  });

  test('waits until the master reports this node streaming', () => {
    const wait = step(plan(pairFacts.freshSlave()), 'wait-streaming');
    assert.ok(wait.kind === 'wait');
    assert.deepEqual(wait.until, {
      name: 'standby-streaming',
      on: 'peer',
      applicationName: 'chef_ha_db2',
      sync: false,
    });
    assert.equal(wait.timeoutMs, 60_000);
  });

  test('stops a running PostgreSQL before moving its data directory', () => {
    assert.equal(step(plan(pairFacts.freshSlave()), 'stop-postgresql').done, undefined);
  });

  test('has no data directory to move when there is none', () => {
    const p = plan(pairFacts.freshSlave({ dataDir: { exists: false } }));
    assert.equal(step(p, 'backup-data-dir').done, 'no data directory');
  });

  test('clears an old fence record', () => {
    const p = plan(pairFacts.freshSlave({ fenced: { at: 'x', reason: 'y' } }));
    const clear = step(p, 'clear-fence');
    assert.ok(clear.kind === 'remove');
    assert.equal(clear.path, '/var/opt/chef-ha/fenced.json');
    assert.equal(clear.done, undefined);
  });
});

describe('planSetupSlave on a node that is already the standby', () => {
  test('finds every step done except the wait for streaming', () => {
    const p = plan(alreadyStandby(), rerun);
    assert.deepEqual(stepIds(p), FRESH_ORDER);
    assert.deepEqual(
      p.steps.filter((s) => !s.done).map((s) => s.id),
      ['wait-streaming'],
    );
    assert.equal(p.summary, 'db2 is already the streaming standby of db1');
  });

  test('marks the base-backup steps done as "already a standby"', () => {
    const p = plan(alreadyStandby(), rerun);
    for (const id of BASE_BACKUP_STEPS) {
      assert.equal(step(p, id).done, "already a standby of db1's cluster", id);
    }
    assert.equal(step(p, 'reconfigure').done, 'keys, recipe and attributes unchanged');
    assert.equal(step(p, 'reindex').done, 'nothing changed since the last reindex');
    assert.equal(step(p, 'start-postgresql').done, 'PostgreSQL runs as a standby');
  });

  test('keeps the base backup but reconfigures and reindexes when the keys changed', () => {
    const p = plan(alreadyStandby(), { ...rerun, etcMatches: false });
    assert.deepEqual(
      p.steps.filter((s) => !s.done).map((s) => s.id),
      [
        'backup-etc-chef-server',
        'install-etc-chef-server',
        'write-chef-server-rb',
        'reconfigure',
        'wait-streaming',
        'reindex',
      ],
    );
  });

  test('re-imports a changed secret and rewrites the passfile', () => {
    const p = plan(alreadyStandby(), { ...rerun, secretMatches: false });
    assert.deepEqual(
      p.steps.filter((s) => !s.done).map((s) => s.id),
      ['store-replication-secret', 'write-passfile', 'wait-streaming', 'reindex'],
    );
  });

  test('needs no free disk for a base backup it does not take', () => {
    const facts = alreadyStandby(cfg, { freeBytes: 1 });
    assert.doesNotThrow(() => plan(facts, rerun));
  });

  test('plans a restart when a configuration file changed', () => {
    const facts = alreadyStandby(cfg, { files: { ...alreadyStandby().local.files, chefHaConf: '# old\n' } });
    const p = plan(facts, rerun);
    const restart = step(p, 'restart-postgresql');
    assert.ok(restart.kind === 'run');
    assert.deepEqual(restart.argv, ['pg_ctlcluster', '15', 'main', 'restart', '-m', 'fast']);
    assert.equal(step(p, 'write-chef-ha-conf').done, undefined);
  });

  test("is not a standby of this cluster when the system identifier differs from the bundle's", () => {
    const facts = alreadyStandby(cfg, {
      pg: { server: server.standby({ systemIdentifier: OTHER_SYSTEM_ID }) },
    });
    const p = plan(facts, rerun);
    assert.equal(step(p, 'pg-basebackup').done, undefined);
  });
});

describe('planSetupSlave after an interrupted base backup', () => {
  test('killed while copying: removes the unfinished copy beside the untouched data directory, then copies again', () => {
    const p = plan(pairFacts.freshSlave({ basebackupPhase: 'copy', stagingExists: true }));
    const remove = step(p, 'remove-stale-copy');
    assert.ok(remove.kind === 'remove');
    assert.equal(remove.path, '/var/lib/postgresql/15/main.chef-ha-incoming');
    assert.equal(remove.done, undefined);
    for (const id of BASE_BACKUP_STEPS) {
      assert.equal(step(p, id).done, undefined, id);
    }
    assert.equal(step(p, 'reconfigure').done, undefined, 'the old cluster still runs: reconfigure as usual');
  });

  test('killed during the exchange with the copy still staged: moves the old data away and puts the copy in place', () => {
    const p = plan(pairFacts.freshSlave({ basebackupPhase: 'swap', stagingExists: true, pg: localPgDown() }));
    assert.equal(step(p, 'remove-stale-copy').done, 'no unfinished copy');
    assert.equal(step(p, 'pg-basebackup').done, 'the interrupted run finished the copy');
    assert.equal(step(p, 'backup-data-dir').done, undefined);
    assert.equal(step(p, 'move-copy-into-place').done, undefined);
    assert.equal(
      step(p, 'start-postgresql-for-reconfigure').done,
      'an interrupted run already reconfigured and replaced the data directory',
    );
  });

  test('killed after the copy was put in place: keeps it, and reconfigures once the standby streams when keys changed', () => {
    const p = plan(
      pairFacts.freshSlave({ basebackupPhase: 'swap', stagingExists: false, pg: localPgDown() }),
    );
    assert.equal(step(p, 'backup-data-dir').done, 'the data directory already holds the new copy');
    assert.equal(step(p, 'move-copy-into-place').done, 'done by the interrupted run');
    assert.equal(step(p, 'pg-basebackup').done, 'the interrupted run finished the copy');
    assert.equal(
      step(p, 'reconfigure').done,
      'runs once the standby streams (the data directory was replaced or holds an interrupted copy)',
    );
    const ids = stepIds(p);
    assert.equal(ids[ids.indexOf('wait-streaming') + 1], 'reconfigure-after-streaming');
    const late = step(p, 'reconfigure-after-streaming');
    assert.ok(late.kind === 'run');
    assert.deepEqual(late.argv, ['/opt/chef-server/bin/chef-server-ctl', 'reconfigure']);
    assert.equal(late.done, undefined);
  });

  test('killed after the copy was put in place, keys and recipe already installed: only finishes the standby', () => {
    const facts = pairFacts.freshSlave({
      basebackupPhase: 'swap',
      pg: localPgDown(),
      recipe: recipe.override(rendered.recipeOverride),
      files: { chefServerRb: desiredChefServerRb(BUNDLE_RB, cfg) },
    });
    const p = plan(facts, rerun);
    assert.equal(step(p, 'reconfigure').done, 'keys, recipe and attributes unchanged');
    assert.ok(!stepIds(p).includes('reconfigure-after-streaming'));
    assert.deepEqual(
      p.steps.filter((s) => !s.done).map((s) => s.id),
      [
        'include-chef-ha-conf',
        'write-chef-ha-conf',
        'write-pg-hba',
        'mark-basebackup-finished',
        'start-postgresql',
        'wait-streaming',
        'reindex',
      ],
    );
  });

  test('an exchange that lost both copies copies again', () => {
    const p = plan(
      pairFacts.freshSlave({
        basebackupPhase: 'swap',
        stagingExists: false,
        pg: localPgDown(),
        dataDir: { exists: false, empty: true, standbySignal: false, recoveryConf: false },
      }),
    );
    assert.equal(step(p, 'pg-basebackup').done, undefined);
    assert.equal(step(p, 'move-copy-into-place').done, undefined);
    assert.equal(step(p, 'backup-data-dir').done, 'no data directory');
  });

  test("an interrupted rejoin's partial copy in the data directory: not started, moved to the backup, copied again", () => {
    const p = plan(pairFacts.freshSlave({ basebackupPhase: 'in-place', pg: localPgDown() }));
    assert.equal(
      step(p, 'start-postgresql-for-reconfigure').done,
      'the data directory holds an interrupted base backup',
    );
    assert.equal(step(p, 'backup-data-dir').done, undefined);
    assert.equal(step(p, 'pg-basebackup').done, undefined);
    assert.ok(stepIds(p).includes('reconfigure-after-streaming'));
  });

  test('does not take an interrupted copy that answers in recovery for a finished standby', () => {
    const facts = alreadyStandby(cfg, { basebackupPhase: 'copy', stagingExists: true });
    const p = plan(facts, rerun);
    assert.equal(step(p, 'remove-stale-copy').done, undefined);
    assert.equal(step(p, 'pg-basebackup').done, undefined);
  });
});

describe('planSetupSlave runs reconfigure and the copy at the same time', () => {
  test('reconfigure and pg-basebackup form one concurrent group; nothing else runs beside them', () => {
    const p = plan(pairFacts.freshSlave());
    const grouped = p.steps.filter((s) => s.concurrent !== undefined).map((s) => s.id);
    assert.deepEqual(grouped, ['reconfigure', 'pg-basebackup']);
    const ids = stepIds(p);
    assert.equal(ids.indexOf('pg-basebackup'), ids.indexOf('reconfigure') + 1);
  });

  test('the copy goes beside the data directory and the old cluster is stopped only after both ended', () => {
    const p = plan(pairFacts.freshSlave());
    const copy = step(p, 'pg-basebackup');
    assert.ok(copy.kind === 'run');
    assert.equal(copy.argv[copy.argv.indexOf('-D') + 1], '/var/lib/postgresql/15/main.chef-ha-incoming');
    const ids = stepIds(p);
    assert.ok(ids.indexOf('stop-postgresql') > ids.indexOf('pg-basebackup'));
    const move = step(p, 'move-copy-into-place');
    assert.ok(move.kind === 'action');
    assert.deepEqual(move.args, {
      from: '/var/lib/postgresql/15/main.chef-ha-incoming',
      to: '/var/lib/postgresql/15/main',
    });
  });
});

describe('planSetupSlave reindex', () => {
  test('runs in the background by default, logged under the state directory', () => {
    const r = step(plan(pairFacts.freshSlave()), 'reindex');
    assert.ok(r.kind === 'run');
    assert.deepEqual(r.background, {
      log: '/var/opt/chef-ha/logs/reindex.log',
      job: '/var/opt/chef-ha/reindex.json',
    });
  });

  test('--wait-reindex runs it in the foreground', () => {
    const r = step(plan(pairFacts.freshSlave(), { options: { force: false, waitReindex: true } }), 'reindex');
    assert.ok(r.kind === 'run');
    assert.equal(r.background, undefined);
  });
});

describe('planSetupSlave in synchronous mode', () => {
  const sync = standbyConfig({ replication: { synchronous: true } });

  test('switches the master to synchronous mode after streaming, then waits for sync', () => {
    const p = plan(pairFacts.freshSlave(), { config: sync });
    assert.deepEqual(stepIds(p).slice(-5), [
      'wait-streaming',
      'enable-synchronous',
      'reload-master',
      'wait-sync',
      'reindex',
    ]);
    const enable = step(p, 'enable-synchronous');
    assert.ok(enable.kind === 'sql');
    assert.equal(enable.on, 'peer');
    assert.equal(enable.text, 'ALTER SYSTEM SET synchronous_standby_names = \'FIRST 1 ("chef_ha_db2")\'');
    const wait = step(p, 'wait-sync');
    assert.ok(wait.kind === 'wait');
    assert.deepEqual(wait.until, {
      name: 'standby-streaming',
      on: 'peer',
      applicationName: 'chef_ha_db2',
      sync: true,
    });
    assert.match(p.summary, /the synchronous streaming standby of db1/);
  });

  test('finds synchronous mode already on at the master', () => {
    const facts = pairFacts.freshSlave({}, { synchronousStandbyNames: 'FIRST 1 ("chef_ha_db2")' });
    const p = plan(facts, { config: sync });
    assert.equal(step(p, 'enable-synchronous').done, 'synchronous_standby_names already names this node');
    assert.equal(step(p, 'reload-master').done, 'nothing changed');
    assert.equal(step(p, 'wait-sync').done, undefined);
  });
});

describe('planSetupSlave refuses', () => {
  const table: readonly {
    readonly scenario: string;
    readonly facts: PairFacts;
    readonly overrides?: Partial<SetupSlaveInput>;
    readonly message: RegExp;
    readonly override?: string;
    readonly hint: RegExp;
  }[] = [
    {
      scenario: 'when the master is unreachable',
      facts: { ...pairFacts.freshSlave(), peer: peerFacts.unreachable('password authentication failed') },
      message:
        /^cannot reach the master's PostgreSQL at 10\.0\.0\.1:5432 as chef_ha_replication: password authentication failed; nothing was changed$/,
      hint: /admits 10\.0\.0\.2/,
    },
    {
      scenario: 'when the master is in recovery',
      facts: { ...pairFacts.freshSlave(), peer: peerFacts.standby() },
      message:
        /^db1 is itself a standby \(in recovery\); a slave must follow the primary; nothing was changed$/,
      hint: /status/,
    },
    {
      scenario: 'when the master answers with another system identifier than the bundle',
      facts: pairFacts.freshSlave({}, { systemIdentifier: OTHER_SYSTEM_ID }),
      message: new RegExp(
        `^the bundle was made on a different cluster \\(system id ${SYSTEM_ID}\\) than the one answering at 10\\.0\\.0\\.1:5432 \\(${OTHER_SYSTEM_ID}\\)`,
      ),
      hint: /export-bundle/,
    },
    {
      scenario: 'when this node is the current primary that the master follows',
      facts: pairFacts.freshSlave({
        pg: {
          server: server.primary({
            systemIdentifier: OTHER_SYSTEM_ID,
            replication: [replicationRow({ application_name: 'chef_ha_db1' })],
          }),
        },
      }),
      message:
        /^db2 is the pair's current primary \(its PostgreSQL is writable and chef_ha_db1 streams from it\); replacing its data would lose the pair's writes; nothing was changed$/,
      override: '--force',
      hint: /switchover/,
    },
    {
      scenario: 'when this node is the current primary even though the master does not answer',
      facts: {
        ...pairFacts.freshSlave({
          pg: {
            server: server.primary({ replication: [replicationRow({ application_name: 'chef_ha_db1' })] }),
          },
        }),
        peer: peerFacts.unreachable('connection refused'),
      },
      message: /^db2 is the pair's current primary/,
      override: '--force',
      hint: /switchover/,
    },
    {
      scenario: 'when this node holds Chef data beyond the bootstrap rows',
      facts: pairFacts.freshSlave({ pg: { chefData: { nodes: 3 } }, embedded: { chefData: { clients: 1 } } }),
      message:
        /^db2 holds Chef data beyond a fresh install's bootstrap rows \(clients: 1, nodes: 3\); setup-slave replaces it with db1's; nothing was changed$/,
      override: '--force',
      hint: new RegExp(`moved into ${BACKUP_DIR} first`),
    },
    {
      scenario: 'when the embedded cluster holds rows that the distribution cluster counts as 0',
      facts: pairFacts.freshSlave({ pg: { chefData: { nodes: 0 } }, embedded: { chefData: { nodes: 5 } } }),
      message: /bootstrap rows \(nodes: 5\)/,
      override: '--force',
      hint: /--force/,
    },
    {
      scenario: 'when there is not enough disk for the base backup',
      facts: pairFacts.freshSlave({ freeBytes: 1 * GiB }),
      message:
        /^not enough free disk for the base backup: 1\.0 GiB free where \/var\/lib\/postgresql\/15\/main lives, 2\.0 GiB needed/,
      hint: /free space/,
    },
    {
      scenario: 'when the environment is broken (missing pg_basebackup)',
      facts: pairFacts.freshSlave({ binaries: { pg_basebackup: false } }),
      message: /binaries are missing from \/usr\/lib\/postgresql\/15\/bin: pg_basebackup/,
      hint: /apt-get/,
    },
  ];
  for (const row of table) {
    test(`refuses ${row.scenario}`, () => {
      const error = refusal(() => plan(row.facts, row.overrides));
      assert.match(error.message, row.message);
      assert.equal(error.override, row.override);
      assert.match(error.hint ?? '', row.hint);
    });
  }

  test('says "no answer" when the master is unreachable without an error text', () => {
    const facts = { ...pairFacts.freshSlave(), peer: { reachable: false, slots: [] } };
    assert.match(
      refusal(() => plan(facts)).message,
      /as chef_ha_replication: no answer; nothing was changed$/,
    );
  });

  test('lets --force replace a node holding Chef data', () => {
    const facts = pairFacts.freshSlave({ pg: { chefData: { nodes: 3 } } });
    const p = plan(facts, { options: { force: true, waitReindex: false } });
    assert.deepEqual(stepIds(p), FRESH_ORDER);
    assert.equal(step(p, 'backup-data-dir').done, undefined);
  });

  test('lets --force replace the current primary', () => {
    const facts = pairFacts.freshSlave({
      pg: {
        server: server.primary({
          systemIdentifier: OTHER_SYSTEM_ID,
          replication: [replicationRow({ application_name: 'chef_ha_db1' })],
        }),
      },
    });
    assert.deepEqual(stepIds(plan(facts, { options: { force: true, waitReindex: false } })), FRESH_ORDER);
  });

  test('does not count Chef data on a node that is already a standby', () => {
    const facts = alreadyStandby(cfg, { pg: { server: server.standby(), chefData: { nodes: 50 } } });
    assert.doesNotThrow(() => plan(facts, rerun));
  });

  test('does not count Chef data on a stopped node', () => {
    const facts = pairFacts.freshSlave({
      pg: { ...localPgDown(), chefData: {} },
      embedded: { chefData: { nodes: 5 } },
    });
    assert.doesNotThrow(() => plan(facts));
  });

  test('still refuses --force when there is not enough disk', () => {
    const error = refusal(() =>
      plan(pairFacts.freshSlave({ freeBytes: 0 }), { options: { force: true, waitReindex: false } }),
    );
    assert.match(error.message, /not enough free disk/);
  });

  test('accepts exactly enough disk', () => {
    assert.doesNotThrow(() => plan(pairFacts.freshSlave({ freeBytes: 2 * GiB })));
  });
});
