import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Config } from '../../src/core/config.js';
import { RefusedError } from '../../src/core/errors.js';
import type { LocalFacts, PairFacts } from '../../src/core/facts.js';
import { type Plan, type Step, stepIds } from '../../src/core/plan.js';
import { cidrOf, desiredChefServerRb, desiredHba, type Rendered } from '../../src/commands/common.js';
import { planSetupMaster, syncStandbyNamesFor } from '../../src/commands/setup-master/plan.js';
import { renderServerSettings } from '../../src/pg/version.js';
import { config } from '../fakes/config.js';
import {
  defaultSettings,
  localFacts,
  localPgDown,
  pairFacts,
  peerFacts,
  recipe,
  replicationRow,
  server,
  type LocalOverrides,
} from '../fakes/facts.js';

const BACKUP_DIR = '/var/opt/chef-ha/backups/20260115T120300Z';
const cfg = config();

function renderedFor(c: Config): Rendered {
  return {
    recipeOverride: `# chef-ha recipe override\n# for PostgreSQL ${c.postgres.version}\n`,
    chefHaConf: `# managed by chef-ha-ctl\n${settingsFor(c).join('\n')}\n`,
    hbaBlock: `# BEGIN chef-ha (managed by chef-ha-ctl; do not edit inside this block)\nhost replication chef_ha_replication 10.0.0.2/32 scram-sha-256\n# END chef-ha\n`,
  };
}

function settingsFor(c: Config): string[] {
  return renderServerSettings({
    version: c.postgres.version,
    nodeName: c.node.name,
    listenAddresses: `localhost,${c.node.address}`,
    walKeepMb: c.replication.walKeepMb,
  });
}

function plan(facts: PairFacts, c: Config = cfg, force = false): Plan {
  return planSetupMaster({
    facts,
    config: c,
    options: { force },
    rendered: renderedFor(c),
    settingsLines: settingsFor(c),
    backupDir: BACKUP_DIR,
  });
}

function step(p: Plan, id: string): Step {
  const found = p.steps.find((s) => s.id === id);
  assert.ok(found, `no step ${id}`);
  return found;
}

/** Settings as a running server reports them once chef-ha.conf is in effect. */
function settingsInEffect(): LocalFacts['pg']['settings'] {
  const s = (setting: string): { setting: string; pendingRestart: boolean } => ({
    setting,
    pendingRestart: false,
  });
  return {
    ...defaultSettings(),
    wal_log_hints: s('on'),
    listen_addresses: s('localhost,10.0.0.1'),
  };
}

/** db1 after a complete setup-master: every file current, the role, secret and slot in place. */
function setUpMaster(c: Config = cfg, overrides: LocalOverrides = {}): PairFacts {
  const r = renderedFor(c);
  const pgHba = desiredHba('local all postgres peer\n', r.hbaBlock);
  const chefServerRb = desiredChefServerRb("topology 'standalone'\n", c);
  return {
    ...pairFacts.freshMaster(),
    local: localFacts({
      recipe: recipe.override(r.recipeOverride),
      recordedOriginalSha256: recipe.original().sha256!,
      files: { chefServerRb, pgHba, chefHaConf: r.chefHaConf, postgresqlConf: "include_dir = 'conf.d'\n" },
      secretPresent: true,
      embedded: { running: false, hasChefDatabase: true },
      ...overrides,
      pg: {
        settings: settingsInEffect(),
        replicationRoleExists: true,
        slots: [{ slot_name: 'chef_ha_db2', active: false }],
        database: { sizeBytes: 12_345_678 },
        ...overrides.pg,
      },
    }),
  };
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

const FRESH_ORDER = [
  'keep-original-recipe',
  'keep-original-recipe-beside',
  'record-original-recipe',
  'install-recipe-override',
  'write-chef-server-rb',
  'include-chef-ha-conf',
  'write-chef-ha-conf',
  'write-pg-hba',
  'start-postgresql',
  'restart-postgresql',
  'reload-postgresql',
  'migrate-embedded-data',
  'reconfigure',
  'create-replication-secret',
  'create-replication-role',
  'create-replication-slot',
  'write-join-bundle',
];

describe('planSetupMaster on a fresh node', () => {
  test('plans the recipe, files, PostgreSQL, data migration, role, slot and bundle in order', () => {
    const p = plan(pairFacts.freshMaster());
    assert.deepEqual(stepIds(p), FRESH_ORDER);
    assert.equal(p.command, 'setup-master');
    assert.equal(p.backupDir, BACKUP_DIR);
    assert.equal(p.summary, 'make db1 the streaming master for db2 (15 steps to do)');
  });

  test('leaves only "PostgreSQL is running" and the reload (restart reads the files) done', () => {
    const p = plan(pairFacts.freshMaster());
    assert.deepEqual(
      p.steps.filter((s) => s.done).map((s) => [s.id, s.done]),
      [
        ['start-postgresql', 'PostgreSQL is running'],
        ['reload-postgresql', 'the restart reads them'],
      ],
    );
  });

  test('keeps the original recipe in the backup folder and beside it, and records its sha256', () => {
    const p = plan(pairFacts.freshMaster());
    const recipePath = '/opt/chef-server/embedded/cookbooks/chef-server/recipes/postgresql.rb';
    assert.deepEqual(step(p, 'keep-original-recipe'), {
      kind: 'backup',
      id: 'keep-original-recipe',
      title: 'keep the original postgresql.rb beside it and in the backup folder',
      method: 'copy',
      from: recipePath,
      to: `${BACKUP_DIR}/postgresql.rb.orig`,
      done: undefined,
    });
    const beside = step(p, 'keep-original-recipe-beside');
    assert.ok(beside.kind === 'backup');
    assert.equal(beside.to, `${recipePath}.chef-ha-original`);
    const record = step(p, 'record-original-recipe');
    assert.ok(record.kind === 'action');
    assert.deepEqual(record.args, {
      path: '/var/opt/chef-ha/recipe-original.json',
      data: { sha256: recipe.original().sha256, origin: 'chef-server 11.1.4-11.1.7', path: recipePath },
    });
    const install = step(p, 'install-recipe-override');
    assert.ok(install.kind === 'write');
    assert.equal(install.content, renderedFor(cfg).recipeOverride);
  });

  test('dumps the embedded Chef database into the backup folder', () => {
    const migrate = step(plan(pairFacts.freshMaster()), 'migrate-embedded-data');
    assert.ok(migrate.kind === 'action');
    assert.equal(migrate.action, 'copy-database');
    assert.deepEqual(migrate.args, {
      direction: 'embedded-to-distribution',
      dumpFile: `${BACKUP_DIR}/embedded-opscode_chef.dump`,
    });
  });

  test('creates the slot named after the slave and the role with the right existence flag', () => {
    const p = plan(pairFacts.freshMaster());
    const slot = step(p, 'create-replication-slot');
    assert.ok(slot.kind === 'sql');
    assert.equal(
      slot.text,
      "SELECT pg_create_physical_replication_slot('chef_ha_db2') WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'chef_ha_db2');",
    );
    const role = step(p, 'create-replication-role');
    assert.ok(role.kind === 'action');
    assert.deepEqual(role.args, { exists: false });
    const bundle = step(p, 'write-join-bundle');
    assert.ok(bundle.kind === 'action');
    assert.deepEqual(bundle.args, { output: '/var/opt/chef-ha/join-bundle.tar.gz', slotName: 'chef_ha_db2' });
  });

  test('adds the include line to postgresql.conf only when it does not read conf.d', () => {
    const without = step(
      plan(pairFacts.freshMaster({ files: { postgresqlConf: 'port = 5432' } })),
      'include-chef-ha-conf',
    );
    assert.ok(without.kind === 'write');
    assert.equal(without.done, undefined);
    assert.equal(
      without.content,
      "port = 5432\ninclude_if_exists = 'conf.d/chef-ha.conf'\t# added by chef-ha-ctl\n",
    );
    const debian = step(
      plan(pairFacts.freshMaster({ files: { postgresqlConf: "include_dir = 'conf.d'\n" } })),
      'include-chef-ha-conf',
    );
    assert.equal(debian.done, 'postgresql.conf includes conf.d');
  });
});

describe('planSetupMaster on a second run', () => {
  test('finds every step done except write-join-bundle', () => {
    const p = plan(setUpMaster());
    assert.deepEqual(stepIds(p), FRESH_ORDER);
    assert.deepEqual(
      p.steps.filter((s) => !s.done).map((s) => s.id),
      ['write-join-bundle'],
    );
    assert.equal(p.summary, 'db1 is already set up as master; refreshing the join bundle');
  });

  test('says why each step is done', () => {
    const p = plan(setUpMaster());
    assert.deepEqual(Object.fromEntries(p.steps.map((s) => [s.id, s.done])), {
      'keep-original-recipe': 'the installed recipe is already the override',
      'keep-original-recipe-beside': 'the installed recipe is already the override',
      'record-original-recipe': 'recorded when the override was installed',
      'install-recipe-override': 'override is installed and current',
      'write-chef-server-rb': 'chef-server.rb block is current',
      'include-chef-ha-conf': 'postgresql.conf includes conf.d',
      'write-chef-ha-conf': 'chef-ha.conf is current',
      'write-pg-hba': 'pg_hba.conf block is current',
      'start-postgresql': 'PostgreSQL is running',
      'restart-postgresql': 'no setting needs a restart',
      'reload-postgresql': 'nothing to reload',
      'migrate-embedded-data': 'opscode_chef is already on the distribution cluster',
      reconfigure: 'recipe and attributes unchanged since the last reconfigure',
      'create-replication-secret': 'the secret exists',
      'create-replication-role': 'the role exists',
      'create-replication-slot': 'the slot exists',
      'write-join-bundle': undefined,
    });
  });

  test('re-installs an outdated override and then reconfigures', () => {
    const facts = setUpMaster(cfg, { recipe: recipe.override('# chef-ha recipe override\n# older\n') });
    const p = plan(facts);
    assert.deepEqual(
      p.steps.filter((s) => !s.done).map((s) => s.id),
      ['install-recipe-override', 'reconfigure', 'write-join-bundle'],
    );
  });

  test('reconfigures while the embedded PostgreSQL still runs', () => {
    const p = plan(setUpMaster(cfg, { embedded: { running: true } }));
    assert.equal(step(p, 'reconfigure').done, undefined);
  });

  test('re-creates the role (ALTER) when the secret was lost', () => {
    const p = plan(setUpMaster(cfg, { secretPresent: false }));
    assert.deepEqual(
      p.steps.filter((s) => !s.done).map((s) => s.id),
      ['create-replication-secret', 'create-replication-role', 'write-join-bundle'],
    );
    const role = step(p, 'create-replication-role');
    assert.ok(role.kind === 'action');
    assert.deepEqual(role.args, { exists: true });
  });
});

describe('planSetupMaster decides between start, restart and reload', () => {
  const table: readonly {
    readonly scenario: string;
    readonly facts: PairFacts;
    readonly start: string | undefined;
    readonly restart: string | undefined;
    readonly reload: string | undefined;
    readonly restartTitle?: string;
  }[] = [
    {
      scenario: 'starts a stopped PostgreSQL, which reads the new files',
      facts: pairFacts.freshMaster({ pg: localPgDown() }),
      start: undefined,
      restart: 'no setting needs a restart',
      reload: 'the start reads them',
    },
    {
      scenario: 'restarts for settings that need it and skips the reload',
      facts: pairFacts.freshMaster(),
      start: 'PostgreSQL is running',
      restart: undefined,
      reload: 'the restart reads them',
      restartTitle: 'restart PostgreSQL for wal_log_hints, listen_addresses',
    },
    {
      scenario: 'restarts for a setting changed on disk but pending a restart',
      facts: setUpMaster(cfg, {
        pg: { settings: { ...settingsInEffect(), wal_level: { setting: 'replica', pendingRestart: true } } },
      }),
      start: 'PostgreSQL is running',
      restart: undefined,
      reload: 'the restart reads them',
      restartTitle: 'restart PostgreSQL for wal_level',
    },
    {
      scenario: 'restarts when the server does not report a setting',
      facts: setUpMaster(cfg, { pg: { settings: {} } }),
      start: 'PostgreSQL is running',
      restart: undefined,
      reload: 'the restart reads them',
      restartTitle:
        'restart PostgreSQL for wal_level, max_wal_senders, max_replication_slots, wal_log_hints, hot_standby, listen_addresses',
    },
    {
      scenario: 'reloads when only pg_hba.conf changed',
      facts: setUpMaster(cfg, { files: { ...setUpMaster().local.files, pgHba: 'local all all peer\n' } }),
      start: 'PostgreSQL is running',
      restart: 'no setting needs a restart',
      reload: undefined,
    },
    {
      scenario: 'reloads when chef-ha.conf changed but no restart setting did',
      facts: setUpMaster(cfg, { files: { ...setUpMaster().local.files, chefHaConf: '# old\n' } }),
      start: 'PostgreSQL is running',
      restart: 'no setting needs a restart',
      reload: undefined,
    },
    {
      scenario: 'does neither when nothing changed',
      facts: setUpMaster(),
      start: 'PostgreSQL is running',
      restart: 'no setting needs a restart',
      reload: 'nothing to reload',
    },
    {
      scenario: 'reads "true" as "on" when comparing settings',
      facts: setUpMaster(cfg, {
        pg: { settings: { ...settingsInEffect(), hot_standby: { setting: 'true', pendingRestart: false } } },
      }),
      start: 'PostgreSQL is running',
      restart: 'no setting needs a restart',
      reload: 'nothing to reload',
    },
  ];
  for (const row of table) {
    test(row.scenario, () => {
      const p = plan(row.facts);
      assert.equal(step(p, 'start-postgresql').done, row.start);
      assert.equal(step(p, 'restart-postgresql').done, row.restart);
      assert.equal(step(p, 'reload-postgresql').done, row.reload);
      if (row.restartTitle) {
        assert.equal(step(p, 'restart-postgresql').title, row.restartTitle);
      }
    });
  }

  test('compares only the settings the version renders (9.2 has no slots or wal_log_hints)', () => {
    const c92 = config({ postgres: { version: '9.2' } });
    const s = (setting: string): { setting: string; pendingRestart: boolean } => ({
      setting,
      pendingRestart: false,
    });
    const facts = pairFacts.freshMaster({
      pg: {
        settings: {
          wal_level: s('hot_standby'),
          max_wal_senders: s('10'),
          hot_standby: s('on'),
          listen_addresses: s('localhost,10.0.0.1'),
        },
      },
    });
    assert.equal(step(plan(facts, c92), 'restart-postgresql').done, 'no setting needs a restart');
  });

  test('reads "false" as "off" when comparing settings', () => {
    const facts = setUpMaster(cfg, {
      pg: { settings: { ...settingsInEffect(), wal_log_hints: { setting: 'false', pendingRestart: false } } },
    });
    assert.equal(step(plan(facts), 'restart-postgresql').title, 'restart PostgreSQL for wal_log_hints');
  });

  test('uses pg_ctlcluster verbs with a fast stop for the restart', () => {
    const p = plan(pairFacts.freshMaster());
    const restart = step(p, 'restart-postgresql');
    assert.ok(restart.kind === 'run');
    assert.deepEqual(restart.argv, ['pg_ctlcluster', '15', 'main', 'restart', '-m', 'fast']);
    const reload = step(p, 'reload-postgresql');
    assert.ok(reload.kind === 'run');
    assert.deepEqual(reload.argv, ['pg_ctlcluster', '15', 'main', 'reload']);
  });
});

describe('cidrOf (the pg_hba address of the peer)', () => {
  test('makes a host CIDR of an IPv4 or IPv6 address and keeps a CIDR as it is', () => {
    assert.equal(cidrOf('10.0.0.2'), '10.0.0.2/32');
    assert.equal(cidrOf('fd00::2'), 'fd00::2/128');
    assert.equal(cidrOf('10.0.0.0/24'), '10.0.0.0/24');
  });
});

describe('planSetupMaster moves the Chef data', () => {
  test('migrates from the embedded PostgreSQL when only it holds the Chef database', () => {
    assert.equal(step(plan(pairFacts.freshMaster()), 'migrate-embedded-data').done, undefined);
  });

  test('does not migrate when the distribution cluster already has the database', () => {
    const facts = pairFacts.freshMaster({ pg: { database: { sizeBytes: 1 } } });
    assert.equal(
      step(plan(facts), 'migrate-embedded-data').done,
      'opscode_chef is already on the distribution cluster',
    );
  });

  test('does not migrate when the embedded PostgreSQL holds no Chef database', () => {
    const facts = pairFacts.freshMaster({ embedded: { running: false, hasChefDatabase: false } });
    assert.equal(
      step(plan(facts), 'migrate-embedded-data').done,
      'the embedded PostgreSQL holds no Chef data (the recipe creates the database)',
    );
    assert.equal(step(plan(facts), 'reconfigure').done, undefined);
  });
});

describe('planSetupMaster in synchronous mode', () => {
  const sync = config({ replication: { synchronous: true } });

  test('names the slave with FIRST 1 and a quoted identifier', () => {
    assert.equal(syncStandbyNamesFor('db2'), 'FIRST 1 ("chef_ha_db2")');
    assert.equal(syncStandbyNamesFor('db-2'), 'FIRST 1 ("chef_ha_db_2")');
  });

  test('waits with enable-synchronous until the slave streams (writes would hang)', () => {
    const p = plan(pairFacts.freshMaster(), sync);
    assert.deepEqual(stepIds(p).slice(-2), ['enable-synchronous', 'write-join-bundle']);
    assert.equal(
      step(p, 'enable-synchronous').done,
      'the slave is not streaming yet: setup-slave switches synchronous mode on once it streams (writes would hang until then)',
    );
    assert.match(p.summary, /^make db1 the synchronous streaming master for db2/);
  });

  test('enables synchronous replication once the slave streams', () => {
    const facts = setUpMaster(sync, {
      pg: { server: server.primary({ replication: [replicationRow({ application_name: 'chef_ha_db2' })] }) },
    });
    const enable = step(plan(facts, sync), 'enable-synchronous');
    assert.ok(enable.kind === 'sql');
    assert.equal(enable.done, undefined);
    assert.equal(
      enable.text,
      'ALTER SYSTEM SET synchronous_standby_names = \'FIRST 1 ("chef_ha_db2")\';\nSELECT pg_reload_conf();',
    );
  });

  test('does not enable it for a slave that is connected but still catching up', () => {
    const facts = setUpMaster(sync, {
      pg: {
        server: server.primary({
          replication: [replicationRow({ application_name: 'chef_ha_db2', state: 'catchup' })],
        }),
      },
    });
    assert.match(step(plan(facts, sync), 'enable-synchronous').done ?? '', /not streaming yet/);
  });

  test('finds synchronous mode already on', () => {
    const facts = setUpMaster(sync, {
      pg: { server: server.primary({ synchronousStandbyNames: 'FIRST 1 ("chef_ha_db2")' }) },
    });
    assert.equal(
      step(plan(facts, sync), 'enable-synchronous').done,
      'synchronous_standby_names already names the slave',
    );
  });

  test('treats a stopped PostgreSQL as a master whose slave does not stream yet', () => {
    const facts = pairFacts.freshMaster({ pg: localPgDown() });
    assert.match(step(plan(facts, sync), 'enable-synchronous').done ?? '', /not streaming yet/);
  });

  test('does not plan enable-synchronous in asynchronous mode', () => {
    assert.ok(!stepIds(plan(pairFacts.freshMaster())).includes('enable-synchronous'));
  });
});

describe('planSetupMaster refuses', () => {
  const table: readonly {
    readonly scenario: string;
    readonly facts: PairFacts;
    readonly config?: Config;
    readonly message: RegExp;
    readonly override?: string;
    readonly hint: RegExp;
  }[] = [
    {
      scenario: 'on a standby',
      facts: pairFacts.freshMaster({ pg: { server: server.standby() } }),
      message:
        /^db1 is a standby \(its PostgreSQL is in recovery\), so it cannot become the master; nothing was changed$/,
      hint: /failover/,
    },
    {
      scenario: 'on a fenced node',
      facts: pairFacts.freshMaster({ fenced: { at: '2026-01-15T11:00:00.000Z', reason: 'failover to db2' } }),
      message:
        /^db1 was fenced at 2026-01-15T11:00:00\.000Z \(failover to db2\); making it a master again could split the pair; nothing was changed$/,
      override: '--force',
      hint: /rejoin/,
    },
    {
      scenario: 'when the peer answers as a writable primary',
      facts: { ...pairFacts.freshMaster(), peer: peerFacts.primary() },
      message:
        /^the peer db2 answers as a writable primary; two masters would split the pair; nothing was changed$/,
      override: '--force',
      hint: /re-run with --force if you accept the risk/,
    },
    {
      scenario: 'an unknown (hand-edited) recipe',
      facts: pairFacts.freshMaster({ recipe: recipe.unknown() }),
      message:
        /postgresql\.rb is neither a chef-server 11 original nor chef-ha's override \(sha256 [0-9a-f]{64}\)/,
      hint: /originalRecipeSha256/,
    },
    {
      scenario: 'a missing recipe',
      facts: pairFacts.freshMaster({ recipe: recipe.missing() }),
      message:
        /^the chef-server recipe \/opt\/chef-server\/embedded\/cookbooks\/chef-server\/recipes\/postgresql\.rb does not exist/,
      hint: /omnibusDir/,
    },
    {
      scenario: 'missing PostgreSQL binaries, naming them',
      facts: pairFacts.freshMaster({ binaries: { pg_basebackup: false, pg_rewind: false } }),
      message:
        /^PostgreSQL 15 binaries are missing from \/usr\/lib\/postgresql\/15\/bin: pg_basebackup, pg_rewind; nothing was changed$/,
      hint: /apt-get install postgresql-15/,
    },
    {
      scenario: 'a missing chef-server-ctl',
      facts: pairFacts.freshMaster({ ctlExecutable: false }),
      message: /^chef-server-ctl not found or not executable at \/opt\/chef-server\/bin\/chef-server-ctl/,
      hint: /chefServer\.ctl/,
    },
    {
      scenario: 'an unknown PostgreSQL OS user',
      facts: pairFacts.freshMaster({ osUserKnown: false }),
      message: /^the OS user "postgres" \(postgres\.osUser\) does not exist/,
      hint: /postgres\.osUser/,
    },
  ];
  for (const row of table) {
    test(`refuses ${row.scenario}`, () => {
      const error = refusal(() => plan(row.facts, row.config ?? cfg));
      assert.match(error.message, row.message);
      assert.equal(error.override, row.override);
      assert.match(error.hint ?? '', row.hint);
    });
  }

  test('checks the environment before the roles (missing binaries win over a standby)', () => {
    const error = refusal(() =>
      plan(pairFacts.freshMaster({ binaries: { psql: false }, pg: { server: server.standby() } })),
    );
    assert.match(error.message, /binaries are missing/);
  });

  test('goes on with --force on a fenced node and beside a writable peer', () => {
    const fenced = pairFacts.freshMaster({ fenced: { at: 'x', reason: 'y' } });
    assert.deepEqual(stepIds(plan(fenced, cfg, true)), FRESH_ORDER);
    const twoPrimaries = { ...pairFacts.freshMaster(), peer: peerFacts.primary() };
    assert.deepEqual(stepIds(plan(twoPrimaries, cfg, true)), FRESH_ORDER);
  });

  test('accepts a peer that answers as a standby', () => {
    const facts = { ...pairFacts.freshMaster(), peer: peerFacts.standby() };
    assert.deepEqual(stepIds(plan(facts)), FRESH_ORDER);
  });

  test('does not refuse --force on a standby', () => {
    const error = refusal(() => plan(pairFacts.freshMaster({ pg: { server: server.standby() } }), cfg, true));
    assert.equal(error.override, undefined);
  });
});
