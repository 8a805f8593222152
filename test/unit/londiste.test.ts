import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RefusedError } from '../../src/core/errors.js';
import type { PairFacts } from '../../src/core/facts.js';
import { type Plan, stepIds } from '../../src/core/plan.js';
import type { BundleManifest } from '../../src/chef/bundle.js';
import type { LondisteFacts, NodeState } from '../../src/londiste/facts.js';
import { planSetupMasterLondiste } from '../../src/commands/setup-master/londiste.js';
import { planSetupSlaveLondiste } from '../../src/commands/setup-slave/londiste.js';
import { planFailoverLondiste } from '../../src/commands/failover/londiste.js';
import { summarizeLondisteStatus } from '../../src/commands/status/londiste.js';
import { executeName, planExecuteSql } from '../../src/commands/execute-sql/index.js';
import { config, standbyConfig } from '../fakes/config.js';
import { localPgDown, pairFacts, peerFacts, server } from '../fakes/facts.js';
import { planRejoinLondiste } from '../../src/commands/rejoin/londiste.js';
import { diffHashes } from '../../src/londiste/lost-rows.js';
import { decideSwitchoverLondiste, planSwitchoverLondiste } from '../../src/commands/switchover/londiste.js';

const cfg = config({ replication: { mode: 'londiste' } });
const slaveCfg = standbyConfig({ replication: { mode: 'londiste' } });
const TABLES = ['clients', 'nodes', 'osc_users'];

function node(overrides: Partial<NodeState> = {}): NodeState {
  return {
    reachable: true,
    extensions: false,
    tables: [],
    chefTables: TABLES.map((name) => ({ name, exists: true, hasPrimaryKey: true, rows: 2 })),
    grantsDone: false,
    members: [],
    consumers: [],
    ...overrides,
  };
}

function root(overrides: Partial<NodeState> = {}): NodeState {
  return node({
    extensions: true,
    nodeType: 'root',
    nodeName: 'db1',
    tables: TABLES.map((t) => ({ table: `public.${t}`, local: true, state: 'ok' })),
    grantsDone: true,
    queue: { maxLagMs: 100, idlePeriodMs: 1000, disableInsert: false, lastTickId: 10, lastTickAgeS: 0.1 },
    ...overrides,
  });
}

function branch(overrides: Partial<NodeState> = {}): NodeState {
  return root({ nodeType: 'branch', nodeName: 'db2', provider: 'db1', ...overrides });
}

const DOWN: NodeState = { ...node(), reachable: false, error: 'connect ECONNREFUSED', chefTables: [] };

function lf(overrides: Partial<LondisteFacts> = {}): LondisteFacts {
  return {
    missingPackages: [],
    systemPgqd: 'no',
    local: node(),
    peer: DOWN,
    daemons: {},
    files: {},
    ...overrides,
  };
}

const RENDERED = { recipeOverride: '# override\n', chefHaConf: '# conf\n', hbaBlock: '# hba\n' };
const LONDISTE_FILES = { pgqdIni: '[pgqd]\n', workerIni: '[londiste]\n' };

function planMaster(facts: LondisteFacts, opts: { install?: boolean; force?: boolean } = {}): Plan {
  return planSetupMasterLondiste({
    facts: pairFacts.freshMaster(),
    config: cfg,
    options: { force: opts.force ?? false },
    rendered: RENDERED,
    settingsLines: [],
    backupDir: '/var/opt/chef-ha/backups/x',
    londiste: facts,
    renderedLondiste: LONDISTE_FILES,
    installPackages: opts.install ?? false,
    passfileCurrent: false,
  });
}

const MANIFEST = {
  master: { name: 'db1', address: '10.0.0.1', port: 5432 },
  etc: [],
} as unknown as BundleManifest;

function planSlave(facts: LondisteFacts, pair: PairFacts = pairFacts.freshSlave()): Plan {
  return planSetupSlaveLondiste({
    facts: pair,
    config: slaveCfg,
    options: { force: false },
    rendered: RENDERED,
    settingsLines: [],
    backupDir: '/var/opt/chef-ha/backups/x',
    londiste: facts,
    renderedLondiste: LONDISTE_FILES,
    installPackages: false,
    manifest: MANIFEST,
    bundleDir: '/tmp/b',
    bundleChefServerRb: undefined,
    etcMatches: false,
    secretMatches: false,
    passfileCurrent: false,
  });
}

function refusal(fn: () => unknown): RefusedError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof RefusedError, String(error));
    return error;
  }
  assert.fail('expected a refusal');
}

describe('planSetupMasterLondiste', () => {
  test('plans create-root, grants, tuned queue, daemons and add-table after the common master steps', () => {
    const ids = stepIds(planMaster(lf()));
    const londiste = ids.slice(ids.indexOf('write-passfile'));
    assert.deepEqual(londiste, [
      'write-passfile',
      'install-londiste-packages',
      'disable-system-pgqd',
      'prepare-londiste-dir',
      'write-pgqd-ini',
      'write-londiste-ini',
      'create-root',
      'grant-londiste-roles',
      'set-queue-ticker',
      'start-londiste-daemons',
      'add-tables',
      'write-join-bundle',
    ]);
    assert.ok(!ids.includes('create-replication-slot'), 'no slot in londiste mode');
  });

  test('refuses missing packages without --install-packages, naming the exact apt command', () => {
    const e = refusal(() => planMaster(lf({ missingPackages: ['pgqd', 'postgresql-15-pgq3'] })));
    assert.match(e.message, /not installed: pgqd, postgresql-15-pgq3; nothing was changed/);
    assert.equal(e.override, '--install-packages');
    assert.match(e.hint ?? '', /apt-get install -y --no-install-recommends pgqd postgresql-15-pgq3/);
  });

  test('installs missing packages with --install-packages', () => {
    const p = planMaster(lf({ missingPackages: ['pgqd'] }), { install: true });
    const s = p.steps.find((x) => x.id === 'install-londiste-packages');
    assert.equal(s?.done, undefined);
    assert.ok(s?.kind === 'run' && s.argv.join(' ').endsWith('pgqd'));
  });

  test('disables a Debian pgqd.service that would tick the cluster twice', () => {
    const p = planMaster(lf({ systemPgqd: 'enabled' }));
    const s = p.steps.find((x) => x.id === 'disable-system-pgqd');
    assert.equal(s?.done, undefined);
    assert.ok(s?.kind === 'run' && s.argv.join(' ') === 'systemctl disable --now pgqd.service');
  });

  test('finds every Londiste step done on a root that is set up', () => {
    const p = planMaster(
      lf({
        local: root(),
        daemons: { supervisorPid: 1, pgqdPid: 2, workerPid: 3 },
        files: { pgqdIni: LONDISTE_FILES.pgqdIni, workerIni: LONDISTE_FILES.workerIni },
      }),
    );
    const todo = p.steps.filter((s) => !s.done).map((s) => s.id);
    assert.deepEqual(
      todo.filter(
        (id) =>
          id !== 'write-passfile' && !p.steps.slice(0, 20).some((s) => s.id === id && id !== 'create-root'),
      ),
      ['write-join-bundle'],
    );
  });

  test('refuses a node that is a branch of the queue', () => {
    const e = refusal(() => planMaster(lf({ local: branch() })));
    assert.match(e.message, /is a Londiste branch of queue chef_ha \(provider db1\), not its root/);
  });

  test('refuses when the peer is already the root, unless --force', () => {
    const e = refusal(() => planMaster(lf({ peer: root() })));
    assert.equal(e.override, '--force');
    assert.ok(planMaster(lf({ peer: root() }), { force: true }));
  });

  test('refuses a replicated table without a primary key', () => {
    const local = node({
      chefTables: [
        { name: 'clients', exists: true, hasPrimaryKey: false, rows: 0 },
        { name: 'nodes', exists: true, hasPrimaryKey: true, rows: 0 },
        { name: 'osc_users', exists: true, hasPrimaryKey: true, rows: 0 },
      ],
    });
    const e = refusal(() => planMaster(lf({ local })));
    assert.match(
      e.message,
      /only tables with a primary key; on db1 these have none: clients; nothing was changed/,
    );
  });
});

describe('planSetupSlaveLondiste', () => {
  test('plans a branch: dump, empty, create-branch, add-table, then the daemons (all copies at once), wait, reindex', () => {
    const ids = stepIds(planSlave(lf({ peer: root() })));
    assert.deepEqual(ids.slice(ids.indexOf('backup-replicated-tables')), [
      'backup-replicated-tables',
      'empty-replicated-tables',
      'create-branch',
      'grant-londiste-roles',
      'add-tables',
      'start-londiste-daemons',
      'wait-tables-ok',
      'reindex',
    ]);
    const cb = planSlave(lf({ peer: root() })).steps.find((s) => s.id === 'create-branch');
    assert.ok(cb?.kind === 'run');
    // The ini's db is this node's own database; the master's address appears only in --provider.
    assert.match(
      cb.argv.join(' '),
      /create-branch db2 dbname=opscode_chef host=10\.0\.0\.2 .* --provider=dbname=opscode_chef host=10\.0\.0\.1 /,
    );
  });

  test('refuses when the master is not the root of the configured queue (a wrong queue name)', () => {
    const e = refusal(() => planSlave(lf({ peer: node({ extensions: true }) })));
    assert.match(
      e.message,
      /db1 is not the root of Londiste queue "chef_ha" \(no node of that queue there\)/,
    );
    assert.match(e.hint ?? '', /londiste\.queue must be the same on both nodes/);
  });

  test('refuses when the master cannot be reached', () => {
    const e = refusal(() => planSlave(lf({ peer: DOWN })));
    assert.match(e.message, /cannot reach the Chef database on the master db1/);
  });

  test("refuses when this node's PostgreSQL is the master's own cluster", () => {
    const pair = pairFacts.freshSlave(
      { pg: { server: server.primary({ systemIdentifier: '42' }) } },
      { systemIdentifier: '42' },
    );
    const e = refusal(() => planSlave(lf({ peer: root() }), pair));
    assert.match(e.message, /is the master's own cluster/);
  });

  test('refuses a table missing on the slave', () => {
    const local = node({ chefTables: [{ name: 'clients', exists: false, hasPrimaryKey: false, rows: 0 }] });
    const e = refusal(() => planSlave(lf({ peer: root(), local })));
    assert.match(e.message, /do not exist in opscode_chef on db2: clients/);
  });
});

describe('planFailoverLondiste', () => {
  const pairDead: PairFacts = { ...pairFacts.freshSlave(), peer: peerFacts.unreachable() };

  test('refuses while the master is a healthy root, suggesting switchover', () => {
    const e = refusal(() =>
      planFailoverLondiste(pairDead, lf({ local: branch(), peer: root() }), slaveCfg, { force: false }),
    );
    assert.equal(e.override, '--force');
    assert.match(e.hint ?? '', /switchover/);
  });

  test('takes over a dead root, re-applies the queue settings and fences the host over ssh after', () => {
    const withSsh = standbyConfig({
      replication: { mode: 'londiste' },
      peer: { name: 'db1', address: '10.0.0.1', ssh: { target: 'root@10.0.0.1' } },
    });
    const p = planFailoverLondiste(pairDead, lf({ local: branch(), peer: DOWN }), withSsh, { force: false });
    assert.deepEqual(
      p.steps.filter((s) => !s.done).map((s) => s.id),
      [
        'takeover',
        'reapply-queue-ticker',
        'fence-old-master-host',
        'record-failover',
        'restart-chef-services',
        'reindex',
      ],
    );
    const t = p.steps.find((s) => s.id === 'takeover');
    assert.ok(t?.kind === 'run' && t.argv.slice(-3).join(' ') === 'takeover db1 --dead-root');
  });

  test('without peer.ssh says the old master must not be started before rejoin', () => {
    const p = planFailoverLondiste(pairDead, lf({ local: branch(), peer: DOWN }), slaveCfg, { force: false });
    assert.match(
      p.steps.find((s) => s.id === 'fence-old-master-host')?.done ?? '',
      /do not start the old master/,
    );
  });

  test('refuses a node that is not a branch', () => {
    const e = refusal(() => planFailoverLondiste(pairDead, lf({ local: node() }), slaveCfg, { force: true }));
    assert.match(e.message, /only a branch can take over/);
  });
});

describe('summarizeLondisteStatus', () => {
  const daemons = { supervisorPid: 1, pgqdPid: 2, workerPid: 3 };
  test('is healthy with one root and a branch whose tables are ok', () => {
    const s = summarizeLondisteStatus(cfg, root(), branch(), daemons);
    assert.equal(s.exitCode, 0);
  });
  test('is degraded while the peer is down (read from SQL, no crash)', () => {
    const s = summarizeLondisteStatus(cfg, root(), DOWN, daemons);
    assert.equal(s.exitCode, 8);
    assert.match(s.problems.join('\n'), /db2 does not answer/);
  });
  test('is broken with no root', () => {
    assert.equal(summarizeLondisteStatus(cfg, branch(), DOWN, daemons).exitCode, 9);
  });
  test('is broken with two roots', () => {
    assert.equal(summarizeLondisteStatus(cfg, root(), root(), daemons).exitCode, 9);
  });
  test('is degraded when pgqd does not run', () => {
    const s = summarizeLondisteStatus(cfg, root(), branch(), { supervisorPid: 1, workerPid: 3 });
    assert.equal(s.exitCode, 8);
    assert.match(s.problems.join('\n'), /pgqd does not run/);
  });
  test('is degraded while a table copies', () => {
    const s = summarizeLondisteStatus(
      cfg,
      root(),
      branch({ tables: [{ table: 'public.clients', local: true, state: 'in-copy' }] }),
      daemons,
    );
    assert.match(s.problems.join('\n'), /public\.clients in-copy/);
  });
});

describe('planExecuteSql', () => {
  test('stages the file and runs londiste execute on the root', () => {
    const p = planExecuteSql(cfg, root(), 'add-col-abc.sql', 'ALTER TABLE clients ADD c int;', false);
    assert.deepEqual(stepIds(p), ['stage-sql-file', 'londiste-execute']);
    const run = p.steps[1];
    assert.ok(
      run?.kind === 'run' &&
        run.argv
          .join(' ')
          .endsWith('execute /var/lib/postgresql/chef-ha-londiste/etc/execute/add-col-abc.sql'),
    );
  });
  test('finds a file applied before done', () => {
    const p = planExecuteSql(cfg, root(), 'x.sql', 'SELECT 1;', true);
    assert.ok(p.steps.every((s) => s.done));
  });
  test('refuses on the branch, pointing at the master', () => {
    const e = refusal(() => planExecuteSql(slaveCfg, branch(), 'x.sql', 'SELECT 1;', false));
    assert.match(e.hint ?? '', /run execute-sql on the master/);
  });
  test('names a changed file differently, so that it runs again', () => {
    assert.notEqual(executeName('/tmp/a.sql', 'x'), executeName('/tmp/a.sql', 'y'));
    assert.match(executeName('/tmp/a b.sql', 'x'), /^a_b-[0-9a-f]{12}\.sql$/);
  });
});

describe('planRejoinLondiste (on the old master db1, the new root is db2)', () => {
  const fencedDown: PairFacts = pairFacts.freshMaster({
    pg: localPgDown(),
    dataDir: { standbySignal: true },
    fenced: { at: '2026-01-15T12:00:00Z', reason: 'londiste failover to db2' },
  });
  const newRoot = root({ nodeName: 'db2', members: [{ name: 'db1', dead: true, location: 'x' }] });
  const plan = (facts: PairFacts, l: LondisteFacts): Plan =>
    planRejoinLondiste({
      facts,
      lf: l,
      config: cfg,
      backupDir: '/var/opt/chef-ha/backups/x',
      lostRowsFile: '/var/opt/chef-ha/lost-rows-x.json',
    });

  test('a fenced, stopped old root: lost rows first (read-only start), then a fresh branch without resurrect', () => {
    const p = plan(fencedDown, lf({ local: root(), peer: newRoot, daemons: { supervisorPid: 9 } }));
    assert.deepEqual(
      p.steps.filter((s) => !s.done).map((s) => s.id),
      [
        'start-postgresql',
        'save-lost-rows',
        'backup-replicated-tables',
        'stop-chef-services',
        'stop-londiste-daemons',
        'stop-postgresql',
        'remove-fence-file',
        'start-postgresql-writable',
        'drop-old-root-state',
        'forget-old-node-on-new-root',
        'create-branch',
        'grant-londiste-roles',
        'add-tables',
        'start-londiste-daemons',
        'wait-tables-ok',
        'clear-fence',
        'start-chef-services',
        'reindex',
        'record-rejoin',
      ],
    );
    const all = JSON.stringify(p.steps);
    assert.doesNotMatch(all, /resurrect/);
    assert.doesNotMatch(all, /drop-node/, 'drop-node would reach every member it knows');
    const create = p.steps.find((s) => s.id === 'create-branch');
    assert.ok(create?.kind === 'run');
    assert.ok(create.argv.some((x) => x.startsWith('--provider=') && x.includes('10.0.0.2')));
  });

  test('a branch of the new root with every table ok: every step is done', () => {
    const p = plan(
      pairFacts.freshMaster(),
      lf({
        local: branch({ nodeName: 'db1', provider: 'db2' }),
        peer: newRoot,
        daemons: { supervisorPid: 1, pgqdPid: 2, workerPid: 3 },
      }),
    );
    assert.deepEqual(
      p.steps.filter((s) => !s.done).map((s) => s.id),
      [],
    );
    assert.match(p.summary, /already a Londiste branch/);
  });

  test('refuses while the peer is not a root (no failover yet), nothing changed', () => {
    const e = refusal(() => plan(fencedDown, lf({ local: root(), peer: branch({ nodeName: 'db2' }) })));
    assert.match(e.message, /not the root/);
    assert.match(e.hint ?? '', /nothing to rejoin/);
  });

  test('refuses while the new root does not answer', () => {
    const e = refusal(() => plan(fencedDown, lf({ local: root(), peer: DOWN })));
    assert.match(e.message, /does not answer/);
  });
});

describe('lost rows: diffHashes', () => {
  test('keys the new root lacks are missing, keys it holds differently are different, equal rows are not listed', () => {
    assert.deepEqual(
      diffHashes(
        { '["b"]': 'h2', '["a"]': 'h1', '["c"]': 'h3' },
        { '["a"]': 'h1', '["c"]': 'x', '["d"]': 'h4' },
      ),
      [
        { key: '["b"]', kind: 'missing' },
        { key: '["c"]', kind: 'different' },
      ],
    );
  });
});

describe('decideSwitchoverLondiste / planSwitchoverLondiste', () => {
  const onBranch = (l: Partial<LondisteFacts>): LondisteFacts =>
    lf({ local: branch(), peer: root(), daemons: { supervisorPid: 1, pgqdPid: 2, workerPid: 3 }, ...l });

  test('on the branch with every table ok: the planned takeover, ticker settings, erchef restart, reindex', () => {
    const l = onBranch({});
    assert.deepEqual(decideSwitchoverLondiste(l, slaveCfg, undefined), { action: 'takeover' });
    const p = planSwitchoverLondiste(l, slaveCfg);
    assert.deepEqual(stepIds(p), [
      'takeover',
      'reapply-queue-ticker',
      'grant-londiste-roles',
      'record-switchover',
      'restart-chef-services',
      'reindex',
    ]);
    const t = p.steps[0];
    assert.ok(t?.kind === 'run');
    assert.deepEqual(t.argv.slice(2), ['takeover', 'db1'], 'not --dead-root');
  });

  test('on the root it hands over to the branch over ssh; without peer.ssh it says where to run it', () => {
    const l = lf({ local: root(), peer: branch({ nodeName: 'db2', provider: 'db1' }) });
    const withSsh = config({
      replication: { mode: 'londiste' },
      peer: { name: 'db2', address: '10.0.0.2', ssh: { target: 'root@10.0.0.2' } },
    });
    assert.deepEqual(decideSwitchoverLondiste(l, withSsh, undefined), { action: 'delegate', target: 'db2' });
    const e = refusal(() => decideSwitchoverLondiste(l, cfg, undefined));
    assert.match(e.hint ?? '', /on db2/);
  });

  test('--to the current root is nothing to do, on either node', () => {
    assert.equal(decideSwitchoverLondiste(onBranch({}), slaveCfg, 'db1').action, 'done');
    assert.equal(
      decideSwitchoverLondiste(lf({ local: root(), peer: branch({ provider: 'db1' }) }), cfg, 'db1').action,
      'done',
    );
  });

  test('refuses a table not in sync, a stopped worker, a dead root (failover instead) and two roots', () => {
    const copying = onBranch({
      local: branch({
        tables: TABLES.map((t) => ({
          table: `public.${t}`,
          local: true,
          state: t === 'nodes' ? 'catching-up' : 'ok',
        })),
      }),
    });
    assert.match(
      refusal(() => decideSwitchoverLondiste(copying, slaveCfg, undefined)).message,
      /not in sync.*public\.nodes/,
    );
    assert.match(
      refusal(() => decideSwitchoverLondiste(onBranch({ daemons: {} }), slaveCfg, undefined)).hint ?? '',
      /londiste-daemons start/,
    );
    assert.match(
      refusal(() => decideSwitchoverLondiste(onBranch({ peer: DOWN }), slaveCfg, undefined)).hint ?? '',
      /failover/,
    );
    assert.match(
      refusal(() =>
        decideSwitchoverLondiste(onBranch({ local: root({ nodeName: 'db2' }) }), slaveCfg, undefined),
      ).hint ?? '',
      /rejoin/,
    );
  });
});
