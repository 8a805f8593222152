/**
 * Streaming replication, asynchronous, end to end on the sandbox: setup-master, setup-slave with a
 * bundle, replication of Chef API writes, idempotent re-runs, status, kill -9 of the master, failover,
 * and the fenced old master coming back read-only.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { upSandbox } from '../sandbox/index.js';
import {
  getClient,
  getNode,
  inRecovery,
  makeTempDir,
  managedRoots,
  postmasterPid,
  putNode,
  readTree,
  registerClient,
  runCli,
  snapshotFiles,
  sql,
  trySql,
  waitFor,
  waitForBackgroundReindex,
  removeSandbox,
  type SandboxInfo,
  type SandboxNode,
} from './helpers.js';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';

const execFileP = promisify(execFile);

describe('streaming replication, asynchronous', { timeout: 600_000 }, () => {
  let dir: string;
  let sb: SandboxInfo;
  let a: SandboxNode;
  let b: SandboxNode;
  const outputs: string[] = [];
  const psSnapshots: string[] = [];

  before(async () => {
    dir = await makeTempDir('chef-ha-e2e-async-');
    sb = await upSandbox(dir, { nodes: 2, mode: 'streaming', sync: false });
    [a, b] = sb.nodes as [SandboxNode, SandboxNode];
  });

  after(async () => {
    await removeSandbox(dir);
  });

  test('setup-master makes the first node the master and writes a join bundle', async () => {
    const r = await runCli(a, ['setup-master']);
    outputs.push(r.stdout, r.stderr);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /install-recipe-override/);
    const recipe = await readFile(
      join(a.root, 'opt/chef-server/embedded/cookbooks/chef-server/recipes/postgresql.rb'),
      'utf8',
    );
    assert.match(recipe, /chef-ha recipe override/);
    assert.equal(
      await sql(
        a,
        `SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'chef_ha_chef_b'`,
        'postgres',
      ),
      '1',
    );
    // erchef's roles are stored as md5 and admitted with md5: Chef 11's client predates SCRAM.
    assert.equal(
      await sql(
        a,
        `SELECT string_agg(left(rolpassword, 3), ',' ORDER BY rolname) FROM pg_authid WHERE rolname IN ('opscode_chef', 'opscode_chef_ro')`,
        'postgres',
      ),
      'md5,md5',
    );
    assert.match(
      await readFile(join(a.postgres.confDir, 'pg_hba.conf'), 'utf8'),
      /^host\s+opscode_chef\s+opscode_chef,opscode_chef_ro\s+127\.0\.0\.1\/32\s+md5$/m,
    );
    // The Chef data moved from the embedded cluster: the bootstrap rows answer through the Chef API.
    const validator = await getClient(a, 'chef-validator');
    assert.equal(validator.status, 200);
    const status = await runCli(a, ['status', '--json']);
    outputs.push(status.stdout);
    assert.equal(status.code, 8, 'without a standby the pair is degraded');
  });

  test('setup-slave copies the master and streams; the replication password never shows in ps', async () => {
    const bundle = join(a.root, 'var/opt/chef-ha/join-bundle.tar.gz');
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const { stdout } = await execFileP('ps', ['-eo', 'args']);
        psSnapshots.push(stdout);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const r = await runCli(b, ['setup-slave', '--bundle', bundle]);
    watching = false;
    await watcher;
    outputs.push(r.stdout, r.stderr);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /pg-basebackup/);
    assert.equal(await inRecovery(b), true);
    const state = await sql(
      a,
      `SELECT state FROM pg_stat_replication WHERE application_name = 'chef_ha_chef_b'`,
      'postgres',
    );
    assert.equal(state, 'streaming');
    assert.match(r.stderr, /reindex\s.*running in the background/);
    const reindex = await waitForBackgroundReindex(b);
    assert.equal(reindex.exitCode, 0, reindex.log);
    assert.match(reindex.log, /Sending all data to be indexed again/);
    const ctlLog = await readFile(join(b.root, 'var/log/chef-server/ctl-calls.log'), 'utf8');
    assert.match(ctlLog, /reindex/);
  });

  test('a client registered on the master is on the slave within a second', async () => {
    const reg = await registerClient(a, 'web-01');
    assert.equal(reg.status, 201);
    const started = Date.now();
    await waitFor(
      'web-01 on the slave',
      async () => (await getClient(b, 'web-01')).status === 200,
      1_000,
      20,
    );
    assert.ok(Date.now() - started <= 1_000);
    assert.equal((await putNode(a, 'web-01', { role: 'web' })).status, 201);
    await waitFor(
      'node web-01 on the slave',
      async () => (await getNode(b, 'web-01')).status === 200,
      1_000,
      20,
    );
  });

  test('the slave refuses writes: its Chef API answers 503', async () => {
    const r = await registerClient(b, 'should-fail');
    assert.equal(r.status, 503);
  });

  test('status shows a healthy pair and exits 0', async () => {
    const r = await runCli(b, ['status', '--json']);
    outputs.push(r.stdout);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const s = JSON.parse(r.stdout) as { verdict: string; nodes: { name: string; role: string }[] };
    assert.equal(s.verdict, 'healthy');
    assert.deepEqual(
      s.nodes.map((n) => [n.name, n.role]),
      [
        ['chef-b', 'standby'],
        ['chef-a', 'primary'],
      ],
    );
    const table = await runCli(a, ['status']);
    assert.match(table.stdout, /HEALTHY/);
  });

  test('check passes on both nodes of a set-up pair and changes nothing', async () => {
    for (const n of [a, b]) {
      const before = await snapshotFiles(managedRoots(n));
      const r = await runCli(n, ['check']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /OK\s+recipe\s+chef-ha override installed/);
      assert.deepEqual(await snapshotFiles(managedRoots(n)), before);
    }
  });

  test('setup run twice changes nothing the second time', async () => {
    const beforeA = await snapshotFiles(managedRoots(a));
    const beforeB = await snapshotFiles(managedRoots(b));
    const pmA = await postmasterPid(a.postgres.dataDir);
    const pmB = await postmasterPid(b.postgres.dataDir);
    const m = await runCli(a, ['setup-master']);
    outputs.push(m.stdout, m.stderr);
    assert.equal(m.code, 0, m.stderr);
    assert.doesNotMatch(
      m.stderr,
      /\] (install-recipe-override|reconfigure|restart-postgresql|create-replication-role)\s+done/,
    );
    const bundle = join(a.root, 'var/opt/chef-ha/join-bundle.tar.gz');
    const s = await runCli(b, ['setup-slave', '--bundle', bundle]);
    outputs.push(s.stdout, s.stderr);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /already|standby/);
    assert.doesNotMatch(s.stderr, /pg-basebackup\s+done/);
    assert.deepEqual(await snapshotFiles(managedRoots(a)), beforeA);
    assert.deepEqual(await snapshotFiles(managedRoots(b)), beforeB);
    assert.equal(await postmasterPid(a.postgres.dataDir), pmA, 'the master was not restarted');
    assert.equal(await postmasterPid(b.postgres.dataDir), pmB, 'the slave was not restarted');
  });

  test('commands chef-ha-ctl does not own pass through to chef-server-ctl with their exit code', async () => {
    const st = await runCli(a, ['status', 'erchef']);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /^run: erchef: \(pid \d+\) \d+s/m);
    const unknown = await runCli(a, ['frobnicate']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stdout + unknown.stderr, /I don't know that command\./);
  });

  test('a package upgrade that puts the original recipe back is detected, and reconfigure re-applies the override', async () => {
    const recipe = join(a.root, 'opt/chef-server/embedded/cookbooks/chef-server/recipes/postgresql.rb');
    const original = await readFile(`${recipe}.chef-ha-original`);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(recipe, original); // what the omnibus package's rsync --delete does on upgrade
    const chk = await runCli(a, ['check']);
    assert.equal(chk.code, 8);
    assert.match(chk.stdout, /FAIL {2}recipe\s+the original recipe is back/);
    const st = await runCli(a, ['status']);
    assert.match(st.stdout, /ORIGINAL \(a package upgrade put it back/);
    const rc = await runCli(a, ['reconfigure']);
    assert.equal(rc.code, 0, rc.stderr);
    assert.match(rc.stderr, /re-applying the chef-ha override/);
    assert.match(rc.stdout, /chef-server Reconfigured!/);
    assert.match(await readFile(recipe, 'utf8'), /chef-ha recipe override/);
    assert.equal(await inRecovery(b), true, 'the standby keeps streaming');
    await waitFor(
      'streaming after reconfigure',
      async () =>
        (await sql(
          a,
          `SELECT state FROM pg_stat_replication WHERE application_name = 'chef_ha_chef_b'`,
          'postgres',
        )) === 'streaming',
      10_000,
    );
  });

  test('dry-run prints the plan and changes nothing', async () => {
    const beforeB = await snapshotFiles(managedRoots(b));
    const r = await runCli(b, ['--dry-run', 'failover', '--force']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /would/);
    assert.match(r.stderr, /dry run: nothing was changed/);
    assert.equal(await inRecovery(b), true);
    assert.deepEqual(await snapshotFiles(managedRoots(b)), beforeB);
  });

  test('failover after kill -9 of the master keeps registrations and accepts new ones', async () => {
    const pm = await postmasterPid(a.postgres.dataDir);
    assert.ok(pm);
    process.kill(pm, 'SIGKILL');
    await waitFor(
      'the master to die',
      async () => (await postmasterPid(a.postgres.dataDir)) === undefined,
      10_000,
    );
    const down = await runCli(b, ['status', '--json']);
    assert.equal(down.code, 9, 'no writable primary: exit 9');
    assert.equal((JSON.parse(down.stdout) as { verdict: string }).verdict, 'broken');
    const r = await runCli(b, ['failover']);
    outputs.push(r.stdout, r.stderr);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /fence-old-master/);
    assert.equal(await inRecovery(b), false);
    assert.equal((await getClient(b, 'web-01')).status, 200, 'the old registration is there');
    assert.equal((await getNode(b, 'web-01')).status, 200);
    const fresh = await registerClient(b, 'web-02');
    assert.equal(fresh.status, 201, JSON.stringify(fresh.body));
    // erchef's sessions on the promoted node take writes: no restart was needed, and none happened.
    assert.match(r.stderr, /restart-chef-services\s+skipped: erchef holds \d+ sessions/);
    // The dead master's host was fenced after the promotion, over ssh.
    assert.match(r.stderr, /fence-old-master\s+done \([\d.]+s\): fenced over ssh/);
    assert.ok(r.stderr.indexOf('] promote ') < r.stderr.indexOf('] fence-old-master '));
  });

  test('the old master started again by hand comes up read-only', async () => {
    await execFileP(
      'runuser',
      [
        '-u',
        'postgres',
        '--',
        `${a.postgres.bindir}/pg_ctl`,
        '-D',
        a.postgres.dataDir,
        '-o',
        `-c config_file=${a.postgres.confDir}/postgresql.conf`,
        '-l',
        a.postgres.logFile,
        '-w',
        'start',
      ],
      { timeout: 60_000 },
    );
    assert.equal(await inRecovery(a), true, 'the fenced old master must start as a standby');
    const w = await trySql(a, `CREATE TABLE should_fail (id int)`);
    assert.equal(w.ok, false);
    assert.match(w.out, /read-only/);
    const api = await registerClient(a, 'split-brain');
    assert.notEqual(api.status, 201);
    const s = await runCli(b, ['status', '--json']);
    const parsed = JSON.parse(s.stdout) as { nodes: { name: string; role: string }[] };
    assert.equal(parsed.nodes.filter((n) => n.role === 'primary').length, 1);
  });

  test('the replication password never appears in ps output, logs, errors or --json', async () => {
    const secret = (
      await readFile(join(a.root, 'var/opt/chef-ha/secrets/replication.password'), 'utf8')
    ).trim();
    assert.ok(secret.length >= 16);
    const haystacks = [
      ...outputs,
      ...psSnapshots,
      await readTree(join(a.root, 'var/log')),
      await readTree(join(b.root, 'var/log')),
      await readFile(a.postgres.logFile, 'latin1'),
      await readFile(b.postgres.logFile, 'latin1'),
    ];
    for (const h of haystacks) {
      assert.equal(h.includes(secret), false);
    }
    assert.ok(psSnapshots.length > 3, 'ps was sampled during setup-slave');
  });
});
