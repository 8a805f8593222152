import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PairFacts } from '../../src/core/facts.js';
import type { Step } from '../../src/core/plan.js';
import { stepIds } from '../../src/core/plan.js';
import type { ControlData } from '../../src/pg/controldata.js';
import {
  decideRejoin,
  planRejoin,
  type RejoinFacts,
  type RejoinOptions,
} from '../../src/commands/rejoin/plan.js';
import { HBA_BEGIN, HBA_END, desiredHba } from '../../src/commands/common.js';
import { config as buildConfig } from '../fakes/config.js';
import {
  GATHERED_AT,
  OTHER_SYSTEM_ID,
  SYSTEM_ID,
  localFacts,
  peerFacts,
  recipe,
  replicationRow,
  server,
  walReceiverRow,
  type LocalOverrides,
} from '../fakes/facts.js';

// rejoin runs on db1, the old master; db2 was promoted by a failover (timeline 2, split at 0/3000060).
const cfg = buildConfig();
const cfgSync = buildConfig({ replication: { synchronous: true } });
const FENCED = { at: '2026-01-15T11:00:00.000Z', reason: 'failover to db2' };
const HISTORY = '1\t0/3000060\tno recovery target specified\n';
const NO_OPTIONS: RejoinOptions = { basebackup: false, backupDataDir: false };

function control(overrides: Partial<ControlData> = {}): ControlData {
  return {
    state: 'in production',
    systemIdentifier: SYSTEM_ID,
    checkpointLsn: '0/3000028',
    redoLsn: '0/3000028',
    timeline: 1,
    walLogHints: true,
    checksums: false,
    segmentBytes: 16 * 1024 * 1024,
    ...overrides,
  };
}

/** db1 after a failover: fenced, its PostgreSQL killed (crashed) or stopped; db2 the new primary. */
function oldMaster(
  options: {
    readonly local?: LocalOverrides;
    readonly control?: ControlData | undefined;
    readonly peer?: PairFacts['peer'];
    readonly history?: string;
    readonly unfenced?: boolean;
  } = {},
): RejoinFacts {
  return {
    pair: {
      local: localFacts({
        recipe: recipe.override(),
        secretPresent: true,
        ...(options.unfenced ? {} : { fenced: FENCED }),
        embedded: { running: false, hasChefDatabase: false },
        dataDir: { standbySignal: true },
        ...options.local,
        pg: { running: false, ...options.local?.pg },
      }),
      peer: options.peer ?? {
        ...peerFacts.primary({ timeline: 2 }),
        slots: [{ slot_name: 'chef_ha_db1', active: false }],
      },
      gatheredAt: GATHERED_AT,
    },
    ...('control' in options
      ? options.control
        ? { control: options.control }
        : {}
      : { control: control() }),
    peerHistory: options.history ?? HISTORY,
    peerCanCheckpoint: true,
    passfileCurrent: true,
  };
}

const rendered = {
  recipeOverride: '# chef-ha recipe override\n',
  chefHaConf: '# chef-ha.conf standby\n',
  hbaBlock: `${HBA_BEGIN}\nhost replication chef_ha_replication 10.0.0.2/32 scram-sha-256\n${HBA_END}\n`,
  standbyFile: { name: 'standby.signal', content: '# standby\n' },
};

function plan(facts: RejoinFacts, config = cfg, options = NO_OPTIONS) {
  const decision = decideRejoin(facts, config, options);
  assert.equal(decision.action, 'rejoin', JSON.stringify(decision));
  return planRejoin({
    facts,
    decision: decision,
    config,
    options,
    rendered,
    backupDir: '/var/opt/chef-ha/backups/2026-01-15T120000Z',
  });
}

function todo(steps: readonly Step[]): string[] {
  return steps.filter((s) => !s.done).map((s) => s.id);
}

describe('decideRejoin refuses', () => {
  const table: readonly {
    readonly scenario: string;
    readonly facts: RejoinFacts;
    readonly reason: RegExp;
  }[] = [
    {
      scenario: 'on the writable primary of a healthy pair (the peer is its standby)',
      facts: {
        ...oldMaster(),
        pair: {
          local: localFacts({
            secretPresent: true,
            pg: {
              server: server.primary({ replication: [replicationRow({ application_name: 'chef_ha_db2' })] }),
            },
          }),
          peer: peerFacts.standby(),
          gatheredAt: GATHERED_AT,
        },
      },
      reason: /db1 is the pair's writable primary and db2 is not a newer primary/,
    },
    {
      scenario: 'when the peer is a standby (nothing was promoted)',
      facts: oldMaster({ peer: peerFacts.standby() }),
      reason: /db2 is not a primary \(it is in recovery/,
    },
    {
      scenario: 'when the new primary does not answer',
      facts: oldMaster({ peer: peerFacts.unreachable('connect ECONNREFUSED 10.0.0.2:5432') }),
      reason: /cannot reach db2's PostgreSQL .*ECONNREFUSED/,
    },
    {
      scenario: 'when the peer is on an older timeline',
      facts: oldMaster({ control: control({ timeline: 3 }) }),
      reason: /db2 is on an older timeline \(2\) than db1 \(3\)/,
    },
    {
      scenario: 'when the peer is a fenced (read-only) primary',
      facts: oldMaster({ peer: peerFacts.primary({ timeline: 2, readOnlyDefault: true }) }),
      reason: /db2 is a read-only \(fenced\) primary/,
    },
    {
      scenario: 'when the clusters differ',
      facts: oldMaster({ control: control({ systemIdentifier: OTHER_SYSTEM_ID }) }),
      reason: /is not db2's/,
    },
    {
      scenario: 'on a node that was never set up',
      facts: oldMaster({ local: { secretPresent: false } }),
      reason: /no replication secret/,
    },
  ];
  for (const row of table) {
    test(row.scenario, () => {
      const d = decideRejoin(row.facts, cfg, NO_OPTIONS);
      assert.equal(d.action, 'refuse');
      assert.match((d as { reason: string }).reason, row.reason);
      assert.ok((d as { hint: string }).hint.length > 0, 'the refusal names the fix');
    });
  }
});

describe('planRejoin', () => {
  test('old master fenced after a failover: checkpoint on the new primary, save the diverged WAL, pg_rewind, standby settings, start, stream', () => {
    const p = plan(oldMaster());
    assert.deepEqual(todo(p.steps), [
      'checkpoint-new-primary',
      'backup-auto-conf',
      'save-diverged-wal',
      'rewind',
      'strip-copied-settings',
      'include-chef-ha-conf',
      'write-chef-ha-conf',
      'write-pg-hba',
      'write-standby-signal',
      'clear-fence',
      'start-postgresql',
      'wait-streaming',
      'record-rejoin',
    ]);
    const ids = stepIds(p);
    assert.ok(ids.indexOf('checkpoint-new-primary') < ids.indexOf('rewind'));
    assert.ok(ids.indexOf('save-diverged-wal') < ids.indexOf('rewind'), 'the WAL is saved before the rewind');
    const save = p.steps.find((s) => s.id === 'save-diverged-wal');
    assert.equal(save?.kind === 'action' && save.args['divergedAt'], '0/3000060');
    assert.match(p.summary, /by pg_rewind \(timelines split at 0\/3000060\)/);
    const stop = p.steps.find((s) => s.id === 'stop-postgresql');
    assert.equal(stop?.done, 'PostgreSQL is stopped');
  });

  test('an old master still running read-only after the SQL fence is stopped before the rewind', () => {
    const p = plan(
      oldMaster({ local: { pg: { running: true, server: server.primary({ readOnlyDefault: true }) } } }),
    );
    const ids = todo(p.steps);
    assert.ok(ids.includes('stop-postgresql'));
    assert.ok(ids.indexOf('stop-postgresql') < ids.indexOf('rewind'));
  });

  test('an unfenced old master that still takes writes is rejoined when the peer is a newer primary', () => {
    const d = decideRejoin(
      oldMaster({ unfenced: true, local: { pg: { running: true, server: server.primary() } } }),
      cfg,
      NO_OPTIONS,
    );
    assert.equal(d.action, 'rejoin');
    assert.equal((d as { wasWritable: boolean }).wasWritable, true);
  });

  test('the new primary without pg_checkpoint: rejoin waits for its own checkpoint instead', () => {
    const p = plan({ ...oldMaster(), peerCanCheckpoint: false });
    const step = p.steps.find((s) => s.id === 'checkpoint-new-primary');
    assert.equal(step?.kind, 'wait');
  });

  test('rewind impossible (no wal_log_hints, no checksums): a fresh base backup instead', () => {
    const facts = oldMaster({ control: control({ walLogHints: false, checksums: false }) });
    const d = decideRejoin(facts, cfg, NO_OPTIONS);
    assert.equal((d as { method: string }).method, 'basebackup');
    const p = plan(facts);
    const rewind = p.steps.find((s) => s.id === 'rewind');
    assert.ok(rewind?.kind === 'action' && typeof rewind.args['basebackupReason'] === 'string');
    assert.match(rewind.title, /fresh base backup/);
    assert.equal(
      p.steps.find((s) => s.id === 'checkpoint-new-primary')?.done,
      'a base backup makes its own checkpoint',
    );
  });

  test('rewind impossible (no readable cluster in the data directory): a fresh base backup', () => {
    const d = decideRejoin(oldMaster({ control: undefined }), cfg, NO_OPTIONS);
    assert.equal(d.action, 'rejoin');
    assert.equal((d as { method: string }).method, 'basebackup');
    assert.match((d as { basebackupReason: string }).basebackupReason, /no readable cluster/);
  });

  test('--basebackup asks for a fresh base backup even when rewind would work', () => {
    const d = decideRejoin(oldMaster(), cfg, { basebackup: true, backupDataDir: false });
    assert.equal((d as { method: string }).method, 'basebackup');
  });

  test('--backup-data-dir copies the whole data directory before the rewind', () => {
    const p = plan(oldMaster(), cfg, { basebackup: false, backupDataDir: true });
    const ids = todo(p.steps);
    assert.ok(ids.includes('backup-data-dir'));
    assert.ok(ids.indexOf('backup-data-dir') < ids.indexOf('rewind'));
    assert.ok(plan(oldMaster()).steps.find((s) => s.id === 'backup-data-dir')?.done);
  });

  test('after a clean shutdown before the split (a switchover), nothing is rewound', () => {
    const facts = oldMaster({ control: control({ state: 'shut down', checkpointLsn: '0/3000028' }) });
    const d = decideRejoin(facts, cfg, NO_OPTIONS);
    assert.equal((d as { method: string }).method, 'none');
    const p = plan(facts);
    assert.match(
      p.steps.find((s) => s.id === 'rewind')?.done ?? '',
      /shut down cleanly at 0\/3000028, before the timelines split at 0\/3000060/,
    );
    assert.ok(p.steps.find((s) => s.id === 'checkpoint-new-primary')?.done);
    assert.ok(p.steps.find((s) => s.id === 'save-diverged-wal')?.done);
  });

  test('a clean shutdown after the split still needs the rewind', () => {
    const facts = oldMaster({ control: control({ state: 'shut down', checkpointLsn: '0/3000100' }) });
    assert.equal((decideRejoin(facts, cfg, NO_OPTIONS) as { method: string }).method, 'rewind');
  });

  test('already streaming from the new primary: every step is done (run twice)', () => {
    const facts = oldMaster({
      unfenced: true,
      local: {
        files: {
          chefHaConf: rendered.chefHaConf,
          postgresqlConf: "include_dir = 'conf.d'\n",
          pgHba: desiredHba(undefined, rendered.hbaBlock),
        },
        pg: {
          running: true,
          server: server.standby({ timeline: 2, walReceiver: walReceiverRow({ received_tli: 2 }) }),
        },
      },
      peer: {
        ...peerFacts.primary({
          timeline: 2,
          replication: [replicationRow({ application_name: 'chef_ha_db1' })],
        }),
        slots: [{ slot_name: 'chef_ha_db1', active: true }],
      },
    });
    const p = plan(facts);
    assert.deepEqual(
      todo(p.steps).filter((id) => !id.startsWith('wait-')),
      [],
    );
    assert.match(p.summary, /already the streaming standby of db2/);
    assert.equal(p.steps.find((s) => s.id === 'rewind')?.done, 'already streaming from db2');
  });

  test('synchronous mode: the rejoined node becomes the new primary’s synchronous standby', () => {
    const p = plan(oldMaster(), cfgSync);
    const ids = stepIds(p);
    assert.ok(ids.includes('enable-synchronous'));
    assert.ok(ids.indexOf('wait-streaming') < ids.indexOf('enable-synchronous'));
    assert.ok(ids.includes('wait-sync'));
    const enable = p.steps.find((s) => s.id === 'enable-synchronous');
    assert.ok(enable?.kind === 'sql' && enable.on === 'peer');
    assert.match(enable.text, /synchronous_standby_names = 'FIRST 1 \("chef_ha_db1"\)'/);
  });
});
