/**
 * switchover end to end on the sandbox (synchronous streaming, ssh between the nodes): a role swap while a
 * Chef client keeps writing through the Chef API stand-ins loses no acknowledged write, in both
 * directions (run on the primary, then on the standby, which hands over to the primary over ssh); the
 * old primary follows the new one without a rewind; a second run with the same target finds it done.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { upSandbox } from '../sandbox/index.js';
import {
  inRecovery,
  makeTempDir,
  putNode,
  runCli,
  sql,
  removeSandbox,
  type CliResult,
  type SandboxInfo,
  type SandboxNode,
} from './helpers.js';

interface Load {
  readonly acked: string[];
  stop(): Promise<void>;
}

/**
 * A Chef client writing nodes one after the other, as behind a load balancer: each write goes to the node
 * that answered last, and on a refusal (503 from a standby, or no answer) to the other one.
 */
function startLoad(nodes: readonly [SandboxNode, SandboxNode], tag: string): Load {
  const acked: string[] = [];
  let stopping = false;
  let current = 0;
  let seq = 0;
  const loop = (async () => {
    while (!stopping) {
      const name = `${tag}-${seq}`;
      const target = nodes[current] as SandboxNode;
      const r = await putNode(target, name, { seq });
      if (r.status === 200 || r.status === 201) {
        acked.push(name);
        seq += 1;
      } else {
        current = 1 - current;
        await new Promise((res) => setTimeout(res, 10));
      }
    }
  })();
  return {
    acked,
    async stop() {
      stopping = true;
      await loop;
    },
  };
}

async function countPresent(node: SandboxNode, names: readonly string[]): Promise<number> {
  if (names.length === 0) {
    return 0;
  }
  return Number(
    await sql(node, `SELECT count(*) FROM nodes WHERE name IN (${names.map((n) => `'${n}'`).join(',')})`),
  );
}

async function syncState(primary: SandboxNode, standby: SandboxNode): Promise<string> {
  return sql(
    primary,
    `SELECT state || ' ' || sync_state FROM pg_stat_replication WHERE application_name = 'chef_ha_${standby.name.replace(/-/g, '_')}'`,
    'postgres',
  );
}

describe('switchover (streaming, synchronous)', { timeout: 900_000 }, () => {
  let dir: string;
  let sb: SandboxInfo;
  let a: SandboxNode;
  let b: SandboxNode;

  before(async () => {
    dir = await makeTempDir('chef-ha-e2e-switchover-');
    sb = await upSandbox(dir, { nodes: 2, mode: 'streaming', sync: true });
    [a, b] = sb.nodes as [SandboxNode, SandboxNode];
    const m = await runCli(a, ['setup-master']);
    assert.equal(m.code, 0, m.stderr);
    const s = await runCli(b, ['setup-slave', '--from-master']);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(await syncState(a, b), 'streaming sync');
  });

  after(async () => {
    await removeSandbox(dir);
  });

  test('switchover run on the primary with a writer running: no acknowledged write is lost', async () => {
    const load = startLoad([a, b], 'ab');
    let r: CliResult;
    try {
      await new Promise((res) => setTimeout(res, 1_000));
      r = await runCli(a, ['switchover', '--to', 'chef-b']);
      await new Promise((res) => setTimeout(res, 1_000));
    } finally {
      await load.stop();
    }
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /switchover done: chef-b is the primary and chef-a its standby/);
    assert.match(r.stderr, /wait-standby-replayed\s+done/);
    assert.match(r.stderr, /promote-standby\s+done/);
    // A clean switchover needs no rewind.
    assert.match(r.stderr, /rewind\s+skipped: chef-a shut down cleanly at/);
    assert.equal(await inRecovery(b), false);
    assert.equal(await inRecovery(a), true);
    assert.equal(await syncState(b, a), 'streaming sync');
    assert.ok(load.acked.length > 10, `the writer got writes through (${load.acked.length})`);
    const present = await countPresent(b, load.acked);
    assert.equal(present, load.acked.length, `lost ${load.acked.length - present} of ${load.acked.length}`);
  });

  test('switchover run twice with the same target: the second run says it is done', async () => {
    const r = await runCli(a, ['switchover', '--to', 'chef-b']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /nothing to do: chef-b is already the primary and chef-a streams from it/);
    const r2 = await runCli(b, ['switchover', '--to', 'chef-b']);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stdout, /nothing to do/);
  });

  test('switchover run on the standby hands over to the primary over ssh: the other direction, no write lost', async () => {
    const load = startLoad([b, a], 'ba');
    let r: CliResult;
    try {
      await new Promise((res) => setTimeout(res, 1_000));
      r = await runCli(a, ['switchover']);
      await new Promise((res) => setTimeout(res, 1_000));
    } finally {
      await load.stop();
    }
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /running it on chef-b over ssh/);
    assert.equal(await inRecovery(a), false);
    assert.equal(await inRecovery(b), true);
    assert.equal(await syncState(a, b), 'streaming sync');
    assert.ok(load.acked.length > 10, `the writer got writes through (${load.acked.length})`);
    const present = await countPresent(a, load.acked);
    assert.equal(present, load.acked.length, `lost ${load.acked.length - present} of ${load.acked.length}`);
    const earlier = Number(await sql(a, `SELECT count(*) FROM nodes WHERE name LIKE 'ab-%'`));
    assert.ok(earlier > 10, 'the first run’s writes are still there');
  });
});
