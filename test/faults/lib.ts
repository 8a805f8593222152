/**
 * The fault suite's tools, on a netns sandbox with a proxy host (docs/sandbox.md):
 *
 *   preparePair(dir, sync)   up --net netns --proxy, setup-master, setup-slave, the writer's SQL role and
 *                            table, services (health-server, monitor) on both nodes, the proxy routing
 *   Writer                   Chef API PUT /nodes/<unique> and SQL INSERTs through the proxy's frontends;
 *                            every acknowledged write with when and by which node
 *   Sampler                  every node's `/primary` every 100 ms; instants where two nodes answer 200
 *   check(...)               lost acknowledged writes on the final primary, and writes acknowledged by
 *                            the old node after the new primary acknowledged its first
 *   SCENARIOS                the faults, each with the operator's action (`chef-ha-ctl failover` on the
 *                            standby, run on its node) and the restoration of the pair (heal, rejoin)
 *
 * Attribution of an acknowledged write to a node:
 *   - SQL: the INSERT returns `inet_server_addr()` in the same statement, that is the address of the
 *     node whose PostgreSQL committed it (HAProxy forwards TCP; the node sees the proxy's connection on
 *     its own bridge address).
 *   - Chef API: the sandbox's erchef stand-in names itself in an `x-sandbox-erchef` response header (its
 *     listen address, a sandbox-only detail); the stand-in writes to its own node's PostgreSQL.
 *
 * The writer's SQL path through HAProxy: the test creates a role `chef_ha_faults` (password, SCRAM) on
 * the master, which replicates it, and appends `host postgres chef_ha_faults <sandbox subnet>
 * scram-sha-256` to both nodes' pg_hba.conf (Debian layout: outside the data directory, so rejoin and
 * base backups keep it), then reloads. The table is `public.faults_writes` in database `postgres`.
 */
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { inRecovery, postmasterPid, runCli, sql, waitFor, type CliResult } from '../e2e/helpers.js';
import {
  cutLink,
  freezePostgres,
  healLink,
  healNode,
  partitionNode,
  runOnNode,
  SERVICES,
  startServices,
  stopServices,
  thawPostgres,
  upSandbox,
  type SandboxInfo,
  type SandboxNode,
  type UpOptions,
} from '../sandbox/index.js';
import { nodePaths } from '../sandbox/paths.js';
import { startNodePostgres } from '../sandbox/postgres.js';

export const FAULT_ROLE = 'chef_ha_faults';
const FAULT_PASSWORD = 'faults-only-in-the-sandbox';

export interface Ack {
  readonly kind: 'chef' | 'sql';
  readonly id: string;
  /** node name that acknowledged ('?' when the answer did not say) */
  readonly node: string;
  /** Date.now() when the acknowledgement arrived */
  readonly at: number;
}

/** The pair as it stands: which node is the writable primary and which streams from it. */
export interface Pair {
  readonly sb: SandboxInfo;
  master: SandboxNode;
  standby: SandboxNode;
}

function nodeByAddress(sb: SandboxInfo, address: string): string {
  return sb.nodes.find((n) => n.address === address)?.name ?? `?${address}`;
}

function proxyPg(sb: SandboxInfo): { host: string; port: number } {
  const [host, port] = (sb.proxy?.postgres ?? '').split(':');
  if (host === undefined || port === undefined) {
    throw new Error(`${sb.dir} has no proxy host (upSandbox with proxy: true)`);
  }
  return { host, port: Number(port) };
}

/** Waits until a node's `/primary` answers 200 (health-server runs and the node is the primary). */
async function primaryStatus(node: SandboxNode, timeoutMs = 900): Promise<number> {
  try {
    const r = await fetch(`http://${node.address}:${node.healthPort}/primary`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    await r.body?.cancel();
    return r.status;
  } catch {
    return 0;
  }
}

/** A node's /status in one line: role, /primary's reason, what it knows of its peer, snapshot age. */
async function statusLine(node: SandboxNode): Promise<string> {
  const d = await nodeStatus(node);
  return d === undefined
    ? `${node.name} /status: no answer`
    : `${node.name} ${d.role} tl ${d.timeline ?? '-'} (${d.checks.primary_reason}; peer ${d.peer.reachable ? `${d.peer.role} tl ${d.peer.timeline ?? '-'}` : `unreachable: ${d.peer.error ?? '?'}`}; snapshot ${d.snapshot_age_ms ?? '-'} ms old)`;
}

/** The parts of a node's /status (src/health/answer.ts: statusDocument) that the fault suite reads. */
interface NodeStatus {
  readonly role: string;
  readonly timeline: number | null;
  readonly writable: boolean;
  readonly fenced: unknown;
  readonly peer: {
    readonly reachable: boolean;
    readonly role: string;
    readonly timeline: number | null;
    readonly error?: string;
  };
  readonly checks: { readonly primary: number; readonly primary_reason: string };
  readonly snapshot_age_ms: number | null;
}

/** A node's /status over the sandbox network; undefined when it does not answer within 900 ms. */
async function nodeStatus(node: SandboxNode): Promise<NodeStatus | undefined> {
  try {
    const r = await fetch(`http://${node.address}:${node.healthPort}/status`, {
      signal: AbortSignal.timeout(900),
    });
    return (await r.json()) as NodeStatus;
  } catch {
    return undefined;
  }
}

/** One SQL write through the proxy; the committing node's address comes back in the same statement. */
async function sqlWrite(sb: SandboxInfo, id: string): Promise<string | null> {
  const { host, port } = proxyPg(sb);
  const c = new pg.Client({
    host,
    port,
    user: FAULT_ROLE,
    password: FAULT_PASSWORD,
    database: 'postgres',
    connectionTimeoutMillis: 2_000,
    query_timeout: 5_000,
    statement_timeout: 5_000,
  });
  c.on('error', () => undefined);
  try {
    await c.connect();
    const r = await c.query<{ addr: string }>(
      'INSERT INTO faults_writes (id) VALUES ($1) RETURNING host(inet_server_addr()) AS addr',
      [id],
    );
    return r.rows[0]?.addr ?? null;
  } catch {
    return null;
  } finally {
    await closeWithin(c, 1_000);
  }
}

/**
 * Ends a client, or drops its socket when the server does not answer the goodbye in time: end() waits for
 * the server to close, and a partitioned server never does (a kernel retransmission timeout of minutes).
 */
async function closeWithin(c: pg.Client, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const ended = await Promise.race([
    c.end().then(
      () => true,
      () => true,
    ),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => {
        resolve(false);
      }, ms);
    }),
  ]);
  clearTimeout(timer);
  if (!ended) {
    (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  }
}

/** One Chef API write through the proxy; returns the answering stand-in's address on 200/201. */
async function chefWrite(sb: SandboxInfo, id: string): Promise<string | null> {
  try {
    const r = await fetch(`${sb.proxy?.chefApi ?? ''}/nodes/${id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name: id,
        chef_environment: '_default',
        json_class: 'Chef::Node',
        run_list: [],
      }),
      signal: AbortSignal.timeout(5_000),
    });
    await r.text();
    return r.status === 200 || r.status === 201 ? (r.headers.get('x-sandbox-erchef') ?? '') : null;
  } catch {
    return null;
  }
}

/**
 * Sends writes one after the other (alternately Chef API and SQL) through the proxy until stopped, and
 * records each acknowledged one. Unacknowledged writes (errors, timeouts) are counted, not recorded.
 */
export class Writer {
  readonly acks: Ack[] = [];
  failures = 0;
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  private seq = 0;

  constructor(
    private readonly sb: SandboxInfo,
    private readonly tag: string,
  ) {}

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        const n = this.seq++;
        const kind = n % 2 === 0 ? 'chef' : 'sql';
        const id = `fault-${this.tag}-${kind}-${n}`;
        const addr = kind === 'chef' ? await chefWrite(this.sb, id) : await sqlWrite(this.sb, id);
        if (addr === null) {
          this.failures += 1;
          await new Promise((r) => setTimeout(r, 50));
        } else {
          this.acks.push({ kind, id, node: nodeByAddress(this.sb, addr), at: Date.now() });
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Waits until at least n more writes are acknowledged by `node` (when given). */
  async waitForAcks(n: number, node: string | undefined, timeoutMs: number): Promise<boolean> {
    const from = this.acks.length;
    return waitFor(
      `${n} acknowledged writes${node === undefined ? '' : ` by ${node}`}`,
      () =>
        Promise.resolve(
          this.acks.slice(from).filter((a) => node === undefined || a.node === node).length >= n,
        ),
      timeoutMs,
      100,
    );
  }
}

/** Samples every node's `/primary` every 100 ms; counts the instants where two or more answer 200. */
export class Sampler {
  samples = 0;
  double200 = 0;
  readonly doubles: string[] = [];
  /** per double-200 sample: each node's /status in one line (reason, peer, snapshot age) */
  readonly details: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inflight = new Set<Promise<void>>();

  constructor(private readonly sb: SandboxInfo) {}

  start(): void {
    this.timer = setInterval(() => {
      const at = new Date().toISOString();
      const p = (async () => {
        const st = await Promise.all(this.sb.nodes.map((n) => primaryStatus(n, 900)));
        this.samples += 1;
        if (st.filter((s) => s === 200).length >= 2) {
          this.double200 += 1;
          this.doubles.push(at);
          // what each node based its 200 on, for the report (taken just after the sample)
          const states = await Promise.all(this.sb.nodes.map((n) => statusLine(n)));
          this.details.push(`${at}: ${states.join(' | ')}`);
        }
      })();
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    }, 100);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.inflight]);
  }
}

export interface Verdict {
  readonly acks: number;
  readonly lost: readonly string[];
  /** acknowledged by a superseded (fenced) node after the new primary acknowledged its first write */
  readonly fencedWrites: readonly Ack[];
  readonly byNode: Readonly<Record<string, number>>;
}

/** A change of primary: `from` is superseded by `to` from the moment `to` acknowledges a write. */
export interface Transition {
  readonly from: string;
  readonly to: string;
  /** Date.now() when the operator started the failover */
  readonly at: number;
}

/**
 * Reads the final primary's data (over its Unix socket) and compares it with the acknowledged writes.
 * For each transition, a write acknowledged by `from` after `to`'s first acknowledgement (and before
 * the next transition starts) is a fenced-node write.
 */
export async function check(
  finalPrimary: SandboxNode,
  acks: readonly Ack[],
  transitions: readonly Transition[],
): Promise<Verdict> {
  const chefIds = new Set(
    (await sql(finalPrimary, `SELECT name FROM nodes WHERE name LIKE 'fault-%'`)).split('\n'),
  );
  const sqlIds = new Set((await sql(finalPrimary, 'SELECT id FROM faults_writes', 'postgres')).split('\n'));
  const lost = acks
    .filter((a) => !(a.kind === 'chef' ? chefIds : sqlIds).has(a.id))
    .map((a) => `${a.kind} ${a.id} (acknowledged by ${a.node} at ${new Date(a.at).toISOString()})`);
  const fencedWrites: Ack[] = [];
  transitions.forEach((t, i) => {
    const end = transitions[i + 1]?.at ?? Infinity;
    const first = acks.find((a) => a.node === t.to && a.at >= t.at && a.at < end);
    if (first !== undefined) {
      fencedWrites.push(...acks.filter((a) => a.node === t.from && a.at > first.at && a.at < end));
    }
  });
  const byNode: Record<string, number> = {};
  for (const a of acks) {
    byNode[a.node] = (byNode[a.node] ?? 0) + 1;
  }
  return { acks: acks.length, lost, fencedWrites, byNode };
}

/** Builds the pair with the proxy, the writer's SQL path and the services; the proxy routes to chef-a. */
export async function preparePair(dir: string, sync: boolean, more: UpOptions = {}): Promise<Pair> {
  const sb = await upSandbox(dir, { nodes: 2, net: 'netns', proxy: true, mode: 'streaming', sync, ...more });
  const [a, b] = sb.nodes as [SandboxNode, SandboxNode];
  const m = await runCli(a, ['setup-master']);
  if (m.code !== 0) {
    throw new Error(`setup-master on ${a.name} exited ${m.code}:\n${m.stderr}`);
  }
  const s = await runCli(b, ['setup-slave', '--from-master', `root@${a.address}`]);
  if (s.code !== 0) {
    throw new Error(`setup-slave on ${b.name} exited ${s.code}:\n${s.stderr}`);
  }
  await sql(
    a,
    `CREATE ROLE ${FAULT_ROLE} LOGIN PASSWORD '${FAULT_PASSWORD}';` +
      ` CREATE TABLE faults_writes (id text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());` +
      ` GRANT INSERT, SELECT ON faults_writes TO ${FAULT_ROLE}`,
    'postgres',
  );
  const subnet = sb.network?.subnet ?? '';
  for (const n of [a, b]) {
    await appendFile(
      join(nodePaths(n.root).pgConfDir, 'pg_hba.conf'),
      `# chef-ha fault suite: the writer's role through HAProxy\nhost    postgres        ${FAULT_ROLE}  ${subnet}  scram-sha-256\n`,
    );
    await sql(n, 'SELECT pg_reload_conf()', 'postgres');
  }
  await startServices(sb);
  const pair: Pair = { sb, master: a, standby: b };
  await waitRouted(pair);
  return pair;
}

/** Waits until both kinds of write go through the proxy to the master. */
export async function waitRouted(pair: Pair, timeoutMs = 90_000): Promise<void> {
  const w = new Writer(pair.sb, `probe${Date.now()}`);
  w.start();
  try {
    await waitFor(
      `writes through the proxy acknowledged by ${pair.master.name}`,
      () => {
        const by = w.acks.filter((x) => x.node === pair.master.name);
        return Promise.resolve(by.some((x) => x.kind === 'chef') && by.some((x) => x.kind === 'sql'));
      },
      timeoutMs,
      200,
    );
  } finally {
    await w.stop();
  }
}

/** Waits until `standby` streams from `primary` (its walsender in state streaming). */
export async function waitStreaming(
  primary: SandboxNode,
  standby: SandboxNode,
  timeoutMs = 120_000,
): Promise<void> {
  const app = `chef_ha_${standby.name.replace(/-/g, '_')}`;
  try {
    await waitFor(
      `${standby.name} streaming from ${primary.name}`,
      async () =>
        (await sql(
          primary,
          `SELECT state FROM pg_stat_replication WHERE application_name = '${app}'`,
          'postgres',
        )) === 'streaming',
      timeoutMs,
      500,
    );
  } catch (error) {
    const rows = await sql(
      primary,
      'SELECT application_name, client_addr, state, sync_state FROM pg_stat_replication',
      'postgres',
    ).catch((e: unknown) => String(e));
    throw new Error(`${String(error)}; pg_stat_replication on ${primary.name}: ${rows || '(none)'}`, {
      cause: error,
    });
  }
}

/** kill -9 of a node's postmaster, then waits until it and its backends are gone. */
export async function crashPostgres(node: SandboxNode): Promise<void> {
  const pm = await postmasterPid(node.postgres.dataDir);
  if (pm === undefined) {
    throw new Error(`${node.name}'s PostgreSQL does not run`);
  }
  process.kill(pm, 'SIGKILL');
  await waitFor(
    `${node.name}'s postmaster to die`,
    async () => (await postmasterPid(node.postgres.dataDir)) === undefined,
    20_000,
  );
  // orphaned backends can outlive the postmaster for a moment: wait for them (restartPostgres retries)
  await waitFor(
    `${node.name}'s backends to exit`,
    async () => {
      const r = await runOnNode(node, ['ps', '-o', 'args=', '-u', 'postgres']);
      return !r.stdout
        .split('\n')
        .some((l) => l.startsWith('postgres:') && l.includes(node.postgres.dataDir));
    },
    10_000,
    100,
  ).catch(() => true);
}

/** The operator's failover, run on the node to promote. `--force` only if the plain one refuses. */
export async function operatorFailover(node: SandboxNode): Promise<{ plain: CliResult; forced?: CliResult }> {
  const plain = await runCli(node, ['failover'], { timeoutMs: 300_000 });
  if (plain.code === 0) {
    return { plain };
  }
  const forced = await runCli(node, ['failover', '--force'], { timeoutMs: 300_000 });
  return { plain, forced };
}

/** `chef-ha-ctl rejoin` on the old master; then the pair streams again with the roles swapped. */
export async function rejoin(pair: Pair, oldMaster: SandboxNode, newMaster: SandboxNode): Promise<void> {
  // the old master's PostgreSQL may be down (crashed) or up and fenced: rejoin handles both
  const r = await runCli(oldMaster, ['rejoin'], { timeoutMs: 600_000 });
  if (r.code !== 0) {
    throw new Error(`rejoin on ${oldMaster.name} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  }
  await waitFor(`${oldMaster.name} in recovery`, () => inRecovery(oldMaster), 60_000, 500);
  pair.master = newMaster;
  pair.standby = oldMaster;
  await waitStreaming(newMaster, oldMaster);
}

/** Starts a node's PostgreSQL again through the sandbox's start path (the pre-start guard runs). */
export async function restartPostgres(node: SandboxNode): Promise<void> {
  // backends of a killed postmaster may hold its shared memory a moment longer: PostgreSQL then refuses
  // to start, so try again until they are gone
  let r = await startNodePostgres(node);
  for (let i = 0; i < 20 && r.start !== undefined && r.start.code !== 0; i++) {
    await new Promise((res) => setTimeout(res, 500));
    r = await startNodePostgres(node);
  }
  if (r.start?.code !== 0) {
    throw new Error(
      `starting ${node.name}'s PostgreSQL: hook ${r.hook?.code ?? '-'} ${r.hook?.stderr ?? ''} start ${r.start?.code ?? '-'} ${r.start?.stderr ?? ''}`,
    );
  }
}

export interface ScenarioResult {
  readonly name: string;
  readonly verdict: Verdict;
  readonly samples: number;
  readonly double200: number;
  readonly doubles: readonly string[];
  readonly doubleDetails: readonly string[];
  readonly transitions: readonly Transition[];
  readonly failover?: { plainCode: number; forcedCode?: number; stderr: string };
  readonly notes: string[];
}

interface ScenarioCtx {
  readonly pair: Pair;
  readonly writer: Writer;
  readonly notes: string[];
  readonly transitions: Transition[];
  failover?: ScenarioResult['failover'];
}

export interface Scenario {
  readonly name: string;
  run(ctx: ScenarioCtx): Promise<void>;
}

const RESUME_MS = 120_000;

async function failOverTo(ctx: ScenarioCtx, node: SandboxNode): Promise<void> {
  const from = node === ctx.pair.master ? ctx.pair.standby : ctx.pair.master;
  ctx.transitions.push({ from: from.name, to: node.name, at: Date.now() });
  const f = await operatorFailover(node);
  ctx.failover = {
    plainCode: f.plain.code,
    ...(f.forced === undefined ? {} : { forcedCode: f.forced.code }),
    stderr: (f.forced ?? f.plain).stderr,
  };
  if ((f.forced ?? f.plain).code !== 0) {
    throw new Error(
      `failover on ${node.name} exited ${f.plain.code}${f.forced ? `, then --force ${f.forced.code}` : ''}:\n${f.plain.stderr}\n${f.forced?.stderr ?? ''}`,
    );
  }
  if (f.forced !== undefined) {
    ctx.notes.push(`plain failover exited ${f.plain.code}; the operator used --force`);
  }
  await ctx.writer.waitForAcks(6, node.name, RESUME_MS);
}

/** The faults. Each leaves the pair streaming again (maybe with the roles swapped). */
export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'kill -9 master PostgreSQL',
    async run(ctx) {
      const { master: old, standby } = ctx.pair;
      await crashPostgres(old);
      await failOverTo(ctx, standby);
      await rejoin(ctx.pair, old, standby);
    },
  },
  {
    name: 'kill -9 standby PostgreSQL',
    async run(ctx) {
      const { master, standby } = ctx.pair;
      await crashPostgres(standby);
      // sync: the monitor degrades to asynchronous within its bound; the writes resume on the master
      await ctx.writer.waitForAcks(6, master.name, RESUME_MS);
      await restartPostgres(standby);
      await waitStreaming(master, standby, RESUME_MS);
      await ctx.writer.waitForAcks(4, master.name, RESUME_MS);
    },
  },
  {
    name: 'partition of the master',
    async run(ctx) {
      const { master: old, standby } = ctx.pair;
      await partitionNode(ctx.pair.sb, old.name);
      try {
        await failOverTo(ctx, standby);
      } finally {
        await healNode(ctx.pair.sb, old.name);
      }
      await ctx.writer.waitForAcks(4, standby.name, RESUME_MS);
      await rejoin(ctx.pair, old, standby);
    },
  },
  {
    name: 'partition of the standby',
    async run(ctx) {
      const { master, standby } = ctx.pair;
      await partitionNode(ctx.pair.sb, standby.name);
      try {
        await ctx.writer.waitForAcks(6, master.name, RESUME_MS);
      } finally {
        await healNode(ctx.pair.sb, standby.name);
      }
      await waitStreaming(master, standby, RESUME_MS);
      await ctx.writer.waitForAcks(4, master.name, RESUME_MS);
    },
  },
  {
    name: 'SIGSTOP of the master PostgreSQL',
    async run(ctx) {
      const { master: old, standby } = ctx.pair;
      await freezePostgres(ctx.pair.sb, old.name);
      try {
        await failOverTo(ctx, standby);
      } finally {
        await thawPostgres(ctx.pair.sb, old.name);
      }
      await ctx.writer.waitForAcks(4, standby.name, RESUME_MS);
      await rejoin(ctx.pair, old, standby);
    },
  },
  {
    name: 'old master returning after failover',
    async run(ctx) {
      const { master: old, standby } = ctx.pair;
      await crashPostgres(old);
      await failOverTo(ctx, standby);
      // the old master comes back as after a reboot: through the start path with the pre-start guard,
      // which either refuses the start or brings it up fenced (never a second writable primary)
      const back = await startNodePostgres(old);
      ctx.notes.push(
        `old master start: pre-start hook exit ${back.hook?.code ?? '-'}, pg_ctl start exit ${back.start?.code ?? '-'}`,
      );
      await ctx.writer.waitForAcks(6, standby.name, RESUME_MS);
      await rejoin(ctx.pair, old, standby);
    },
  },
  {
    name: 'two failovers in a row (rejoin between)',
    async run(ctx) {
      const { master: first, standby: second } = ctx.pair;
      await failOverTo(ctx, second);
      await rejoin(ctx.pair, first, second);
      // and back: the check counts acks by `second` after `first` took writes again
      await failOverTo(ctx, first);
      await rejoin(ctx.pair, second, first);
    },
  },
];

/**
 * Runs one scenario on a streaming pair with the writer and the sampler running from before the fault
 * until the pair is whole again; returns the checker's verdict and the sampler's counts.
 */
export async function runScenario(pair: Pair, sc: Scenario, tag: string): Promise<ScenarioResult> {
  const writer = new Writer(pair.sb, tag);
  const sampler = new Sampler(pair.sb);
  const ctx: ScenarioCtx = {
    pair,
    writer,
    notes: [],
    transitions: [],
  };
  sampler.start();
  writer.start();
  try {
    await writer.waitForAcks(6, pair.master.name, RESUME_MS);
    await sc.run(ctx);
    await writer.waitForAcks(4, pair.master.name, RESUME_MS);
  } finally {
    await writer.stop();
    await sampler.stop();
  }
  const verdict = await check(pair.master, writer.acks, ctx.transitions);
  return {
    name: sc.name,
    verdict,
    samples: sampler.samples,
    double200: sampler.double200,
    doubles: sampler.doubles,
    doubleDetails: sampler.details,
    transitions: ctx.transitions,
    ...(ctx.failover === undefined ? {} : { failover: ctx.failover }),
    notes: ctx.notes,
  };
}

export interface LostProbeResult {
  /** the old primary's /status reason once it had seen the promoted peer, before the cut */
  readonly seenReason: string;
  /** every /primary answer of the old and the new primary while only their link was cut */
  readonly oldAnswers: readonly number[];
  readonly newAnswers: readonly number[];
  /** the old primary's /status reason at the end of the cut */
  readonly cutReason: string;
  readonly double200: number;
  readonly samples: number;
}

/**
 * The old primary's probe of the promoted peer is lost after it has seen it. Its monitor is stopped first,
 * so that nothing fences it (the monitor would make it read-only): the health endpoint alone must hold
 * /primary at 503. Steps: partition the master, `failover` on the standby, heal, wait until the old
 * primary's health endpoint has seen the peer on its newer timeline while it is still writable and not
 * fenced, then cut only the link between the two nodes for 3 s (each still reaches the proxy and the
 * sampler) and read both nodes' /primary every 100 ms. Then heal the link, rejoin, start the monitor.
 */
export async function lostProbeAfterHeal(pair: Pair): Promise<LostProbeResult> {
  const { master: old, standby } = pair;
  const monitorOnly = SERVICES.filter((svc) => svc.name === 'monitor');
  const oldOnly = { ...pair.sb, nodes: [old] };
  const sampler = new Sampler(pair.sb);
  await stopServices(oldOnly, monitorOnly);
  sampler.start();
  try {
    await partitionNode(pair.sb, old.name);
    try {
      const f = await operatorFailover(standby);
      if ((f.forced ?? f.plain).code !== 0) {
        throw new Error(
          `failover on ${standby.name} exited ${(f.forced ?? f.plain).code}:\n${(f.forced ?? f.plain).stderr}`,
        );
      }
    } finally {
      await healNode(pair.sb, old.name);
    }
    let seen: NodeStatus | undefined;
    await waitFor(
      `${old.name}'s health endpoint to see ${standby.name} promoted while still writable and not fenced`,
      async () => {
        seen = await nodeStatus(old);
        return (
          seen !== undefined &&
          seen.writable &&
          seen.fenced === null &&
          /newer timeline|writable primary too/.test(seen.checks.primary_reason)
        );
      },
      30_000,
      100,
    );
    await cutLink(pair.sb, old.name, standby.name);
    const oldAnswers: number[] = [];
    const newAnswers: number[] = [];
    try {
      for (const end = Date.now() + 3_000; Date.now() < end;) {
        const [o, n] = await Promise.all([primaryStatus(old), primaryStatus(standby)]);
        oldAnswers.push(o);
        newAnswers.push(n);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await healLink(pair.sb, old.name, standby.name);
    }
    const cut = await nodeStatus(old);
    await rejoin(pair, old, standby);
    return {
      seenReason: seen?.checks.primary_reason ?? '',
      oldAnswers,
      newAnswers,
      cutReason: cut?.checks.primary_reason ?? '(no /status)',
      double200: sampler.double200,
      samples: sampler.samples,
    };
  } finally {
    await sampler.stop();
    await startServices(oldOnly, monitorOnly);
  }
}

/** The last lines of a node's chef-ha logs, for failure messages. */
export async function logsOf(node: SandboxNode): Promise<string> {
  const out: string[] = [];
  for (const f of ['monitor.log', 'health-server.log']) {
    const text = await readFile(join(node.root, 'var/log/chef-ha', f), 'utf8').catch(() => '');
    out.push(`--- ${node.name} ${f}\n${text.split('\n').slice(-30).join('\n')}`);
  }
  return out.join('\n');
}
