/**
 * Tools of the automatic-failover fault scenarios (test/faults/etcd.test.ts): a pair built by lib.ts's
 * preparePair with an etcd member on the proxy host and failover.automatic on every node, a watch of
 * the leader key and of the standby's promotion (for "no promotion while the primary holds the lease"),
 * and a freeze of a whole node (SIGSTOP of every process in its namespace: PostgreSQL, monitor,
 * health-server, sshd, the Chef stand-ins).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfig } from '../../src/core/config.js';
import { openEtcdDcs, type Dcs } from '../../src/monitor/dcs.js';
import { inRecovery, waitFor } from '../e2e/helpers.js';
import type { SandboxInfo, SandboxNode } from '../sandbox/index.js';
import { pidsInNetns } from '../sandbox/netns.js';
import { nodePaths } from '../sandbox/paths.js';
import { preparePair, type Pair } from './lib.js';

/** The store as a node's config names it, opened from the test host (it reaches the bridge). */
export async function openNodeDcs(node: SandboxNode): Promise<Dcs> {
  return openEtcdDcs(parseConfig(JSON.parse(await readFile(node.config, 'utf8')) as unknown, node.config));
}

/** The pair of lib.ts with etcd and automatic failover; waits until the master holds the leader key. */
export async function prepareAutoPair(dir: string): Promise<Pair> {
  const pair = await preparePair(dir, true, { etcd: true, automaticFailover: true });
  const dcs = await openNodeDcs(pair.master);
  try {
    await waitFor(
      `${pair.master.name} holding the leader key`,
      async () => (await dcs.read().catch(() => undefined))?.leader?.node === pair.master.name,
      60_000,
      250,
    );
  } finally {
    dcs.close();
  }
  return pair;
}

/** The fence record of a node exists (it fenced itself, or was fenced). */
export function isFenced(node: SandboxNode): boolean {
  return existsSync(join(nodePaths(node.root).chefHaStateDir, 'fenced.json'));
}

export interface LeaseSample {
  readonly at: number;
  readonly leader: string | null;
  readonly term: number;
}

/**
 * Reads the leader key every 200 ms and asks the standby whether it is still in recovery every 250 ms:
 * `promotedAt` is the first instant it was not, `lastHeldBy(node)` the last sample where node held the
 * key. A promotion while the old primary holds the lease shows as promotedAt <= lastHeldBy(old).
 */
export class LeaseWatch {
  readonly samples: LeaseSample[] = [];
  promotedAt: number | undefined;
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly dcs: Dcs,
    private readonly standby: SandboxNode,
  ) {}

  start(): void {
    this.running = true;
    this.loops = [
      (async () => {
        while (this.running) {
          const v = await this.dcs.read().catch(() => undefined);
          if (v) {
            this.samples.push({ at: Date.now(), leader: v.leader?.node ?? null, term: v.term });
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      })(),
      (async () => {
        while (this.running && this.promotedAt === undefined) {
          const asked = Date.now();
          const rec = await inRecovery(this.standby).catch(() => true);
          if (!rec) {
            this.promotedAt = asked;
          }
          await new Promise((r) => setTimeout(r, 250));
        }
      })(),
    ];
  }

  lastHeldBy(node: string): number | undefined {
    return this.samples.filter((s) => s.leader === node).at(-1)?.at;
  }

  terms(): number[] {
    return [...new Set(this.samples.map((s) => s.term))];
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** SIGSTOP (or SIGCONT) of every process in a node's namespace: the host frozen, then thawed. */
export async function signalNode(
  sb: SandboxInfo,
  node: SandboxNode,
  signal: 'SIGSTOP' | 'SIGCONT',
): Promise<number> {
  if (node.netns === null) {
    throw new Error(`freezing a node needs a netns sandbox (${sb.dir} is ${sb.net})`);
  }
  const pids = await pidsInNetns(node.netns);
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone meanwhile
    }
  }
  return pids.length;
}

/** Text lines of a node's monitor log that match re (the monitor logs its decisions). */
export async function monitorLines(node: SandboxNode, re: RegExp): Promise<string[]> {
  const text = await readFile(join(node.root, 'var/log/chef-ha/monitor.log'), 'utf8').catch(() => '');
  return text.split('\n').filter((l) => re.test(l));
}

/**
 * Waits until `node`'s monitor has logged `before + 1` finished takeovers ("is the primary now"): the
 * whole failover plan ran (its ssh fence of the old primary too, which holds that node's lock).
 */
export async function waitTakeoverDone(
  node: SandboxNode,
  before: number,
  timeoutMs = 180_000,
): Promise<void> {
  await waitFor(
    `${node.name}'s takeover to finish`,
    async () => (await monitorLines(node, /is the primary now/)).length > before,
    timeoutMs,
    250,
  );
}
