/**
 * status in londiste mode: both nodes' cascade state read with SQL from pgq / pgq_node / londiste (the
 * packaged `londiste status` crashes while a member is down), the local daemons from their pid files.
 * Exit 0 healthy, 8 degraded (a node or table not in order, lag over the bound), 9 no root or two roots.
 */
import type { CommandContext } from '../../core/context.js';
import type { Config } from '../../core/config.js';
import { ExitCode, StatusExit } from '../../core/errors.js';
import type { DaemonFacts, NodeState } from '../../londiste/facts.js';
import { readDaemons, readLocalNodeState, readPeerNodeState } from '../../londiste/facts.js';
import { jobNameFor, qualifiedTables } from '../../londiste/names.js';

/** Lag above which the pair is degraded (the tuned ticker keeps it near 0.1 s). */
export const LAG_DEGRADED_S = 5;

export interface LondisteNodeStatus {
  readonly name: string;
  readonly local: boolean;
  readonly reachable: boolean;
  readonly error?: string;
  /** root, branch, leaf, or none (not a member). */
  readonly type: string;
  readonly provider: string | null;
  readonly paused: boolean | null;
  readonly workerError: string | null;
  readonly tables: readonly { readonly table: string; readonly state: string }[];
  /** Age of the last tick of this node's queue. */
  readonly lastTickAgeS: number | null;
  readonly lastTickId: number | null;
  /** As the root sees this node's worker: lag of its last batch and events not yet processed. */
  readonly lagS: number | null;
  readonly pendingEvents: number | null;
  readonly workerLastSeenS: number | null;
  /** Local node only: pids of the supervised daemons. */
  readonly daemons?: DaemonFacts;
}

export interface LondisteStatus {
  readonly mode: 'londiste';
  readonly queue: string;
  readonly nodes: readonly LondisteNodeStatus[];
  readonly verdict: 'healthy' | 'degraded' | 'broken';
  readonly problems: readonly string[];
  readonly exitCode: number;
}

function nodeStatus(
  config: Config,
  name: string,
  local: boolean,
  state: NodeState,
  root: NodeState | undefined,
  daemons: DaemonFacts | undefined,
): LondisteNodeStatus {
  const consumer = root?.consumers.find((c) => c.name === (state.workerName ?? jobNameFor(config, name)));
  return {
    name,
    local,
    reachable: state.reachable,
    ...(state.error ? { error: state.error } : {}),
    type: state.nodeType ?? (state.reachable ? 'none' : 'unknown'),
    provider: state.provider ?? null,
    paused: state.paused ?? null,
    workerError: state.lastError ?? null,
    tables: qualifiedTables(config).map((t) => ({
      table: t,
      state: state.tables.find((x) => x.table === t)?.state ?? (state.nodeType ? 'not registered' : '-'),
    })),
    lastTickAgeS: state.queue?.lastTickAgeS ?? null,
    lastTickId: state.queue?.lastTickId ?? null,
    lagS: consumer?.lagS ?? null,
    pendingEvents: consumer?.pendingEvents ?? null,
    workerLastSeenS: consumer?.lastSeenS ?? null,
    ...(daemons ? { daemons } : {}),
  };
}

/** Pure: both nodes' states → the status and its exit code. */
export function summarizeLondisteStatus(
  config: Config,
  localState: NodeState,
  peerState: NodeState,
  daemons: DaemonFacts,
): LondisteStatus {
  const roots = [localState, peerState].filter((s) => s.nodeType === 'root');
  const root = roots.length === 1 ? roots[0] : undefined;
  const me = nodeStatus(config, config.node.name, true, localState, root, daemons);
  const peer = nodeStatus(config, config.peer.name, false, peerState, root, undefined);
  const problems: string[] = [];
  let exitCode: number = ExitCode.Ok;
  const degrade = (p: string): void => {
    problems.push(p);
    if (exitCode === ExitCode.Ok) {
      exitCode = 8;
    }
  };
  if (roots.length === 0) {
    problems.push(
      `no reachable node is the root of queue ${config.londiste.queue}: the Chef data is not writable (run \`chef-ha-ctl failover\` on the branch if the master is dead)`,
    );
    exitCode = 9;
  } else if (roots.length > 1) {
    problems.push(
      `both nodes are roots of queue ${config.londiste.queue}: two masters (split brain); fence one`,
    );
    exitCode = 9;
  }
  for (const n of [me, peer]) {
    if (!n.reachable) {
      degrade(`${n.name} does not answer: ${n.error ?? 'unreachable'}`);
      continue;
    }
    if (n.type === 'none') {
      degrade(
        `${n.name} is not a member of queue ${config.londiste.queue} (run setup-${n.type === 'none' && n === me ? 'slave or setup-master' : 'slave'})`,
      );
      continue;
    }
    if (n.workerError) {
      degrade(`${n.name}'s worker reports an error: ${n.workerError}`);
    }
    if (n.paused) {
      degrade(`${n.name}'s worker is paused`);
    }
    const notOk = n.tables.filter((t) => t.state !== 'ok' && n.type !== 'root');
    if (notOk.length > 0) {
      degrade(`${n.name}: tables not in sync: ${notOk.map((t) => `${t.table} ${t.state}`).join(', ')}`);
    }
    if (n.type !== 'root' && n.lagS !== null && n.lagS > LAG_DEGRADED_S) {
      degrade(`${n.name} lags ${n.lagS.toFixed(1)} s behind the root (bound ${LAG_DEGRADED_S} s)`);
    }
  }
  if (localState.nodeType !== undefined) {
    if (daemons.pgqdPid === undefined) {
      degrade(
        `pgqd does not run on ${config.node.name}: no ticks, no replication (chef-ha-ctl londiste-daemons start)`,
      );
    }
    if (daemons.workerPid === undefined) {
      degrade(`the Londiste worker does not run on ${config.node.name} (chef-ha-ctl londiste-daemons start)`);
    }
    if (daemons.supervisorPid === undefined) {
      degrade(`the Londiste supervisor does not run on ${config.node.name}: dead daemons are not restarted`);
    }
  }
  return {
    mode: 'londiste',
    queue: config.londiste.queue,
    nodes: [me, peer],
    verdict: exitCode === 0 ? 'healthy' : exitCode === 8 ? 'degraded' : 'broken',
    problems,
    exitCode,
  };
}

function num(v: number | null, digits = 2, unit = ''): string {
  return v === null ? '-' : `${v.toFixed(digits)}${unit}`;
}

/** Pure: the table status prints. */
export function formatLondisteStatus(s: LondisteStatus): string {
  const out = [`chef-ha pair: londiste, queue ${s.queue} — ${s.verdict.toUpperCase()}`];
  for (const n of s.nodes) {
    out.push(
      `${n.local ? '*' : ' '} ${n.name}: ${n.reachable ? n.type : `DOWN (${n.error ?? 'unreachable'})`}${n.provider && n.type !== 'root' ? `, provider ${n.provider}` : ''}${n.paused ? ', PAUSED' : ''}`,
    );
    if (!n.reachable) {
      continue;
    }
    out.push(
      `    ticks: last ${n.lastTickId ?? '-'} (${num(n.lastTickAgeS, 1, ' s')} ago)   lag: ${num(n.lagS, 2, ' s')}, ${n.pendingEvents ?? '-'} events pending   worker last seen: ${num(n.workerLastSeenS, 1, ' s')} ago`,
    );
    out.push(
      `    tables: ${n.tables.map((t) => `${t.table.replace(/^public\./, '')} ${t.state}`).join(', ')}`,
    );
    if (n.daemons) {
      out.push(
        `    daemons: supervisor ${n.daemons.supervisorPid ?? 'DOWN'}, pgqd ${n.daemons.pgqdPid ?? 'DOWN'}, worker ${n.daemons.workerPid ?? 'DOWN'}`,
      );
    }
    if (n.workerError) {
      out.push(`    worker error: ${n.workerError}`);
    }
  }
  for (const p of s.problems) {
    out.push(`  ! ${p}`);
  }
  return `${out.join('\n')}\n`;
}

export async function londisteStatus(ctx: CommandContext): Promise<void> {
  const password = await ctx.secrets.read('replication');
  const [localState, peerState, daemons] = await Promise.all([
    readLocalNodeState(ctx),
    readPeerNodeState(ctx, password),
    readDaemons(ctx),
  ]);
  const summary = summarizeLondisteStatus(ctx.config, localState, peerState, daemons);
  ctx.reporter.result(formatLondisteStatus(summary), summary);
  if (summary.exitCode !== 0) {
    throw new StatusExit(summary.exitCode as 8 | 9, '');
  }
}
