/**
 * Streaming replication, synchronous, end to end: setup-slave --from-master over a real sshd, sync
 * state, and no acknowledged write lost when the master is killed with kill -9 during a stream of
 * Chef API writes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { upSandbox } from '../sandbox/index.js';
import {
  getNode,
  inRecovery,
  makeTempDir,
  postmasterPid,
  putNode,
  runCli,
  sql,
  waitFor,
  removeSandbox,
  type SandboxInfo,
  type SandboxNode,
} from './helpers.js';

describe('streaming replication, synchronous', { timeout: 600_000 }, () => {
  let dir: string;
  let sb: SandboxInfo;
  let a: SandboxNode;
  let b: SandboxNode;

  before(async () => {
    dir = await makeTempDir('chef-ha-e2e-sync-');
    sb = await upSandbox(dir, { nodes: 2, mode: 'streaming', sync: true });
    [a, b] = sb.nodes as [SandboxNode, SandboxNode];
  });

  after(async () => {
    await removeSandbox(dir);
  });

  test('setup-master leaves the master asynchronous until its slave streams', async () => {
    const r = await runCli(a, ['setup-master']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /enable-synchronous\s+skipped: the slave is not streaming yet/);
    assert.equal(await sql(a, 'SHOW synchronous_standby_names', 'postgres'), '');
  });

  test('setup-slave --from-master fetches the bundle over ssh and ends in sync state', async () => {
    const r = await runCli(b, ['setup-slave', '--from-master']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /fetching the join bundle: ssh /);
    assert.equal(await inRecovery(b), true);
    const row = await sql(
      a,
      `SELECT state || ' ' || sync_state FROM pg_stat_replication WHERE application_name = 'chef_ha_chef_b'`,
      'postgres',
    );
    assert.equal(row, 'streaming sync');
  });

  test('no acknowledged write is lost when the master is killed with kill -9 during a stream of writes', async () => {
    const acked: string[] = [];
    let stop = false;
    let seq = 0;
    const writers = [0, 1, 2].map(async (w) => {
      while (!stop) {
        const name = `load-${w}-${seq++}`;
        const r = await putNode(a, name, { seq });
        if (r.status === 200 || r.status === 201) {
          acked.push(name);
        }
      }
    });
    await waitFor('some acknowledged writes', () => Promise.resolve(acked.length > 30), 20_000);
    const pm = await postmasterPid(a.postgres.dataDir);
    assert.ok(pm);
    process.kill(pm, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(writers);
    const f = await runCli(b, ['failover']);
    assert.equal(f.code, 0, f.stderr);
    assert.equal(await inRecovery(b), false);
    const names = acked.map((n) => `'${n}'`).join(',');
    const present = Number(await sql(b, `SELECT count(*) FROM nodes WHERE name IN (${names})`));
    assert.equal(
      present,
      acked.length,
      `lost ${acked.length - present} of ${acked.length} acknowledged writes`,
    );
    // The new primary takes writes at once: no inherited synchronous_standby_names blocks it.
    assert.equal((await putNode(b, 'after-failover')).status, 201);
    assert.equal((await getNode(b, 'after-failover')).status, 200);
  });
});
