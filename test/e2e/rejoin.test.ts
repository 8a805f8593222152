/**
 * rejoin end to end on the sandbox (asynchronous streaming): an asynchronous failover that loses writes,
 * then rejoin of the old master by pg_rewind, which reports the divergence and keeps the discarded WAL;
 * a second rejoin that finds everything done; failovers back and forth with rejoin between; a rejoin
 * whose rewind is impossible (the old master's WAL is gone) falling back to a fresh base backup; and the
 * refusal on the pair's primary.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  getClient,
  getNode,
  inRecovery,
  managedRoots,
  postmasterPid,
  putNode,
  registerClient,
  runCli,
  setUpStreamingPair,
  snapshotFiles,
  sql,
  waitFor,
  removeSandbox,
  type SandboxNode,
} from './helpers.js';

const execFileP = promisify(execFile);

interface RejoinJson {
  command: string;
  method: string;
  already: boolean;
  divergence: {
    divergedAt: string | null;
    discardedBytes: number | null;
    records: number | null;
    savedIn: string | null;
  } | null;
  completed: string[];
}

/** kill -9 of a node's postmaster, then wait until its backends are gone too. */
async function crash(node: SandboxNode): Promise<void> {
  const pm = await postmasterPid(node.postgres.dataDir);
  assert.ok(pm, `${node.name} runs`);
  process.kill(pm, 'SIGKILL');
  await waitFor(
    `${node.name}'s postmaster to die`,
    async () => (await postmasterPid(node.postgres.dataDir)) === undefined,
    10_000,
  );
  // Orphaned backends can outlive the postmaster for a moment (streaming-lab pitfall 12).
  await waitFor(
    `${node.name}'s backends to exit`,
    async () => {
      const { stdout } = await execFileP('ps', ['-eo', 'args']);
      return !stdout.split('\n').some((l) => l.startsWith('postgres:') && l.includes(node.postgres.dataDir));
    },
    10_000,
  ).catch(() => undefined);
}

async function streamingFrom(primary: SandboxNode, standby: SandboxNode): Promise<string> {
  return sql(
    primary,
    `SELECT state FROM pg_stat_replication WHERE application_name = 'chef_ha_${standby.name.replace(/-/g, '_')}'`,
    'postgres',
  );
}

describe('rejoin (streaming, asynchronous)', { timeout: 900_000 }, () => {
  let dir: string;
  let a: SandboxNode;
  let b: SandboxNode;

  before(async () => {
    ({ dir, a, b } = await setUpStreamingPair('chef-ha-e2e-rejoin-', { sync: false }));
  });

  after(async () => {
    await removeSandbox(dir);
  });

  test('rejoin on the primary of a healthy pair is refused and changes nothing', async () => {
    const before = await snapshotFiles(managedRoots(a));
    const pm = await postmasterPid(a.postgres.dataDir);
    const r = await runCli(a, ['rejoin']);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /chef-a is the pair's writable primary and chef-b is not a newer primary/);
    assert.match(r.stderr, /nothing was changed/);
    assert.match(r.stderr, /switchover/);
    assert.deepEqual(await snapshotFiles(managedRoots(a)), before);
    assert.equal(await postmasterPid(a.postgres.dataDir), pm);
  });

  test('an async failover that loses writes, then rejoin by pg_rewind reports the divergence and keeps the lost WAL', async () => {
    assert.equal((await registerClient(a, 'before-failover')).status, 201);
    await waitFor(
      'before-failover on chef-b',
      async () => (await getClient(b, 'before-failover')).status === 200,
    );
    // Freeze chef-a's WAL sender: chef-a keeps acknowledging writes (asynchronous) that it never sends.
    const walsender = Number(
      await sql(
        a,
        `SELECT pid FROM pg_stat_replication WHERE application_name = 'chef_ha_chef_b'`,
        'postgres',
      ),
    );
    assert.ok(walsender > 0);
    process.kill(walsender, 'SIGSTOP');
    const lost: string[] = [];
    try {
      for (let i = 0; i < 20; i += 1) {
        const r = await registerClient(a, `lost-${i}`);
        assert.equal(r.status, 201, 'chef-a acknowledges the write');
        lost.push(`lost-${i}`);
      }
    } finally {
      process.kill(walsender, 'SIGKILL');
    }
    await crash(a);
    const f = await runCli(b, ['failover']);
    assert.equal(f.code, 0, f.stderr);
    assert.equal(await inRecovery(b), false);
    for (const name of lost) {
      assert.equal((await getClient(b, name)).status, 404, `${name} never reached chef-b`);
    }
    assert.equal((await registerClient(b, 'after-failover-1')).status, 201);

    const r = await runCli(a, ['--json', 'rejoin']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as RejoinJson;
    assert.equal(out.method, 'rewind', r.stderr);
    assert.equal(out.already, false);
    assert.match(r.stderr, /checkpoint-new-primary\s+done/);
    assert.match(r.stderr, /rewind\s+done \([\d.]+s\): pg_rewind done: servers diverged at/);
    assert.ok(out.divergence, 'the divergence is reported');
    assert.ok(out.divergence.divergedAt);
    assert.ok((out.divergence.discardedBytes ?? 0) > 0, 'the lost writes are counted as discarded WAL');
    assert.ok((out.divergence.records ?? 0) > 0);
    // The discarded WAL is kept and readable with pg_waldump: the lost clients' rows are in it.
    const saved = out.divergence.savedIn ?? '';
    assert.ok(existsSync(saved));
    const dump = await execFileP('/usr/lib/postgresql/15/bin/pg_waldump', [
      '-p',
      saved,
      '-s',
      out.divergence.divergedAt,
      '-t',
      '1',
    ]).catch((e: unknown) => ({ stdout: (e as { stdout: string }).stdout }));
    assert.match(dump.stdout, /INSERT/);

    assert.equal(await inRecovery(a), true);
    assert.equal(await streamingFrom(b, a), 'streaming');
    assert.equal(
      (await getClient(a, 'after-failover-1')).status,
      200,
      'the write after failover is on chef-a',
    );
    assert.equal((await getClient(a, 'before-failover')).status, 200);
    for (const name of lost) {
      assert.equal((await getClient(a, name)).status, 404, `${name} was discarded on chef-a too`);
    }
    assert.equal(existsSync(join(a.root, 'var/opt/chef-ha/fenced.json')), false, 'the fence is cleared');
    // It streams: a new write on chef-b reaches chef-a.
    assert.equal((await putNode(b, 'after-rejoin-1')).status, 201);
    await waitFor(
      'after-rejoin-1 on chef-a',
      async () => (await getNode(a, 'after-rejoin-1')).status === 200,
    );
  });

  test('rejoin run twice: the second run finds everything done', async () => {
    const pm = await postmasterPid(a.postgres.dataDir);
    const r = await runCli(a, ['--json', 'rejoin']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as RejoinJson;
    assert.equal(out.already, true, r.stderr);
    assert.deepEqual(out.completed, ['wait-streaming']);
    assert.match(r.stderr, /rewind\s+skipped: already streaming from chef-b/);
    assert.equal(await postmasterPid(a.postgres.dataDir), pm, 'not restarted');
  });

  test('dry-run rejoin on a fenced old master prints the plan and changes nothing', async () => {
    await crash(b);
    const f = await runCli(a, ['failover']);
    assert.equal(f.code, 0, f.stderr);
    assert.equal((await putNode(a, 'after-failover-2')).status, 201);
    const before = await snapshotFiles(managedRoots(b));
    const r = await runCli(b, ['--dry-run', 'rejoin']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /would/);
    assert.equal(await postmasterPid(b.postgres.dataDir), undefined, 'still stopped');
    assert.deepEqual(await snapshotFiles(managedRoots(b)), before);
  });

  test('the other way: the old master chef-b rejoins chef-a and streams again', async () => {
    const r = await runCli(b, ['--json', 'rejoin']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as RejoinJson).method, 'rewind', r.stderr);
    assert.equal(await inRecovery(b), true);
    assert.equal(await streamingFrom(a, b), 'streaming');
    assert.equal((await getNode(b, 'after-failover-2')).status, 200);
    assert.equal((await getClient(b, 'after-failover-1')).status, 200);
  });

  test("rewind impossible (the old master's WAL is gone): rejoin falls back to a fresh base backup", async () => {
    await crash(a);
    const f = await runCli(b, ['failover']);
    assert.equal(f.code, 0, f.stderr);
    assert.equal((await putNode(b, 'after-failover-3')).status, 201);
    const walDir = join(a.postgres.dataDir, 'pg_wal');
    for (const name of await readdir(walDir)) {
      if (/^[0-9A-F]{24}$/.test(name)) {
        await rm(join(walDir, name));
      }
    }
    const r = await runCli(a, ['--json', 'rejoin']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /(pg_rewind|crash recovery of \S+) failed .*falling back to a fresh base backup/);
    const out = JSON.parse(r.stdout) as RejoinJson;
    assert.equal(out.method, 'basebackup');
    assert.equal(await inRecovery(a), true);
    assert.equal(await streamingFrom(b, a), 'streaming');
    assert.equal((await getNode(a, 'after-failover-3')).status, 200);
    assert.equal((await getNode(a, 'after-failover-2')).status, 200);
    assert.equal((await putNode(b, 'after-rejoin-3')).status, 201);
    await waitFor(
      'after-rejoin-3 on chef-a',
      async () => (await getNode(a, 'after-rejoin-3')).status === 200,
    );
  });
});
