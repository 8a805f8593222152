// Regression tests for bugs found in review (B1-B9): each failed before its fix.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/core/config.js';
import { ConfigError } from '../../src/core/errors.js';
import { decideFailover } from '../../src/commands/failover/decide.js';
import { planSetupMaster } from '../../src/commands/setup-master/plan.js';
import { planSetupSlave, type SetupSlaveInput } from '../../src/commands/setup-slave/plan.js';
import { desiredChefServerRb, desiredHba } from '../../src/commands/common.js';
import { featuresFor, renderServerSettings } from '../../src/pg/version.js';
import { serverStateQuery, replicationQuery } from '../../src/pg/queries.js';
import { BUNDLE_FORMAT } from '../../src/chef/bundle.js';
import { config, standbyConfig, rawConfig, GiB, MiB } from '../fakes/config.js';
import {
  SYSTEM_ID,
  defaultSettings,
  localPgDown,
  pairFacts,
  recipe,
  replicationRow,
  server,
} from '../fakes/facts.js';
import type { Config } from '../../src/core/config.js';
import type { PairFacts } from '../../src/core/facts.js';

test('B1 config: peer.name equal to node.name is reported together with the other problems', () => {
  try {
    parseConfig({ ...rawConfig({ peer: { name: 'db1' } }), postgres: { port: 0 } });
    assert.fail('expected ConfigError');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual([...error.problems].sort(), [
      'peer.name: must differ from node.name ("db1")',
      'postgres.port: Too small: expected number to be >=1',
    ]);
  }
});

test('B2 decide: a forced promotion against a writable master does not claim the master is not writable', () => {
  const d = decideFailover(pairFacts.primaryWithStreamingStandby({ lagBytes: 4 * MiB }), standbyConfig(), {
    force: true,
  });
  assert.ok(d.action === 'promote');
  assert.doesNotMatch(d.reason, /^db1 is not a writable primary$/);
});

function masterRendered() {
  return {
    recipeOverride: '# chef-ha recipe override\n',
    chefHaConf: '# conf\n',
    hbaBlock: '# BEGIN chef-ha (managed by chef-ha-ctl; do not edit inside this block)\n# END chef-ha\n',
  } as const;
}
function settingsFor(c: Config): string[] {
  return renderServerSettings({
    version: c.postgres.version,
    nodeName: c.node.name,
    listenAddresses: `localhost,${c.node.address}`,
    walKeepMb: 256,
  });
}

test('B3 setup-master on PostgreSQL 9.2 plans no replication slot (slots need 9.4)', () => {
  const c = config({ postgres: { version: '9.2' } });
  assert.equal(featuresFor('9.2').replicationSlots, false);
  const p = planSetupMaster({
    facts: pairFacts.freshMaster(),
    config: c,
    options: { force: false },
    rendered: masterRendered(),
    settingsLines: settingsFor(c),
    backupDir: '/b',
  });
  const slot = p.steps.find((s) => s.id === 'create-replication-slot');
  assert.ok(
    slot === undefined || slot.done !== undefined,
    'create-replication-slot calls pg_create_physical_replication_slot, which 9.2 lacks',
  );
});

test('B4 setup-master on PostgreSQL 9.6: a rerun with settings in effect needs no restart', () => {
  const c = config({ postgres: { version: '9.6' } });
  const r = masterRendered();
  const s = (setting: string) => ({ setting, pendingRestart: false });
  // What a 9.6 server reports once chef-ha.conf (wal_level = hot_standby) is in effect: 9.6 maps hot_standby to replica.
  const facts: PairFacts = pairFacts.freshMaster({
    pg: {
      settings: {
        ...defaultSettings(),
        wal_level: s('replica'),
        wal_log_hints: s('on'),
        listen_addresses: s('localhost,10.0.0.1'),
      },
    },
  });
  const p = planSetupMaster({
    facts,
    config: c,
    options: { force: false },
    rendered: r,
    settingsLines: settingsFor(c),
    backupDir: '/b',
  });
  const restart = p.steps.find((x) => x.id === 'restart-postgresql');
  assert.equal(restart?.done, 'no setting needs a restart', restart?.title);
});

const manifest = {
  format: BUNDLE_FORMAT,
  createdAt: 'x',
  chefHaVersion: '0',
  master: { name: 'db1', address: '10.0.0.1', port: 5432 },
  slave: { name: 'db2' },
  postgres: { major: '15', versionNum: 150008, systemIdentifier: SYSTEM_ID },
  replication: {
    mode: 'streaming',
    synchronous: false,
    user: 'chef_ha_replication',
    slotName: 'chef_ha_db2',
  },
  etc: [],
} as const;
const rendered = {
  recipeOverride: '# chef-ha recipe override\n',
  chefHaConf: '# conf\n',
  hbaBlock: '# BEGIN chef-ha (managed by chef-ha-ctl; do not edit inside this block)\n# END chef-ha\n',
  standbyFile: { name: 'standby.signal', content: '#\n' },
};
function slaveInput(facts: PairFacts, extra: Partial<SetupSlaveInput> = {}): SetupSlaveInput {
  return {
    facts,
    config: standbyConfig(),
    options: { force: false, waitReindex: false },
    rendered,
    manifest,
    bundleDir: '/in',
    bundleChefServerRb: 'x\n',
    etcMatches: false,
    secretMatches: false,
    passfileCurrent: false,
    neededBytes: GiB,
    backupDir: '/b',
    ...extra,
  };
}

test('B5 setup-slave on a stopped node: the PostgreSQL started for reconfigure is stopped before its data directory is moved', () => {
  const p = planSetupSlave(slaveInput(pairFacts.freshSlave({ pg: localPgDown() })));
  assert.equal(p.steps.find((s) => s.id === 'start-postgresql-for-reconfigure')?.done, undefined);
  assert.equal(
    p.steps.find((s) => s.id === 'stop-postgresql')?.done,
    undefined,
    'stop-postgresql is skipped as "PostgreSQL is stopped"',
  );
});

test('B6 setup-slave rerun on a running standby with a changed chef-ha.conf restarts it without a "start" of the running cluster', () => {
  const c = standbyConfig();
  const facts = pairFacts.freshSlave(
    {
      recipe: recipe.override(rendered.recipeOverride),
      secretPresent: true,
      embedded: { running: false, hasChefDatabase: false },
      files: {
        chefServerRb: desiredChefServerRb('x\n', c),
        chefHaConf: '# old\n',
        pgHba: desiredHba('', rendered.hbaBlock),
        postgresqlConf: "include_dir = 'conf.d'\n",
      },
      pg: { server: server.standby() },
    },
    { replication: [replicationRow({ application_name: 'chef_ha_db2' })] },
  );
  const p = planSetupSlave(
    slaveInput(facts, { etcMatches: true, secretMatches: true, passfileCurrent: true }),
  );
  assert.ok(p.steps.some((s) => s.id === 'restart-postgresql' && !s.done));
  assert.notEqual(
    p.steps.find((s) => s.id === 'start-postgresql')?.done,
    undefined,
    'pg_ctlcluster start on a running cluster exits 2',
  );
});

test('B7 setup-slave names the Chef data it refuses to replace', () => {
  const facts = pairFacts.freshSlave({
    pg: { chefData: { nodes: 0 } },
    embedded: { chefData: { nodes: 5 } },
  });
  assert.throws(() => planSetupSlave(slaveInput(facts)), /bootstrap rows \(nodes: 5\)/);
});

test('B8 setup-slave in synchronous mode on PostgreSQL 12 does not ALTER SYSTEM on the master as the (non-superuser) replication role', () => {
  const c = standbyConfig({ replication: { synchronous: true }, postgres: { version: '12' } });
  assert.equal(featuresFor('12').parameterGrants, false);
  const p = planSetupSlave(
    slaveInput(pairFacts.freshSlave({}, { major: '12', versionNum: 120018 }), { config: c }),
  );
  const peerAlter = p.steps.filter(
    (s) => s.kind === 'sql' && s.on === 'peer' && /ALTER SYSTEM/.test(s.text) && !s.done,
  );
  assert.deepEqual(
    peerAlter.map((s) => s.id),
    [],
  );
});

test('B9 facts queries work on PostgreSQL 9.2 (no pg_control_* functions before 9.6, no replay_lag before 10)', () => {
  const f = featuresFor('9.2');
  assert.doesNotMatch(serverStateQuery(f), /pg_control_checkpoint|pg_control_system/);
  assert.doesNotMatch(replicationQuery(f), /FROM replay_lag/);
});
