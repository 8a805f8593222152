/**
 * Londiste mode end to end on the sandbox, with the real pgqd and londiste from Debian: setup-master
 * (root), setup-slave (branch), three tables replicating inserts, updates and deletes, the slave's other
 * tables untouched, `londiste compare` equal after a write load, both set-ups idempotent, the
 * supervisor restarting a killed worker, status from SQL, and failover after kill -9 of the master
 * with writes flowing (the old master comes back read-only), and rejoin of the old master (the lost rows
 * in JSON, a branch of the new root).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { upSandbox } from '../sandbox/index.js';
import {
  getClient,
  postmasterPid,
  makeTempDir,
  managedRoots,
  runCliRaw,
  snapshotFiles,
  registerClient,
  runCli,
  sql,
  trySql,
  waitFor,
  removeSandbox,
  type SandboxInfo,
  type SandboxNode,
} from './helpers.js';

const execFileP = promisify(execFile);

function londisteDir(node: SandboxNode): string {
  return join(node.root, 'var', 'lib', 'postgresql', 'chef-ha-londiste');
}

/** `londiste <ini> ARGS` as postgres with the node's passfile; exit code and output. */
async function londiste(node: SandboxNode, args: readonly string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await execFileP(
      'runuser',
      [
        '-u',
        'postgres',
        '--',
        'env',
        `PGPASSFILE=${join(node.root, 'var', 'lib', 'postgresql', '.chef-ha.pgpass')}`,
        'londiste',
        join(londisteDir(node), 'etc', 'londiste.ini'),
        ...args,
      ],
      { timeout: 120_000 },
    );
    return { code: 0, out: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** md5 of a table's rows in primary-key order (row-for-row equality). */
function tableMd5(node: SandboxNode, table: string): Promise<string> {
  return sql(node, `SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM ${table} t`);
}

async function pidOf(file: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(file, 'utf8')).trim().split('\n')[0]);
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** The step ids a run reports as done (not skipped). */
function doneSteps(stderr: string): string[] {
  return [...stderr.matchAll(/^\[\d+\/\d+\] (\S+) {2}done/gm)].map((m) => m[1] ?? '');
}

const TABLES = ['clients', 'nodes', 'osc_users'];

describe('londiste mode: set-up and replication', { timeout: 900_000 }, () => {
  let dir: string;
  let sb: SandboxInfo;
  let a: SandboxNode;
  let b: SandboxNode;

  before(async () => {
    dir = await makeTempDir('chef-ha-e2e-londiste-');
    sb = await upSandbox(dir, { nodes: 2, mode: 'londiste' });
    [a, b] = sb.nodes as [SandboxNode, SandboxNode];
  });

  after(async () => {
    await removeSandbox(dir);
  });

  test('setup-master makes the first node the root, with tuned ticking and supervised daemons', async () => {
    const r = await runCli(a, ['setup-master']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /create-root {2}done/);
    assert.equal(
      await sql(
        a,
        `SELECT node_type || ' ' || node_name FROM pgq_node.node_info WHERE queue_name = 'chef_ha'`,
      ),
      'root chef_a',
    );
    assert.equal(
      await sql(
        a,
        `SELECT queue_ticker_max_lag || ' ' || queue_ticker_idle_period FROM pgq.queue WHERE queue_name = 'chef_ha'`,
      ),
      '00:00:00.1 00:00:01',
    );
    assert.equal(
      await sql(a, `SELECT string_agg(table_name, ',' ORDER BY table_name) FROM londiste.table_info`),
      TABLES.map((t) => `public.${t}`).join(','),
    );
    const pgqdIni = await readFile(join(londisteDir(a), 'etc', 'pgqd.ini'), 'utf8');
    assert.match(pgqdIni, /^database_list = opscode_chef$/m);
    assert.match(pgqdIni, /^ticker_period = 0\.1$/m);
    assert.ok(await pidOf(join(londisteDir(a), 'pid', 'pgqd.pid')), 'pgqd runs');
    assert.ok(await pidOf(join(londisteDir(a), 'pid', 'chef_ha_chef_a.pid')), 'the root worker runs');
    assert.equal(
      await sql(a, `SELECT pg_has_role('opscode_chef', 'pgq_writer', 'MEMBER')`),
      't',
      'erchef can fire the triggers',
    );
  });

  test('setup-slave makes the second node a branch and copies the three tables', async () => {
    const bundle = join(a.root, 'var/opt/chef-ha/join-bundle.tar.gz');
    const r = await runCli(b, ['setup-slave', '--bundle', bundle]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /wait-tables-ok {2}done/);
    assert.match(r.stderr, /clients (in-copy|catching-up|wanna-sync|do-sync|ok)/, 'per-table progress');
    assert.equal(
      await sql(
        b,
        `SELECT node_type || ' ' || node_name FROM pgq_node.node_info WHERE queue_name = 'chef_ha'`,
      ),
      'branch chef_b',
    );
    assert.equal(
      await sql(b, `SELECT string_agg(merge_state, ',') FROM londiste.table_info WHERE local`),
      'ok,ok,ok',
    );
    const dump = /saved in (\S+replicated-tables\.dump)/.exec(r.stderr)?.[1];
    assert.ok(dump && existsSync(dump), 'the former rows were dumped under the state dir');
    for (const t of TABLES) {
      assert.equal(await tableMd5(b, t), await tableMd5(a, t), `${t} equal after the copy`);
    }
    const ctlLog = await readFile(join(b.root, 'var/log/chef-server/ctl-calls.log'), 'utf8');
    assert.match(ctlLog, /reindex/);
  });

  test('a client registered on the master is known on the slave; the slave refuses writes to it', async () => {
    assert.equal((await registerClient(a, 'web-01')).status, 201);
    await waitFor('web-01 on the slave', async () => (await getClient(b, 'web-01')).status === 200, 10_000);
    const write = await registerClient(b, 'web-02');
    assert.notEqual(write.status, 201, 'a branch must not take writes to replicated tables');
  });

  test('inserts, updates and deletes of the three tables replicate; other tables stay the slave own', async () => {
    await sql(
      b,
      `INSERT INTO roles VALUES (md5('slave-role'), md5('slave-role-a'), md5('org'), 'slave-only', md5('u'), now(), now(), NULL)`,
    );
    await sql(
      a,
      `INSERT INTO roles VALUES (md5('master-role'), md5('master-role-a'), md5('org'), 'master-only', md5('u'), now(), now(), NULL)`,
    );
    await sql(
      a,
      `INSERT INTO osc_users (id, authz_id, username, hashed_password, salt, hash_type, last_updated_by, created_at, updated_at)
         SELECT md5('u'||g), md5('ua'||g), 'user'||g, 'x', 's', 'bcrypt', md5('u'), now(), now() FROM generate_series(1, 200) g;
       INSERT INTO nodes (id, authz_id, org_id, name, environment, last_updated_by, created_at, updated_at, serialized_object)
         SELECT md5('n'||g), md5('na'||g), md5('org'), 'node'||g, '_default', md5('u'), now(), now(), convert_to(repeat(md5('o'||g), 40), 'UTF8')
         FROM generate_series(1, 300) g;
       INSERT INTO clients (id, org_id, authz_id, name, validator, last_updated_by, created_at, updated_at, pubkey_version)
         SELECT md5('c'||g), md5('org'), md5('ca'||g), 'client'||g, false, md5('u'), now(), now(), 0 FROM generate_series(1, 100) g;
       UPDATE nodes SET environment = 'prod' WHERE name IN ('node1', 'node2', 'node3');
       UPDATE osc_users SET email = username || '@example.com' WHERE username LIKE 'user1%';
       DELETE FROM clients WHERE name IN ('client1', 'client2');
       DELETE FROM nodes WHERE name = 'node300';`,
    );
    await waitFor(
      'the three tables equal on the slave',
      async () => {
        for (const t of TABLES) {
          if ((await tableMd5(b, t)) !== (await tableMd5(a, t))) {
            return false;
          }
        }
        return true;
      },
      15_000,
      100,
    );
    assert.equal(await sql(b, `SELECT environment FROM nodes WHERE name = 'node2'`), 'prod');
    assert.equal(await sql(b, `SELECT count(*) FROM clients WHERE name IN ('client1', 'client2')`), '0');
    assert.equal(await sql(b, `SELECT string_agg(name, ',' ORDER BY name) FROM roles`), 'slave-only');
    const cmp = await londiste(b, ['compare']);
    assert.equal(cmp.code, 0, cmp.out);
  });

  test('setup-master and setup-slave run twice find every step done', async () => {
    const m = await runCli(a, ['setup-master']);
    assert.equal(m.code, 0, m.stderr);
    assert.deepEqual(doneSteps(m.stderr), ['write-join-bundle']);
    const s = await runCli(b, [
      'setup-slave',
      '--bundle',
      join(a.root, 'var/opt/chef-ha/join-bundle.tar.gz'),
    ]);
    assert.equal(s.code, 0, s.stderr);
    assert.deepEqual(doneSteps(s.stderr), []);
    assert.match(s.stdout, /branch of chef-a/);
  });

  test('the supervisor restarts a worker that was killed', async () => {
    const pidFile = join(londisteDir(b), 'pid', 'chef_ha_chef_b.pid');
    const before = await pidOf(pidFile);
    assert.ok(before, 'the branch worker runs');
    process.kill(before, 'SIGKILL');
    const after = await waitFor(
      'a new worker',
      async () => {
        const p = await pidOf(pidFile);
        return p !== undefined && p !== before ? p : undefined;
      },
      20_000,
      100,
    );
    assert.notEqual(after, before);
    assert.equal((await registerClient(a, 'web-03')).status, 201);
    await waitFor('web-03 on the slave', async () => (await getClient(b, 'web-03')).status === 200, 10_000);
    const st = await runCli(b, ['londiste-daemons', 'status', '--json']);
    assert.equal(st.code, 0, st.stderr);
    const j = JSON.parse(st.stdout) as { workerPid?: number; pgqdPid?: number; supervisorPid?: number };
    assert.equal(j.workerPid, after);
    assert.ok(j.pgqdPid && j.supervisorPid);
  });

  test('execute-sql runs a schema change on the master and then on the slave, once', async () => {
    const file = join(dir, 'add-col.sql');
    await writeFile(file, 'ALTER TABLE clients ADD COLUMN chef_ha_probe integer;\n');
    const r = await runCli(a, ['execute-sql', file]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(
      'the column on the slave',
      async () =>
        (await sql(
          b,
          `SELECT count(*) FROM information_schema.columns WHERE table_name = 'clients' AND column_name = 'chef_ha_probe'`,
        )) === '1',
      15_000,
      100,
    );
    await sql(a, `UPDATE clients SET chef_ha_probe = 7 WHERE name = 'web-01'`);
    await waitFor(
      'the new column replicates',
      async () => (await sql(b, `SELECT chef_ha_probe FROM clients WHERE name = 'web-01'`)) === '7',
      10_000,
      100,
    );
    const again = await runCli(a, ['execute-sql', file]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /londiste-execute {2}skipped: applied already/);
    const onSlave = await runCli(b, ['execute-sql', file]);
    assert.equal(onSlave.code, 4, 'refused on the branch');
    assert.match(onSlave.stderr, /run execute-sql on the master/);
  });

  test('status says plainly when pgqd does not run, and londiste-daemons start brings it back', async () => {
    const stop = await runCli(b, ['londiste-daemons', 'stop']);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(await pidOf(join(londisteDir(b), 'pid', 'pgqd.pid')), undefined);
    const st = await runCli(b, ['status']);
    assert.equal(st.code, 8);
    assert.match(st.stdout, /pgqd does not run on chef-b: no ticks, no replication/);
    const start = await runCli(b, ['londiste-daemons', 'start']);
    assert.equal(start.code, 0, start.stderr);
    assert.ok(await pidOf(join(londisteDir(b), 'pid', 'pgqd.pid')));
  });

  test('status reads both nodes from SQL: healthy pair, per-table state, lag and daemons', async () => {
    const r = await runCli(b, ['status', '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const st = JSON.parse(r.stdout) as {
      verdict: string;
      nodes: { name: string; type: string; tables: { state: string }[]; lagS: number | null }[];
    };
    assert.equal(st.verdict, 'healthy');
    assert.deepEqual(
      st.nodes.map((n) => `${n.name} ${n.type}`),
      ['chef-b branch', 'chef-a root'],
    );
    assert.deepEqual(
      st.nodes[0]?.tables.map((t) => t.state),
      ['ok', 'ok', 'ok'],
    );
    assert.equal(typeof st.nodes[0]?.lagS, 'number');
    const human = await runCli(a, ['status']);
    assert.equal(human.code, 0, human.stdout + human.stderr);
    assert.match(human.stdout, /tables: clients ok, nodes ok, osc_users ok/);
  });

  /** The cascade state of a node and its londiste files, to show that a refused run changed nothing. */
  async function londisteState(node: SandboxNode): Promise<string> {
    const cascade = await sql(
      node,
      `SELECT (SELECT string_agg(node_type || ':' || node_name, ',') FROM pgq_node.node_info)
          || ' | ' || (SELECT string_agg(table_name || ':' || coalesce(merge_state, '-'), ',' ORDER BY table_name) FROM londiste.table_info)
          || ' | ' || (SELECT string_agg(tgrelid::regclass || '.' || tgname, ',' ORDER BY tgrelid::regclass::text, tgname) FROM pg_trigger WHERE tgname LIKE '_londiste%')
          || ' | ' || (SELECT string_agg(queue_name, ',') FROM pgq.queue)`,
    );
    const files = await snapshotFiles([...managedRoots(node), join(londisteDir(node), 'etc')]);
    return `${cascade}\n${[...files].map(([k, v]) => `${k} ${v}`).join('\n')}`;
  }

  /** Runs the CLI on `node` with its config changed by `edit`. */
  async function runWithConfig(
    node: SandboxNode,
    edit: (c: Record<string, Record<string, unknown>>) => void,
    args: readonly string[],
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const c = JSON.parse(await readFile(node.config, 'utf8')) as Record<string, Record<string, unknown>>;
    edit(c);
    const file = join(dir, `${node.name}-edited.json`);
    await writeFile(file, JSON.stringify(c, null, 2));
    return runCliRaw(['--config', file, '--yes', ...args]);
  }

  test('bad input end to end: each a clear message, exit 4, nothing changed on either node', async () => {
    await sql(a, 'CREATE TABLE chef_ha_nopk (name text)');
    await sql(b, 'CREATE TABLE chef_ha_nopk (name text)');
    await sql(a, 'CREATE TABLE chef_ha_only_master (id int PRIMARY KEY)');
    const bundle = join(a.root, 'var/opt/chef-ha/join-bundle.tar.gz');
    try {
      const before = [await londisteState(a), await londisteState(b)];
      const tables = (c: Record<string, Record<string, unknown>>, extra: string): void => {
        c['chefServer'] = { ...c['chefServer'], tables: [...TABLES, extra] };
      };
      const cases: {
        what: string;
        run: () => Promise<{ code: number; stdout: string; stderr: string }>;
        says: RegExp;
      }[] = [
        {
          what: 'a table without a primary key (setup-master)',
          run: () =>
            runWithConfig(
              a,
              (c) => {
                tables(c, 'chef_ha_nopk');
              },
              ['setup-master'],
            ),
          says: /only tables with a primary key; on chef-a these have none: chef_ha_nopk; nothing was changed/,
        },
        {
          what: 'a table missing on the slave (setup-slave)',
          run: () =>
            runWithConfig(
              b,
              (c) => {
                tables(c, 'chef_ha_only_master');
              },
              ['setup-slave', '--bundle', bundle],
            ),
          says: /do not exist in opscode_chef on chef-b: chef_ha_only_master; nothing was changed/,
        },
        {
          what: 'a wrong queue name (setup-slave)',
          run: () =>
            runWithConfig(b, (c) => (c['londiste'] = { ...c['londiste'], queue: 'chef_hq' }), [
              'setup-slave',
              '--bundle',
              bundle,
            ]),
          says: /chef-a is not the root of Londiste queue "chef_hq".*nothing was changed/,
        },
        {
          what: "the slave's database pointing at the master's (setup-slave)",
          run: () =>
            runWithConfig(
              b,
              (c) =>
                (c['postgres'] = {
                  ...c['postgres'],
                  port: a.postgres.port,
                  socketDir: a.postgres.socketDir,
                }),
              ['setup-slave', '--bundle', bundle],
            ),
          says: /is the master's own cluster.*never the provider's; nothing was changed/,
        },
      ];
      for (const c of cases) {
        const r = await c.run();
        assert.equal(r.code, 4, `${c.what}: ${r.stderr}`);
        assert.match(r.stderr, c.says, c.what);
        assert.doesNotMatch(r.stderr, /Traceback/, c.what);
        console.log(`# ${c.what}: ${r.stderr.trim().split('\n').slice(-2).join(' / ')}`);
      }
      assert.deepEqual(
        [await londisteState(a), await londisteState(b)],
        before,
        'nothing changed on either node',
      );
      // A node down during status: a clear line, exit 8 (degraded), no crash, nothing changed.
      await execFileP(
        'runuser',
        [
          '-u',
          'postgres',
          '--',
          `${b.postgres.bindir}/pg_ctl`,
          '-D',
          b.postgres.dataDir,
          '-m',
          'fast',
          '-w',
          'stop',
        ],
        { timeout: 60_000 },
      );
      try {
        const st = await runCli(a, ['status']);
        assert.equal(st.code, 8, st.stdout + st.stderr);
        assert.match(st.stdout + st.stderr, /chef-b/);
        assert.match(st.stdout + st.stderr, /does not answer|down|unreachable|refused/i);
        assert.doesNotMatch(st.stdout + st.stderr, /Traceback|AttributeError/);
        console.log(
          `# status with chef-b down: ${(st.stdout + st.stderr).trim().split('\n').slice(0, 6).join(' / ')}`,
        );
      } finally {
        await execFileP(
          'runuser',
          [
            '-u',
            'postgres',
            '--',
            `${b.postgres.bindir}/pg_ctl`,
            '-D',
            b.postgres.dataDir,
            '-l',
            b.postgres.logFile,
            '-w',
            'start',
            '-o',
            `-c config_file=${join(b.postgres.confDir, 'postgresql.conf')}`,
          ],
          { timeout: 60_000 },
        );
      }
      assert.equal(await londisteState(a), before[0]);
    } finally {
      await sql(a, 'DROP TABLE IF EXISTS chef_ha_nopk, chef_ha_only_master');
      await sql(b, 'DROP TABLE IF EXISTS chef_ha_nopk');
    }
    await waitFor('chef-b healthy again', async () => (await runCli(b, ['status'])).code === 0, 60_000);
  });

  test('failover refuses while the master is a healthy root', async () => {
    const r = await runCli(b, ['failover']);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /answers and is the root/);
    assert.match(r.stderr, /switchover/);
  });

  test('failover after kill -9 of the master with writes flowing: the slave takes writes, the old master comes back read-only', async () => {
    const committed: number[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 1; writing; i += 1) {
        try {
          await sql(
            a,
            `INSERT INTO nodes (id, authz_id, org_id, name, environment, last_updated_by, created_at, updated_at)
               VALUES (md5('w${i}'), md5('wa${i}'), md5('org'), 'w-${i}', '_default', md5('u'), now(), now())`,
          );
          committed.push(i);
        } catch {
          return;
        }
      }
    })();
    await waitFor('some writes', () => Promise.resolve(committed.length >= 30), 30_000);
    // The slave's worker is held for a moment, so that some committed writes surely never reach it:
    // the rows rejoin must report.
    const worker = await pidOf(join(londisteDir(b), 'pid', 'chef_ha_chef_b.pid'));
    assert.ok(worker, 'the worker of chef-b runs');
    process.kill(worker, 'SIGSTOP');
    try {
      const held = committed.length;
      await waitFor(
        'writes the slave does not get',
        () => Promise.resolve(committed.length >= held + 20),
        30_000,
      );
      await sql(a, `UPDATE clients SET validator = NOT validator WHERE name = 'web-01'`);
      const pid = await postmasterPid(a.postgres.dataDir);
      assert.ok(pid);
      process.kill(pid, 'SIGKILL');
      await writer;
      writing = false;
    } finally {
      writing = false;
      process.kill(worker, 'SIGCONT');
    }
    const r = await runCli(b, ['failover']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /takeover {2}done/);
    assert.match(r.stderr, /asynchronous/);
    assert.match(r.stderr, /fence-old-master-host {2}done/);
    assert.equal(
      await sql(b, `SELECT node_type FROM pgq_node.node_info WHERE queue_name = 'chef_ha'`),
      'root',
    );
    assert.equal(
      await sql(b, `SELECT queue_ticker_max_lag FROM pgq.queue WHERE queue_name = 'chef_ha'`),
      '00:00:00.1',
      'the tuned ticker settings are on the new root',
    );
    assert.equal((await registerClient(b, 'after-failover')).status, 201);
    const arrived = Number(await sql(b, `SELECT count(*) FROM nodes WHERE name LIKE 'w-%'`));
    console.log(`# writes committed on the master: ${committed.length}, on the new root: ${arrived}`);
    assert.ok(arrived <= committed.length && arrived > 0);
    const st = await runCli(b, ['status', '--json']);
    assert.equal(st.code, 8, 'the old master is down: degraded, but one root');
    // The old master comes back: it starts as a read-only standby (fenced), not a second writable root.
    await execFileP(
      'runuser',
      [
        '-u',
        'postgres',
        '--',
        `${a.postgres.bindir}/pg_ctl`,
        '-D',
        a.postgres.dataDir,
        '-l',
        a.postgres.logFile,
        '-w',
        'start',
        '-o',
        `-c config_file=${join(a.postgres.confDir, 'postgresql.conf')}`,
      ],
      { timeout: 60_000 },
    );
    const write = await trySql(a, `UPDATE clients SET admin = admin WHERE name = 'web-01'`);
    assert.equal(write.ok, false);
    assert.match(write.out, /read-only/);
  });

  test('rejoin on the old master writes exactly the lost rows to JSON and makes it a branch of the new root', async () => {
    const names = async (node: SandboxNode): Promise<Set<string>> =>
      new Set(
        (await sql(node, `SELECT string_agg(name, ',' ORDER BY name) FROM nodes WHERE name LIKE 'w-%'`))
          .split(',')
          .filter((x) => x !== ''),
      );
    const onA = await names(a);
    const onB = await names(b);
    const missing = [...onA].filter((n) => !onB.has(n)).sort();
    assert.ok(missing.length >= 20, `rows the new root lacks: ${missing.length}`);
    const webId = await sql(a, `SELECT id FROM clients WHERE name = 'web-01'`);
    const r = await runCli(a, ['--json', 'rejoin']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { lostRows: { count: number; file: string } };
    assert.equal(out.lostRows.count, missing.length + 1);
    assert.match(r.stderr, /save-lost-rows {2}done/);
    assert.doesNotMatch(r.stderr, /resurrect/);
    const file = JSON.parse(await readFile(out.lostRows.file, 'utf8')) as {
      rows: {
        table: string;
        kind: string;
        key: { id: string };
        row: { name: string; validator?: boolean };
      }[];
    };
    const lostNodes = file.rows.filter((x) => x.table === 'nodes');
    assert.deepEqual(lostNodes.map((x) => x.row.name).sort(), missing);
    assert.ok(lostNodes.every((x) => x.kind === 'missing' && typeof x.key.id === 'string'));
    const lostClients = file.rows.filter((x) => x.table === 'clients');
    assert.equal(lostClients.length, 1);
    assert.equal(lostClients[0]?.kind, 'different');
    assert.equal(lostClients[0]?.key.id, webId);
    assert.equal(file.rows.filter((x) => x.table === 'osc_users').length, 0);
    // a is a branch of b now, with b's rows; new writes on b reach it; it refuses writes to them.
    assert.equal(
      await sql(
        a,
        `SELECT node_type || ' ' || coalesce(s.provider_node, '') FROM pgq_node.node_info i
          JOIN pgq_node.local_state s ON s.queue_name = i.queue_name AND s.consumer_name = i.worker_name
          WHERE i.queue_name = 'chef_ha'`,
      ),
      'branch chef_b',
    );
    assert.equal(existsSync(join(a.postgres.dataDir, 'standby.signal')), false);
    assert.equal((await registerClient(b, 'after-rejoin')).status, 201);
    await waitFor(
      'after-rejoin on the old master',
      async () => (await sql(a, `SELECT count(*) FROM clients WHERE name = 'after-rejoin'`)) === '1',
      60_000,
    );
    for (const t of TABLES) {
      assert.equal(await tableMd5(a, t), await tableMd5(b, t), `${t} equal on both nodes`);
    }
    const again = await runCli(a, ['rejoin']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout + again.stderr, /already a Londiste branch/);
    assert.deepEqual(doneSteps(again.stderr), []);
    const st = await runCli(b, ['status', '--json']);
    assert.equal(st.code, 0, st.stdout + st.stderr);
  });

  /**
   * Writes rows `<prefix>-<i>` into nodes on `node` until stopped; returns the acknowledged ones. A write
   * refused while the takeover runs is not acknowledged and is retried with the next number.
   */
  function startWriter(node: SandboxNode, prefix: string): { stop: () => Promise<string[]> } {
    const acked: string[] = [];
    let refused = 0;
    let writing = true;
    const loop = (async () => {
      for (let i = 1; writing; i += 1) {
        const name = `${prefix}-${i}`;
        const r = await trySql(
          node,
          `INSERT INTO nodes (id, authz_id, org_id, name, environment, last_updated_by, created_at, updated_at)
             VALUES (md5('${name}'), md5('a${name}'), md5('org'), '${name}', '_default', md5('u'), now(), now())`,
        );
        if (r.ok) {
          acked.push(name);
        } else {
          refused += 1;
        }
      }
    })();
    return {
      stop: async () => {
        writing = false;
        await loop;
        console.log(`# ${prefix}: ${acked.length} writes acknowledged, ${refused} refused`);
        return acked;
      },
    };
  }

  async function missingOn(node: SandboxNode, names: readonly string[]): Promise<string[]> {
    const have = new Set(
      (
        await sql(
          node,
          `SELECT string_agg(name, ',') FROM nodes WHERE name = ANY(ARRAY['${names.join("','")}'])`,
        )
      )
        .split(',')
        .filter((x) => x !== ''),
    );
    return names.filter((n) => !have.has(n));
  }

  test('switchover with writes flowing, both directions: no acknowledged write lost', async () => {
    // On the branch (a): a takes over from b while b takes writes.
    const w1 = startWriter(b, 'sw1');
    await waitFor(
      'writes on b',
      async () => Number(await sql(b, `SELECT count(*) FROM nodes WHERE name LIKE 'sw1-%'`)) >= 20,
      30_000,
    );
    const r1 = await runCli(a, ['switchover']);
    const acked1 = await w1.stop();
    assert.equal(r1.code, 0, r1.stderr);
    assert.match(r1.stderr, /takeover {2}done/);
    assert.ok(acked1.length >= 20);
    assert.deepEqual(await missingOn(a, acked1), [], 'every acknowledged write is on the new root at once');
    assert.equal(
      await sql(a, `SELECT node_type FROM pgq_node.node_info WHERE queue_name = 'chef_ha'`),
      'root',
    );
    assert.equal(
      await sql(b, `SELECT node_type FROM pgq_node.node_info WHERE queue_name = 'chef_ha'`),
      'branch',
    );
    assert.equal(
      await sql(a, `SELECT queue_ticker_max_lag FROM pgq.queue WHERE queue_name = 'chef_ha'`),
      '00:00:00.1',
    );
    // On the root (a): it hands the takeover to the branch b over ssh.
    const w2 = startWriter(a, 'sw2');
    await waitFor(
      'writes on a',
      async () => Number(await sql(a, `SELECT count(*) FROM nodes WHERE name LIKE 'sw2-%'`)) >= 20,
      30_000,
    );
    const r2 = await runCli(a, ['switchover']);
    const acked2 = await w2.stop();
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(await missingOn(b, acked2), [], 'every acknowledged write is on the new root at once');
    assert.equal(
      await sql(b, `SELECT node_type FROM pgq_node.node_info WHERE queue_name = 'chef_ha'`),
      'root',
    );
    assert.equal((await registerClient(b, 'after-switchover')).status, 201);
    await waitFor(
      'after-switchover on a',
      async () => (await sql(a, `SELECT count(*) FROM clients WHERE name = 'after-switchover'`)) === '1',
      60_000,
    );
    for (const t of TABLES) {
      assert.equal(await tableMd5(a, t), await tableMd5(b, t), `${t} equal on both nodes`);
    }
    const again = await runCli(b, ['switchover', '--to', 'chef-b']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /nothing to do/);
  });
});
