/**
 * The sandbox in network namespaces (`--net netns --proxy`): every node and the proxy host in its own
 * namespace on a bridge in another one. chef-ha-ctl runs inside the nodes' namespaces and reaches the
 * peer over the bridge; a partition is the master's link taken down at the bridge; `down` leaves no
 * namespace, veth or process behind, also after an `up` that was killed halfway.
 * Run: node --import tsx --test --test-concurrency=1 test/e2e/netns.test.ts (needs `npm run build`).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, readlink, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  cutLink,
  downSandbox,
  freezePostgres,
  healLink,
  healNode,
  partitionNode,
  readSandbox,
  runOnNode,
  startServices,
  stopServices,
  thawPostgres,
  upSandbox,
} from '../sandbox/index.js';
import { linksWithPrefix, netnsWithPrefix } from '../sandbox/netns.js';
import { allPids, cmdlineOf, isAlive } from '../sandbox/proc.js';
import {
  REPO,
  getClient,
  inRecovery,
  makeTempDir,
  postmasterPid,
  registerClient,
  runCli,
  sql,
  waitFor,
  removeSandbox,
  type SandboxInfo,
  type SandboxNode,
} from './helpers.js';

/** The network namespace a process is in, as `net:[inode]` ('' when it is gone). */
async function netnsOfPid(pid: number): Promise<string> {
  return readlink(`/proc/${pid}/ns/net`).catch(() => '');
}

async function netnsId(name: string): Promise<string> {
  return `net:[${(await stat(join('/run/netns', name))).ino}]`;
}

/** Live (non-zombie) processes whose command line names dir, except this test process. */
async function processesNaming(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await allPids()) {
    if (pid === process.pid) {
      continue;
    }
    const cmd = await cmdlineOf(pid);
    if (cmd.includes(dir) && (await isAlive(pid))) {
      found.push(`${pid} ${cmd.slice(0, 160)}`);
    }
  }
  return found;
}

/** What of a sandbox is still on the host: namespaces, root-namespace links, processes, port lock. */
async function leftovers(dir: string, basePort: number): Promise<string[]> {
  return [
    ...(await netnsWithPrefix(`chs${basePort}-`)).map((n) => `namespace ${n}`),
    ...(await linksWithPrefix(`chs${basePort}h`)).map((l) => `link ${l}`),
    ...(await processesNaming(dir)).map((p) => `process ${p}`),
    ...(existsSync(`/tmp/chef-ha-sandbox-ports/${basePort}`) ? [`port reservation ${basePort}`] : []),
  ];
}

/** Whether a TCP connection from inside `from`'s namespace to host:port succeeds within 2 s. */
async function tcpFrom(from: SandboxNode, host: string, port: number): Promise<boolean> {
  const probe = `const s=require('net').connect(${port},'${host}');s.setTimeout(2000,()=>process.exit(2));s.on('connect',()=>process.exit(0));s.on('error',()=>process.exit(1));`;
  const r = await runOnNode(from, [process.execPath, '-e', probe], { timeoutMs: 10_000 });
  return r.code === 0;
}

/** Whether a GET answers 200 within 3 s. */
async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}

describe('sandbox in network namespaces with a proxy host', { timeout: 900_000 }, () => {
  let dir = '';
  let sb: SandboxInfo;
  let a: SandboxNode;
  let b: SandboxNode;
  let downDone = false;

  before(async () => {
    dir = await makeTempDir('chef-ha-e2e-netns-');
    sb = await upSandbox(dir, { nodes: 2, net: 'netns', proxy: true });
    [a, b] = sb.nodes as [SandboxNode, SandboxNode];
  });

  after(async () => {
    if (downDone) {
      await rm(dir, { recursive: true, force: true });
    } else {
      await removeSandbox(dir);
    }
  });

  test('each node lives in its own namespace with an address on the sandbox subnet', async () => {
    assert.equal(sb.net, 'netns');
    assert.ok(sb.network, 'sandbox.json has a network entry');
    const prefix = sb.network.subnet.replace(/\.0\/24$/, '.');
    for (const n of [a, b]) {
      const ns = n.netns;
      assert.ok(
        ns !== null && ns.startsWith(`chs${sb.basePort}-`),
        `${n.name} has a namespace named after its ports`,
      );
      assert.ok(n.address.startsWith(prefix), `${n.name} is on ${sb.network.subnet}`);
      const pm = await postmasterPid(n.postgres.dataDir);
      assert.ok(pm !== undefined, `${n.name}'s PostgreSQL runs`);
      assert.equal(await netnsOfPid(pm), await netnsId(ns), `${n.name}'s postmaster is in ${n.netns}`);
      const sshd = Number((await readFile(join(n.root, 'run/sshd.pid'), 'utf8')).trim());
      assert.equal(await netnsOfPid(sshd), await netnsId(ns), `${n.name}'s sshd is in ${n.netns}`);
      const ping = (await fetch(`${n.chefApi}/_status`, { signal: AbortSignal.timeout(5_000) }).then((r) =>
        r.json(),
      )) as { pid: number };
      assert.equal(await netnsOfPid(ping.pid), await netnsId(ns), `${n.name}'s erchef is in ${n.netns}`);
      const config = JSON.parse(await readFile(n.config, 'utf8')) as {
        node: { address: string };
        peer: { address: string };
      };
      const peer = n === a ? b : a;
      assert.equal(config.node.address, n.address);
      assert.equal(config.peer.address, peer.address);
    }
    assert.ok(sb.proxy?.netns, 'the proxy host has its own namespace');
    const haproxy = Number((await readFile(sb.proxy.pidFile, 'utf8')).trim());
    assert.match(await cmdlineOf(haproxy), /^haproxy /);
    assert.equal(await netnsOfPid(haproxy), await netnsId(sb.proxy.netns));
    // the root namespace holds nothing of the sandbox but the test host's link
    const bridgeNs = await netnsId(sb.network.bridgeNetns);
    assert.notEqual(await netnsOfPid(process.pid), bridgeNs);
  });

  test('setup-master and setup-slave run inside the namespaces; the slave copies the master over the bridge', async () => {
    const master = await runCli(a, ['setup-master']);
    assert.equal(master.code, 0, master.stderr);
    // --from-master goes over ssh from chef-b's namespace to chef-a's sshd, across the bridge
    const slave = await runCli(b, ['setup-slave', '--from-master', `root@${a.address}`]);
    assert.equal(slave.code, 0, slave.stderr);
    assert.equal(await inRecovery(b), true);
    assert.equal(
      await sql(a, `SELECT client_addr FROM pg_stat_replication WHERE state = 'streaming'`, 'postgres'),
      b.address,
      'the standby streams from its bridge address',
    );
    const reg = await registerClient(a, 'netns-web-01');
    assert.equal(reg.status, 201);
    const seen = await waitFor(
      'the client on the slave',
      async () => (await getClient(b, 'netns-web-01')).status === 200,
    );
    assert.equal(seen, true);
  });

  test('services start health-server in each namespace; the proxy host (haproxy-config) sends Chef API writes to the master', async () => {
    const proxy = sb.proxy;
    assert.ok(proxy);
    assert.match(await readFile(proxy.config, 'utf8'), /managed by chef-ha-ctl .*\(haproxy-config\)/);
    const reports = await startServices(sb);
    const help = (await runCli(a, ['--help'])).stdout;
    for (const r of reports) {
      if (new RegExp(`^  ${r.service}\\b`, 'm').test(help)) {
        assert.equal(r.state, 'started', `${r.node} ${r.service}`);
      } else {
        // a service whose command this build lacks is reported, never imitated
        assert.equal(r.state, 'skipped', `${r.node} ${r.service}`);
        assert.match(r.detail ?? '', new RegExp(`no \`${r.service}\` command`));
      }
    }
    const health = reports.find((r) => r.node === a.name && r.service === 'health-server');
    assert.equal(health?.state, 'started', 'this build has health-server');
    assert.ok(health.pid !== undefined);
    assert.equal(await netnsOfPid(health.pid), await netnsId(a.netns ?? ''));
    // the test host reaches each node's health endpoint over the bridge
    const primary = await waitFor(
      'chef-a /primary 200',
      () => httpOk(`http://${a.address}:${a.healthPort}/primary`),
      20_000,
      250,
    );
    assert.equal(primary, true);
    assert.equal(
      await httpOk(`http://${b.address}:${b.healthPort}/primary`),
      false,
      'the standby is not primary',
    );
    const reg = await waitFor(
      'the proxy to mark the master up',
      async () => {
        const r = await registerClient({ ...a, chefApi: proxy.chefApi }, 'netns-via-proxy');
        return r.status === 201 ? r : null;
      },
      30_000,
      250,
    );
    assert.ok(reg);
    assert.equal(reg.status, 201);
    assert.equal(await sql(a, `SELECT count(*) FROM clients WHERE name = 'netns-via-proxy'`), '1');
  });

  test('a cut between the nodes, then a partitioned master: the slave loses it, status on the slave says so; heal restores it', async () => {
    assert.equal(await tcpFrom(b, a.address, a.postgres.port), true, 'before: the slave reaches the master');
    // a cut between the two nodes only: the slave loses the master, the test host keeps it
    await cutLink(sb, a.name, b.name);
    try {
      assert.equal(
        await tcpFrom(b, a.address, a.postgres.port),
        false,
        'cut: the slave no longer reaches the master',
      );
      assert.equal(await httpOk(`${a.chefApi}/_ping`), true, 'cut: the test host still reaches the master');
    } finally {
      await healLink(sb, a.name, b.name);
    }
    assert.equal(await tcpFrom(b, a.address, a.postgres.port), true, 'after the cut: reachable again');
    await partitionNode(sb, a.name);
    try {
      assert.equal(await httpOk(`${a.chefApi}/_ping`), false, 'the test host no longer reaches the master');
      assert.equal(
        await tcpFrom(b, a.address, a.postgres.port),
        false,
        'the slave no longer reaches the master',
      );
      // the master's own unix socket still answers: only its cable is pulled
      assert.equal(await sql(a, 'SELECT 1', 'postgres'), '1');
      const status = await runCli(b, ['status']);
      assert.equal(status.code, 9, status.stdout + status.stderr);
      assert.match(
        status.stdout,
        new RegExp(`${a.name} \\(${a.address.replace(/\./g, '\\.')}\\)\\s+unreachable`),
      );
    } finally {
      await healNode(sb, a.name);
    }
    assert.equal(await tcpFrom(b, a.address, a.postgres.port), true, 'after heal: reachable again');
    const healthy = await waitFor(
      'status 0 after heal',
      async () => {
        const r = await runCli(b, ['status']);
        return r.code === 0 ? r : null;
      },
      90_000,
      1_000,
    );
    assert.ok(healthy);
    assert.match(healthy.stdout, /standby, streaming/);
  });

  test('freeze stops the master postmaster by pid, thaw continues it', async () => {
    const state = async (pid: number): Promise<string> => {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    };
    const pid = await freezePostgres(sb, a.name);
    try {
      assert.equal(pid, await postmasterPid(a.postgres.dataDir));
      // the kernel stops the process at its next return to user space: poll for the state
      assert.equal(
        await waitFor('the postmaster to be stopped', async () => (await state(pid)) === 'T'),
        true,
      );
    } finally {
      await thawPostgres(sb, a.name);
    }
    assert.equal(await waitFor('the postmaster to run again', async () => (await state(pid)) !== 'T'), true);
    assert.equal(await sql(a, 'SELECT 1', 'postgres'), '1');
  });

  test('services are supervised inside the node namespace: restarted after a kill, stopped by pid', async () => {
    // a generic long-running command stands for a service here (the supervisor itself is under test)
    const probe = [{ name: 'probe', command: (n: SandboxNode) => ['tail', '-f', n.config] as const }];
    const started = await startServices(sb, probe);
    assert.deepEqual(
      started.map((r) => [r.node, r.state]),
      [
        [a.name, 'started'],
        [b.name, 'started'],
      ],
    );
    const pidFile = join(a.root, 'run/chef-ha/probe.pid');
    const first = Number((await readFile(pidFile, 'utf8')).trim());
    assert.equal(await netnsOfPid(first), await netnsId(a.netns ?? ''));
    process.kill(first, 'SIGKILL');
    const second = await waitFor(
      'the supervisor to restart the probe',
      async () => {
        const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
        return pid > 0 && pid !== first && (await isAlive(pid)) ? pid : null;
      },
      20_000,
      100,
    );
    assert.ok(second);
    assert.equal(await netnsOfPid(second), await netnsId(a.netns ?? ''));
    const again = await startServices(sb, probe);
    assert.deepEqual(
      again.map((r) => r.state),
      ['already running', 'already running'],
    );
    const supervisor = Number(
      (await readFile(join(a.root, 'run/chef-ha/probe.supervise.pid'), 'utf8')).trim(),
    );
    const stopped = await stopServices(sb, probe);
    assert.deepEqual(
      stopped.map((r) => r.state),
      ['stopped', 'stopped'],
    );
    assert.equal(await isAlive(second), false);
    assert.equal(await isAlive(supervisor), false);
    assert.match(await readFile(join(a.root, 'var/log/chef-ha/probe.log'), 'utf8'), /restarting in/);
  });

  test('down removes the namespaces, the veths and every process', async () => {
    const basePort = sb.basePort;
    downDone = true;
    await downSandbox(dir);
    assert.deepEqual(await leftovers(dir, basePort), []);
    assert.equal((await readSandbox(dir)).state, 'down');
  });
});

describe('down after a killed up', { timeout: 600_000 }, () => {
  test('down after `up --net netns --proxy` was killed halfway leaves no namespace, veth or process', async (t) => {
    const dir = await makeTempDir('chef-ha-e2e-netns-killed-');
    // the whole `up` process group is killed, as a CI job or a ^C would
    const up = spawn(join(REPO, 'scripts', 'sandbox'), ['up', dir, '--net', 'netns', '--proxy'], {
      stdio: 'ignore',
      detached: true,
    });
    let basePort = 0;
    t.after(async () => {
      if (up.exitCode === null && up.pid !== undefined) {
        process.kill(-up.pid, 'SIGKILL');
      }
      await removeSandbox(dir);
    });
    // kill it once a node's PostgreSQL runs inside its namespace (namespaces, veths and daemons exist)
    await waitFor(
      'up to start a PostgreSQL in a namespace',
      async () => {
        const info = await readSandbox(dir).catch(() => null);
        const n = info?.nodes[0];
        if (info === null || n === undefined) {
          return false;
        }
        basePort = info.basePort;
        return (await postmasterPid(n.postgres.dataDir)) !== undefined;
      },
      120_000,
      100,
    );
    assert.ok(up.pid !== undefined);
    process.kill(-up.pid, 'SIGKILL');
    await new Promise((r) => up.once('exit', r));
    assert.ok((await netnsWithPrefix(`chs${basePort}-`)).length > 0, 'the killed up left namespaces');
    await downSandbox(dir);
    assert.deepEqual(await leftovers(dir, basePort), []);
  });
});
