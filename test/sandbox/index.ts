/**
 * The chef-ha test sandbox (DESIGN.md section 8): stand-in Chef Server 11 nodes on real PostgreSQL 15,
 * driven by `scripts/sandbox` and by the e2e tests through this API.
 *
 *   upSandbox(dir, opts)   build and start everything under dir, write dir/sandbox.json
 *   downSandbox(dir)       stop everything it started (idempotent, works after a half-failed or killed up)
 *   readSandbox(dir)       parse dir/sandbox.json
 *   runOnNode(node, argv)  run a command on a node (inside its network namespace in netns mode)
 *   partitionNode / healNode / freezePostgres / thawPostgres   faults for the tests
 *   startServices / stopServices   the long-running chef-ha-ctl services, supervised (services.ts)
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { buildNode, describeNode, writeChefHaConfig, writeKnownHosts, type NodePlan } from './build.js';
import { PG_BINDIR, REPO_ROOT, nodePaths } from './paths.js';
import {
  createNetwork,
  cutBetween,
  healBetween,
  inNetns,
  planNetLayout,
  removeNetwork,
  setBridgePort,
  type NetLayout,
} from './netns.js';
import { PORT_OFFSET, PORTS_PER_NODE, releasePorts, releasePortsOwnedBy, reservePorts } from './ports.js';
import { allPids, cmdlineOf, isAlive, parentOf, run, runAs, runOk, stopPid, type RunResult } from './proc.js';
import { haproxySection, startProxy, stopProxy, type ProxyPlan } from './proxy.js';
import { stopServices } from './services.js';
import { addDcsToConfig, startEtcd, stopEtcd, type EtcdPlan } from './etcd.js';
import { knownPids } from './standins/runit.js';
import type { RecordedPid, SandboxInfo, SandboxNode, UpOptions } from './types.js';

export type {
  RecordedPid,
  SandboxInfo,
  SandboxNetwork,
  SandboxNode,
  SandboxProxy,
  SandboxEtcd,
  UpOptions,
} from './types.js';
export { startServices, stopServices, SERVICES, type ServiceReport } from './services.js';

/** Thrown for flags that a later issue implements (the CLI exits 2). */
export class NotImplementedError extends Error {}
/** Thrown when `up` is asked for a sandbox that is already running. */
export class SandboxUpError extends Error {}
/** Thrown when a command does not fit this sandbox (unknown node, partition on loopback, ...). */
export class SandboxStateError extends Error {}

const NODE_NAMES = 'abcdefghijklmnopqrstuvwxyz';
/** Offsets of the etcd member's ports in the proxy host's block (after HAProxy's 0-3). */
const ETCD_OFFSET = { client: 5, peer: 6 } as const;

/** Reads and parses DIR/sandbox.json. */
export async function readSandbox(dir: string): Promise<SandboxInfo> {
  return JSON.parse(await readFile(join(resolve(dir), 'sandbox.json'), 'utf8')) as SandboxInfo;
}

async function writeSandbox(info: SandboxInfo): Promise<void> {
  const file = join(info.dir, 'sandbox.json');
  await writeFile(`${file}.tmp`, JSON.stringify(info, null, 2) + '\n');
  const { rename } = await import('node:fs/promises');
  await rename(`${file}.tmp`, file);
}

async function postmasterPid(dataDir: string): Promise<number | null> {
  try {
    const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 && (await isAlive(pid)) ? pid : null;
  } catch {
    return null;
  }
}

/** True when any process of the sandbox recorded in sandbox.json still runs. */
export async function isSandboxUp(dir: string): Promise<boolean> {
  const abs = resolve(dir);
  let info: SandboxInfo;
  try {
    info = await readSandbox(abs);
  } catch {
    return false;
  }
  for (const r of info.pids) {
    if ((await isAlive(r.pid)) && (await cmdlineOf(r.pid)).includes(abs)) {
      return true;
    }
  }
  for (const n of info.nodes) {
    if (
      (await postmasterPid(n.postgres.dataDir)) !== null ||
      (await postmasterPid(n.embeddedPostgres.dataDir)) !== null
    ) {
      return true;
    }
  }
  return false;
}

/** Every directory that is not searchable by "other" on the way from / to dir. */
async function untraversableAncestors(dir: string): Promise<string[]> {
  const bad: string[] = [];
  for (let d = dirname(dir); ; d = dirname(d)) {
    const st = await stat(d);
    if ((st.mode & 0o001) === 0) {
      bad.push(d);
    }
    if (d === '/') {
      break;
    }
  }
  return bad;
}

async function collectPids(info: SandboxInfo): Promise<RecordedPid[]> {
  const pids: RecordedPid[] = [];
  for (const n of info.nodes) {
    const p = nodePaths(n.root);
    const dist = await postmasterPid(p.pgDataDir);
    if (dist !== null) {
      pids.push({ pid: dist, node: n.name, what: 'postgresql (distribution 15/main)' });
    }
    const sshd = Number((await readFile(p.sshdPidFile, 'utf8').catch(() => '')).trim());
    if (sshd > 0) {
      pids.push({ pid: sshd, node: n.name, what: 'sshd' });
    }
    for (const pid of await knownPids(p)) {
      if (await isAlive(pid)) {
        pids.push({ pid, node: n.name, what: (await cmdlineOf(pid)).slice(0, 120) });
      }
    }
  }
  return pids;
}

/**
 * Builds and starts a sandbox under `dir` and writes dir/sandbox.json.
 * @throws SandboxUpError when it already runs; Error for --etcd without --proxy.
 */
export async function upSandbox(dir: string, opts: UpOptions = {}): Promise<SandboxInfo> {
  const abs = resolve(dir);
  const count = opts.nodes ?? 2;
  const net = opts.net ?? 'loopback';
  const withProxy = opts.proxy === true;
  const withEtcd = opts.etcd === true;
  if (withEtcd && !withProxy) {
    throw new Error('--etcd needs --proxy: the etcd member runs on the proxy host');
  }
  if (opts.automaticFailover === true && !withEtcd) {
    throw new Error('--automatic-failover needs --etcd (the third voter)');
  }
  if (!Number.isInteger(count) || count < 2 || count > NODE_NAMES.length) {
    throw new Error(`--nodes must be an integer from 2 to ${NODE_NAMES.length}`);
  }
  await mkdir(abs, { recursive: true });
  if (existsSync(join(abs, 'sandbox.json'))) {
    if (await isSandboxUp(abs)) {
      throw new SandboxUpError(
        `a sandbox is already up in ${abs}; run \`scripts/sandbox down ${abs}\` first`,
      );
    }
    await downSandbox(abs);
    await rm(join(abs, 'nodes'), { recursive: true, force: true });
    await rm(join(abs, 'ssh'), { recursive: true, force: true });
    await rm(join(abs, 'sandbox.json'), { force: true });
  }
  await chmod(abs, 0o755);
  const bad = await untraversableAncestors(abs);
  if (bad.length > 0) {
    throw new Error(
      `user postgres cannot reach ${abs}: ${bad.join(', ')} not searchable by others (chmod o+x or pick another DIR)`,
    );
  }
  // one block per node, plus one for the proxy host
  const basePort = await reservePorts(abs, count + (withProxy ? 1 : 0));
  const layout: NetLayout | null = net === 'netns' ? planNetLayout(basePort, count) : null;
  const plans: NodePlan[] = [];
  for (let i = 0; i < count; i++) {
    const b = basePort + i * PORTS_PER_NODE;
    const netNode = layout?.nodes[i] ?? null;
    plans.push({
      name: `chef-${NODE_NAMES[i] ?? String(i)}`,
      index: i,
      address: netNode?.address ?? '127.0.0.1',
      netns: netNode?.ns ?? null,
      ports: {
        postgres: b + PORT_OFFSET.postgres,
        embeddedPostgres: b + PORT_OFFSET.embeddedPostgres,
        chefApi: b + PORT_OFFSET.chefApi,
        health: b + PORT_OFFSET.health,
        ssh: b + PORT_OFFSET.ssh,
      },
    });
  }
  const sshDir = join(abs, 'ssh');
  const clientKey = join(sshDir, 'id_ed25519');
  let info: SandboxInfo = {
    dir: abs,
    net,
    repo: REPO_ROOT,
    state: 'starting',
    mode: opts.mode ?? 'streaming',
    synchronous: opts.sync ?? false,
    basePort,
    sshIdentityFile: clientKey,
    nodes: plans.map((pl) => describeNode(nodePaths(join(abs, 'nodes', pl.name)), pl)),
    pids: [],
    createdAt: new Date().toISOString(),
    network:
      layout === null
        ? null
        : {
            bridgeNetns: layout.bridgeNs,
            subnet: layout.subnet,
            hostAddress: layout.hostAddress,
            hostLink: layout.hostLink,
          },
    proxy: null,
  };
  // written before anything is created: `down` learns the port block (and so the namespace names) here
  await writeSandbox(info);
  if (layout !== null) {
    await createNetwork(abs, layout, withProxy);
  }
  await mkdir(join(abs, 'nodes'), { recursive: true, mode: 0o755 });
  await chmod(join(abs, 'nodes'), 0o755);
  await mkdir(sshDir, { recursive: true, mode: 0o700 });
  await runOk([
    'ssh-keygen',
    '-q',
    '-t',
    'ed25519',
    '-N',
    '',
    '-C',
    `chef-ha-sandbox@${abs}`,
    '-f',
    clientKey,
  ]);

  const proxyBase = basePort + count * PORTS_PER_NODE;
  const proxyPlan: ProxyPlan | null = withProxy
    ? {
        address: layout?.proxy.address ?? '127.0.0.1',
        netns: layout?.proxy.ns ?? null,
        ports: {
          postgres: proxyBase + PORT_OFFSET.postgres,
          postgresReadOnly: proxyBase + PORT_OFFSET.embeddedPostgres,
          chefApi: proxyBase + PORT_OFFSET.chefApi,
          runtimeApi: proxyBase + PORT_OFFSET.health,
        },
      }
    : null;
  const paths = await Promise.all(plans.map((pl) => buildNode(abs, pl, clientKey)));
  for (let i = 0; i < count; i++) {
    const j = (i + 1) % count;
    const [p, pl, peer, peerPl] = [paths[i], plans[i], paths[j], plans[j]];
    if (p === undefined || pl === undefined || peer === undefined || peerPl === undefined) {
      throw new Error('internal: node plan mismatch');
    }
    await writeKnownHosts(p, peer, peerPl);
    await writeChefHaConfig(
      p,
      pl,
      peer,
      peerPl,
      { mode: info.mode, sync: info.synchronous },
      proxyPlan === null ? null : haproxySection(abs, proxyPlan, pl.ports.chefApi, peerPl.ports.chefApi),
    );
  }
  const etcdPlan: EtcdPlan | null =
    withEtcd && proxyPlan !== null
      ? {
          address: proxyPlan.address,
          netns: proxyPlan.netns,
          clientPort: proxyBase + ETCD_OFFSET.client,
          peerPort: proxyBase + ETCD_OFFSET.peer,
        }
      : null;
  if (etcdPlan !== null) {
    for (const p of paths) {
      await addDcsToConfig(
        p.chefHaConfig,
        `http://${etcdPlan.address}:${etcdPlan.clientPort}`,
        opts.automaticFailover === true,
      );
    }
  }
  info = { ...info, pids: await collectPids(info) };
  await writeSandbox(info);

  // first `chef-server-ctl reconfigure` with the original recipe (as right after installing the package)
  const results = await Promise.all(
    paths.map((p) => run([p.ctl, 'reconfigure'], { cwd: abs, timeoutMs: 180_000 })),
  );
  results.forEach((r, i) => {
    if (r.code !== 0) {
      throw new Error(
        `chef-server-ctl reconfigure on ${plans[i]?.name ?? '?'} exited ${r.code}:\n${r.stdout}\n${r.stderr}`,
      );
    }
  });
  if (proxyPlan !== null) {
    info = { ...info, pids: await collectPids(info) };
    await writeSandbox(info);
    info = { ...info, proxy: await startProxy(info, proxyPlan) };
  }
  if (etcdPlan !== null) {
    info = { ...info, etcd: await startEtcd(abs, etcdPlan) };
    await writeSandbox(info);
  }
  info = { ...info, state: 'up', pids: await collectPids(info) };
  await writeSandbox(info);
  return info;
}

/** A node of the sandbox by name. @throws when there is none. */
export function nodeNamed(info: SandboxInfo, name: string): SandboxNode {
  const n = info.nodes.find((x) => x.name === name);
  if (n === undefined) {
    throw new SandboxStateError(
      `no node named ${name} in ${info.dir} (nodes: ${info.nodes.map((x) => x.name).join(', ')})`,
    );
  }
  return n;
}

/**
 * Runs argv on a node: inside its network namespace in netns mode (so that it reaches the peer over the
 * bridge, and whatever it starts stays on that host), as is on loopback. Never rejects on a non-zero exit.
 */
export function runOnNode(
  node: SandboxNode,
  argv: readonly string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return run(inNetns(node.netns, argv), { cwd: '/', timeoutMs: 600_000, ...opts });
}

function needNetwork(info: SandboxInfo): NonNullable<SandboxInfo['network']> {
  if (info.network === null || info.network === undefined) {
    throw new SandboxStateError(
      `partitions need a sandbox started with --net netns (${info.dir} is ${info.net})`,
    );
  }
  return info.network;
}

function bridgePortOf(node: SandboxNode): string {
  return `vb-${node.name.slice(node.name.lastIndexOf('-') + 1)}`;
}

/**
 * Cuts a node off the network: its veth is taken down at the bridge, as if its cable were pulled at
 * the switch (the node keeps its own eth0 up; its local sockets keep working).
 * @throws in loopback mode.
 */
export async function partitionNode(info: SandboxInfo, name: string): Promise<void> {
  await setBridgePort(needNetwork(info).bridgeNetns, bridgePortOf(nodeNamed(info, name)), false);
}

/** Plugs a partitioned node back in. @throws in loopback mode. */
export async function healNode(info: SandboxInfo, name: string): Promise<void> {
  await setBridgePort(needNetwork(info).bridgeNetns, bridgePortOf(nodeNamed(info, name)), true);
}

/** Bridge address of a node, or of the proxy host when name is "proxy". */
function hostAddress(info: SandboxInfo, name: string): string {
  if (name === 'proxy') {
    if (!info.proxy) {
      throw new SandboxStateError(`${info.dir} has no proxy host (up --proxy)`);
    }
    return info.proxy.address;
  }
  return nodeNamed(info, name).address;
}

/**
 * Cuts the traffic between two hosts only (node names, or "proxy"), both ways, at the bridge: each
 * still reaches everyone else. @throws in loopback mode, or without nftables.
 */
export async function cutLink(info: SandboxInfo, a: string, b: string): Promise<void> {
  await cutBetween(needNetwork(info).bridgeNetns, hostAddress(info, a), hostAddress(info, b));
}

/** Undoes cutLink. @throws in loopback mode. */
export async function healLink(info: SandboxInfo, a: string, b: string): Promise<void> {
  await healBetween(needNetwork(info).bridgeNetns, hostAddress(info, a), hostAddress(info, b));
}

async function postmasterOf(node: SandboxNode): Promise<number> {
  const pid = await postmasterPid(node.postgres.dataDir);
  if (pid === null) {
    throw new SandboxStateError(
      `${node.name}'s PostgreSQL is not running (no live postmaster.pid in ${node.postgres.dataDir})`,
    );
  }
  return pid;
}

/**
 * Freezes a node's distribution PostgreSQL: SIGSTOP to its postmaster (by the pid in postmaster.pid).
 * Backends already forked keep running; new connections hang, as with a stuck host. Returns the pid.
 */
export async function freezePostgres(info: SandboxInfo, name: string): Promise<number> {
  const pid = await postmasterOf(nodeNamed(info, name));
  process.kill(pid, 'SIGSTOP');
  return pid;
}

/** SIGCONT to the postmaster frozen by freezePostgres. Returns the pid. */
export async function thawPostgres(info: SandboxInfo, name: string): Promise<number> {
  const pid = await postmasterOf(nodeNamed(info, name));
  process.kill(pid, 'SIGCONT');
  return pid;
}

/** Directories holding PG_VERSION under root (not descending into clusters). */
async function findClusters(root: string, depth = 8): Promise<string[]> {
  if (depth < 0) {
    return [];
  }
  if (existsSync(join(root, 'PG_VERSION'))) {
    return [root];
  }
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const e of entries) {
    if (e.isDirectory() && !e.isSymbolicLink()) {
      found.push(...(await findClusters(join(root, e.name), depth - 1)));
    }
  }
  return found;
}

/**
 * Stops everything the sandbox started: recorded pids, supervised stand-in services, every PostgreSQL
 * cluster under the node roots (pg_ctl stop -m immediate), each sshd, then any process whose command line
 * still names a node root. Idempotent; never throws for processes that are already gone.
 */
export async function downSandbox(dir: string): Promise<void> {
  const abs = resolve(dir);
  let info: SandboxInfo | null = null;
  try {
    info = await readSandbox(abs);
  } catch {
    info = null;
  }
  const nodesDir = join(abs, 'nodes');
  const roots = (await readdir(nodesDir).catch(() => [] as string[])).map((n) => join(nodesDir, n));
  if (info !== null) {
    await stopServices(info);
    await stopProxy(abs);
  }
  await stopEtcd(abs);
  for (const root of roots) {
    // a frozen postmaster ignores SIGTERM until it is continued
    const frozen = await postmasterPid(nodePaths(root).pgDataDir);
    if (frozen !== null) {
      process.kill(frozen, 'SIGCONT');
    }
  }
  for (const root of roots) {
    const p = nodePaths(root);
    for (const pid of await knownPids(p)) {
      await stopPid(pid, { mustContain: root, graceMs: 3_000 });
    }
    for (const cluster of await findClusters(root)) {
      const pid = await postmasterPid(cluster);
      if (pid === null) {
        continue;
      }
      const r = await runAs(
        'postgres',
        [join(PG_BINDIR, 'pg_ctl'), '-D', cluster, '-m', 'immediate', '-w', '-t', '20', 'stop'],
        {
          cwd: '/',
        },
      );
      if (r.code !== 0) {
        await stopPid(pid, { mustContain: cluster, graceMs: 3_000 });
      }
    }
    const sshd = Number((await readFile(p.sshdPidFile, 'utf8').catch(() => '')).trim());
    if (sshd > 0) {
      await stopPid(sshd, { mustContain: root });
    }
  }
  for (const r of info?.pids ?? []) {
    await stopPid(r.pid, { mustContain: abs, graceMs: 3_000 });
  }
  // last sweep: anything still naming a node root (e.g. daemons chef-ha-ctl started), except us
  const protectedPids = new Set<number>();
  for (let pid = process.pid; pid > 1; pid = await parentOf(pid)) {
    protectedPids.add(pid);
  }
  const marks = [`${nodesDir}/`, `${join(abs, 'proxy')}/`];
  for (const pid of await allPids()) {
    if (protectedPids.has(pid)) {
      continue;
    }
    const cmdline = await cmdlineOf(pid);
    const mark = marks.find((m) => cmdline.includes(m));
    if (mark !== undefined) {
      await stopPid(pid, { mustContain: mark, graceMs: 3_000 });
    }
  }
  // namespaces: whatever still runs inside them (started by anything of the sandbox), then the links
  await removeNetwork(abs, info?.basePort ?? null);
  if (info !== null) {
    await releasePorts(abs, info.basePort);
    await writeSandbox({ ...info, state: 'down' });
  }
  // a reservation made by an `up` killed before it wrote sandbox.json
  await releasePortsOwnedBy(abs);
}
