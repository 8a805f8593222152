/**
 * Network namespaces for `--net netns` (docs/sandbox.md, "netns mode"): one namespace per node, one for
 * the proxy host, and one holding the bridge that joins them, so that a partition is a link taken down at
 * the "switch" while each host keeps its own eth0 up (shared/reference/streaming-lab.md section 1).
 *
 * The root namespace gets one veth into the bridge (the "test host", address .1) so that the tests and
 * `scripts/sandbox` reach every node's Chef API and PostgreSQL over TCP without entering a namespace.
 *
 * Names and the subnet derive from the sandbox's reserved port block (ports.ts), so sandboxes running at
 * the same time never collide. Everything is recorded in DIR/net-created.jsonl BEFORE it is created, so
 * that `down` removes it even after an `up` that was killed halfway.
 */
import { appendFile, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { run, runOk, stopPid, waitFor } from './proc.js';
import { BASE_PORT_MIN } from './ports.js';

const NODE_LETTERS = 'abcdefghijklmnopqrstuvwxyz';

/** Where a sandbox's network lives: pure data derived from its base port. */
export interface NetLayout {
  /** namespace holding the bridge br0 */
  readonly bridgeNs: string;
  /** the /24, e.g. "10.203.41.0/24" */
  readonly subnet: string;
  /** the test host's address on the bridge (root namespace) */
  readonly hostAddress: string;
  /** the root namespace's end of the test host's veth */
  readonly hostLink: string;
  readonly proxy: { readonly ns: string; readonly address: string; readonly bridgePort: string };
  readonly nodes: readonly NetNode[];
}

export interface NetNode {
  readonly ns: string;
  readonly address: string;
  /** this node's veth end inside the bridge namespace (taken down for a partition) */
  readonly bridgePort: string;
}

/**
 * The layout for a sandbox whose port block starts at basePort. Base ports are multiples of 10 from
 * BASE_PORT_MIN (10000) up to the kernel's ephemeral range (ports.ts), so k = (basePort - 10000) / 10 is
 * unique per live sandbox and below 5100:
 * subnet 10.(200 + k / 256).(k % 256).0/24, namespaces chs<basePort>-<a|b|...|br|proxy>.
 */
export function planNetLayout(basePort: number, nodeCount: number): NetLayout {
  const k = Math.floor((basePort - BASE_PORT_MIN) / 10);
  if (!Number.isInteger(k) || k < 0 || k >= 56 * 256) {
    throw new Error(`base port ${basePort} is outside the range netns mode can map to a subnet`);
  }
  if (nodeCount < 1 || nodeCount > NODE_LETTERS.length) {
    throw new Error(`netns mode supports 1 to ${NODE_LETTERS.length} nodes`);
  }
  const prefix = `10.${200 + Math.floor(k / 256)}.${k % 256}`;
  const tag = `chs${basePort}`;
  return {
    bridgeNs: `${tag}-br`,
    subnet: `${prefix}.0/24`,
    hostAddress: `${prefix}.1`,
    hostLink: `${tag}h`,
    proxy: { ns: `${tag}-proxy`, address: `${prefix}.10`, bridgePort: 'vb-proxy' },
    nodes: Array.from({ length: nodeCount }, (_, i) => {
      const letter = NODE_LETTERS[i] ?? String(i);
      return { ns: `${tag}-${letter}`, address: `${prefix}.${11 + i}`, bridgePort: `vb-${letter}` };
    }),
  };
}

/** One thing created on the host, as recorded in DIR/net-created.jsonl. */
type Created = { kind: 'netns'; name: string } | { kind: 'link'; name: string };

function journalOf(dir: string): string {
  return join(dir, 'net-created.jsonl');
}

async function record(dir: string, c: Created): Promise<void> {
  await appendFile(journalOf(dir), JSON.stringify(c) + '\n');
}

async function readJournal(dir: string): Promise<Created[]> {
  const text = await readFile(journalOf(dir), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Created];
      } catch {
        return []; // a line cut short by a kill: the name is unknown, the namespace prefix sweep finds it
      }
    });
}

/** True when a namespace with this name exists (ip netns list). */
export function netnsExists(name: string): boolean {
  return existsSync(join('/run/netns', name));
}

async function ip(args: readonly string[]): Promise<void> {
  await runOk(['ip', ...args], { timeoutMs: 20_000 });
}

async function addNetns(dir: string, name: string): Promise<void> {
  if (netnsExists(name)) {
    throw new Error(
      `network namespace ${name} already exists: another sandbox (or a crashed one) owns this port block; ` +
        `run \`scripts/sandbox down\` on it, or \`ip netns pids ${name}\` then \`ip netns del ${name}\``,
    );
  }
  await record(dir, { kind: 'netns', name });
  await ip(['netns', 'add', name]);
  await ip(['-n', name, 'link', 'set', 'lo', 'up']);
}

/** veth from the bridge namespace into `ns` (named eth0 there), enslaved to br0, both ends up. */
async function plugHost(layout: NetLayout, bridgePort: string, ns: string, address: string): Promise<void> {
  const br = layout.bridgeNs;
  await ip([
    '-n',
    br,
    'link',
    'add',
    'name',
    bridgePort,
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    ns,
  ]);
  await ip(['-n', br, 'link', 'set', bridgePort, 'master', 'br0']);
  await ip(['-n', br, 'link', 'set', bridgePort, 'up']);
  await ip(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
  await ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
}

/**
 * Creates the bridge namespace, one namespace per node (and the proxy's), the veths and the test host's
 * link in the root namespace. Each creation is journaled first.
 * @throws when a namespace of this layout already exists or an `ip` command fails.
 */
export async function createNetwork(dir: string, layout: NetLayout, withProxy: boolean): Promise<void> {
  await addNetns(dir, layout.bridgeNs);
  await ip(['-n', layout.bridgeNs, 'link', 'add', 'name', 'br0', 'type', 'bridge']);
  await ip(['-n', layout.bridgeNs, 'link', 'set', 'br0', 'up']);
  for (const n of layout.nodes) {
    await addNetns(dir, n.ns);
    await plugHost(layout, n.bridgePort, n.ns, n.address);
  }
  if (withProxy) {
    await addNetns(dir, layout.proxy.ns);
    await plugHost(layout, layout.proxy.bridgePort, layout.proxy.ns, layout.proxy.address);
  }
  // the test host: a veth whose far end is in the root namespace (netns 1 = the namespace of pid 1)
  await record(dir, { kind: 'link', name: layout.hostLink });
  await ip([
    '-n',
    layout.bridgeNs,
    'link',
    'add',
    'name',
    'vb-host',
    'type',
    'veth',
    'peer',
    'name',
    layout.hostLink,
    'netns',
    '1',
  ]);
  await ip(['-n', layout.bridgeNs, 'link', 'set', 'vb-host', 'master', 'br0']);
  await ip(['-n', layout.bridgeNs, 'link', 'set', 'vb-host', 'up']);
  await ip(['addr', 'add', `${layout.hostAddress}/24`, 'dev', layout.hostLink]);
  await ip(['link', 'set', layout.hostLink, 'up']);
}

/** Pids of the processes in a namespace (`ip netns pids`), [] when it does not exist. */
export async function pidsInNetns(name: string): Promise<number[]> {
  if (!netnsExists(name)) {
    return [];
  }
  const r = await run(['ip', 'netns', 'pids', name], { timeoutMs: 20_000 });
  return r.stdout
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);
}

/** Names of every namespace whose name starts with prefix. */
export async function netnsWithPrefix(prefix: string): Promise<string[]> {
  const r = await run(['ip', 'netns', 'list'], { timeoutMs: 20_000 });
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/** Names of root-namespace links whose name starts with prefix. */
export async function linksWithPrefix(prefix: string): Promise<string[]> {
  const r = await run(['ip', '-o', 'link', 'show'], { timeoutMs: 20_000 });
  return r.stdout
    .split('\n')
    .map((l) => (l.split(': ')[1] ?? '').split('@')[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/**
 * Removes what createNetwork made for this sandbox: every process still inside its namespaces (stopped by
 * pid), the test host's link, then the namespaces. Uses the journal and, when the sandbox's base port is
 * known, the chs<basePort> name prefix. Idempotent; waits until the kernel has really removed the links.
 */
export async function removeNetwork(dir: string, basePort: number | null): Promise<void> {
  const journal = await readJournal(dir);
  const namespaces = new Set(journal.filter((c) => c.kind === 'netns').map((c) => c.name));
  const links = new Set(journal.filter((c) => c.kind === 'link').map((c) => c.name));
  if (basePort !== null) {
    const tag = `chs${basePort}`;
    for (const n of await netnsWithPrefix(`${tag}-`)) {
      namespaces.add(n);
    }
    for (const l of await linksWithPrefix(`${tag}h`)) {
      links.add(l);
    }
  }
  for (const ns of namespaces) {
    // every process in a sandbox namespace was started for the sandbox: `up`, a stand-in, chef-ha-ctl
    await Promise.all((await pidsInNetns(ns)).map((pid) => stopPid(pid, { graceMs: 3_000 })));
  }
  for (const l of links) {
    await run(['ip', 'link', 'del', l], { timeoutMs: 20_000 });
  }
  for (const ns of namespaces) {
    if (netnsExists(ns)) {
      await run(['ip', 'netns', 'del', ns], { timeoutMs: 20_000 });
    }
  }
  // namespace teardown is asynchronous in the kernel: the veth ends vanish a moment after `netns del`
  const gone = await waitFor(async () => {
    const present = await linksWithPrefix('');
    return [...links].every((l) => !present.includes(l));
  }, 10_000);
  if (!gone || [...namespaces].some(netnsExists)) {
    throw new Error(
      `could not remove the sandbox network (${[...namespaces, ...links].join(', ')}); see \`ip netns list\``,
    );
  }
  await rm(journalOf(dir), { force: true });
}

/** argv that runs `argv` inside namespace ns (unchanged when ns is null). */
export function inNetns(ns: string | null, argv: readonly string[]): string[] {
  return ns === null ? [...argv] : ['ip', 'netns', 'exec', ns, ...argv];
}

/** Takes a node's (or the proxy's) port on the bridge down or up: a cable pulled at the switch. */
export async function setBridgePort(bridgeNs: string, port: string, up: boolean): Promise<void> {
  await ip(['-n', bridgeNs, 'link', 'set', port, up ? 'up' : 'down']);
}

const CUT_TABLE = 'chs_sandbox';

/**
 * Drops every IPv4 packet between two addresses at the bridge (nftables, bridge family, in the bridge
 * namespace), both ways; all their other traffic flows. Packets are dropped, not refused, as in a real
 * partition. Needs Debian's `nftables` (scripts/install-deps).
 * @throws when nft is missing or refuses the rules.
 */
export async function cutBetween(bridgeNs: string, a: string, b: string): Promise<void> {
  const nft = await run(['nft', '--version']).catch(() => null);
  if (nft === null || nft.code !== 0) {
    throw new Error(
      'a cut between two hosts needs nft: apt-get install nftables (scripts/install-deps does)',
    );
  }
  const exists = await run(['ip', 'netns', 'exec', bridgeNs, 'nft', 'list', 'table', 'bridge', CUT_TABLE]);
  if (exists.code !== 0) {
    await runOk(['ip', 'netns', 'exec', bridgeNs, 'nft', '-f', '-'], {
      input: `table bridge ${CUT_TABLE} {
  set cuts { type ipv4_addr . ipv4_addr; }
  chain forward { type filter hook forward priority 0; policy accept; ip saddr . ip daddr @cuts drop; }
}
`,
    });
  }
  await runOk([
    'ip',
    'netns',
    'exec',
    bridgeNs,
    'nft',
    'add',
    'element',
    'bridge',
    CUT_TABLE,
    'cuts',
    `{ ${a} . ${b}, ${b} . ${a} }`,
  ]);
}

/** Undoes cutBetween (nothing to do when there is no such cut). */
export async function healBetween(bridgeNs: string, a: string, b: string): Promise<void> {
  for (const [x, y] of [
    [a, b],
    [b, a],
  ] as const) {
    // one element at a time: deleting an absent element fails, and must not keep the other one
    await run([
      'ip',
      'netns',
      'exec',
      bridgeNs,
      'nft',
      'delete',
      'element',
      'bridge',
      CUT_TABLE,
      'cuts',
      `{ ${x} . ${y} }`,
    ]);
  }
}
