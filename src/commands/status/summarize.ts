/** summarizeStatus: pair facts → what `status` shows and its exit code. Pure. */
import type { Config } from '../../core/config.js';
import type { PairFacts, ServerFacts } from '../../core/facts.js';
import { ExitCode } from '../../core/errors.js';
import { lsnDiff } from '../../pg/lsn.js';
import { slotOf } from '../common.js';

export type NodeRole = 'primary' | 'standby' | 'fenced' | 'read-only' | 'down' | 'unreachable';

export interface NodeStatus {
  readonly name: string;
  readonly address: string;
  readonly local: boolean;
  readonly reachable: boolean;
  readonly role: NodeRole;
  readonly timeline: number | null;
  readonly lsn: string | null;
  readonly lagBytes: number | null;
  readonly lagSeconds: number | null;
  readonly syncState: string | null;
  readonly streaming: boolean | null;
  readonly recipe: string;
  readonly detail: string;
  /** The node's health endpoint answer on /primary (0: no answer), when it was asked. */
  readonly health?: number;
}

export interface PairStatus {
  readonly mode: string;
  readonly synchronous: boolean;
  readonly nodes: readonly NodeStatus[];
  readonly verdict: 'healthy' | 'degraded' | 'broken';
  readonly problems: readonly string[];
  readonly exitCode: number;
}

function roleOf(server: ServerFacts | undefined, fenced: boolean): NodeRole {
  if (!server) {
    return 'down';
  }
  if (server.inRecovery) {
    return fenced && !server.walReceiver ? 'fenced' : 'standby';
  }
  if (server.readOnlyDefault) {
    return fenced ? 'fenced' : 'read-only';
  }
  return 'primary';
}

export function summarizeStatus(facts: PairFacts, config: Config): PairStatus {
  const local = facts.local;
  const localServer = local.pg.server;
  const peerServer = facts.peer.server;
  const recipe =
    local.recipe.kind === 'override'
      ? 'patched'
      : local.recipe.kind === 'original'
        ? local.recordedOriginalSha256
          ? 'ORIGINAL (a package upgrade put it back: run `chef-ha-ctl reconfigure`)'
          : 'original (not set up)'
        : local.recipe.kind;
  const localRole = roleOf(localServer, local.fenced !== undefined);
  const peerRole: NodeRole = facts.peer.reachable ? roleOf(peerServer, false) : 'unreachable';
  const primaryServer =
    localRole === 'primary' ? localServer : peerRole === 'primary' ? peerServer : undefined;
  const standbyRow = (name: string): ServerFacts['replication'][number] | undefined =>
    primaryServer?.replication.find((r) => r.application_name === slotOf(name));
  const nodeStatus = (
    name: string,
    address: string,
    isLocal: boolean,
    reachable: boolean,
    role: NodeRole,
    server: ServerFacts | undefined,
    recipeText: string,
    detail: string,
  ): NodeStatus => {
    const row = role === 'standby' || role === 'fenced' ? standbyRow(name) : undefined;
    const lsn = server ? (server.inRecovery ? server.replayLsn : server.currentLsn) : null;
    let lagBytes: number | null = row?.lag_bytes ?? null;
    if (lagBytes === null && role === 'standby' && primaryServer?.currentLsn && lsn) {
      lagBytes = lsnDiff(primaryServer.currentLsn, lsn);
    }
    return {
      name,
      address,
      local: isLocal,
      reachable,
      role,
      timeline: server?.timeline ?? null,
      lsn,
      lagBytes,
      lagSeconds: row?.replay_lag_s ?? (role === 'standby' ? (server?.replayAgeS ?? null) : null),
      syncState: row?.sync_state ?? null,
      streaming: role === 'standby' ? row?.state === 'streaming' : null,
      recipe: recipeText,
      detail,
    };
  };
  const nodes = [
    nodeStatus(
      config.node.name,
      config.node.address,
      true,
      local.pg.running,
      localRole,
      localServer,
      recipe,
      local.pg.error ?? (local.fenced ? `fenced: ${local.fenced.reason}` : ''),
    ),
    nodeStatus(
      config.peer.name,
      config.peer.address,
      false,
      facts.peer.reachable,
      peerRole,
      peerServer,
      '(on that host)',
      facts.peer.error ?? '',
    ),
  ];
  const problems: string[] = [];
  const primaries = nodes.filter((n) => n.role === 'primary');
  if (primaries.length === 0) {
    problems.push(
      'no writable primary: Chef Server cannot take writes (run `chef-ha-ctl failover` on the standby)',
    );
  }
  if (primaries.length > 1) {
    problems.push(
      'two writable primaries: split brain; fence one of them now (`chef-ha-ctl fence` on the one to give up)',
    );
  }
  for (const n of nodes) {
    if (n.role === 'standby' && !n.streaming) {
      problems.push(`${n.name} is a standby but not streaming from the primary`);
    }
    if (n.role === 'standby' && n.lagBytes !== null && n.lagBytes > config.failover.maxLagBytes) {
      problems.push(
        `${n.name} is ${n.lagBytes} bytes behind (failover.maxLagBytes ${config.failover.maxLagBytes})`,
      );
    }
    if (n.role === 'unreachable' || n.role === 'down') {
      problems.push(`${n.name} does not answer: ${n.detail || 'no answer'}`);
    }
    if (n.role === 'fenced' || n.role === 'read-only') {
      problems.push(`${n.name} is ${n.role} (run \`chef-ha-ctl rejoin\` there to make it the standby again)`);
    }
  }
  if (config.replication.synchronous && primaries.length === 1) {
    const standby = nodes.find((n) => n.role === 'standby');
    if (standby && standby.syncState !== 'sync') {
      problems.push(
        `synchronous mode is configured but ${standby.name} is ${standby.syncState ?? 'not connected'}`,
      );
    }
  }
  if (local.recipe.kind !== 'override') {
    problems.push(`the recipe on ${config.node.name} is ${recipe}`);
  }
  const verdict = primaries.length !== 1 ? 'broken' : problems.length > 0 ? 'degraded' : 'healthy';
  return {
    mode: config.replication.mode,
    synchronous: config.replication.synchronous,
    nodes,
    verdict,
    problems,
    exitCode:
      verdict === 'healthy'
        ? ExitCode.Ok
        : verdict === 'degraded'
          ? ExitCode.StatusDegraded
          : ExitCode.StatusBroken,
  };
}
