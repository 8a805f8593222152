/**
 * decideFailover: may this standby be promoted now? Pure: a facts snapshot in, a decision with its
 * reason out (Patroni's reason strings).
 */
import type { Config } from '../../core/config.js';
import type { PairFacts } from '../../core/facts.js';
import { formatBytes, lsnDiff } from '../../pg/lsn.js';
import { featuresFor } from '../../pg/version.js';

export interface FailoverOptions {
  readonly force: boolean;
}

export type FailoverDecision =
  | {
      readonly action: 'promote';
      readonly candidate: string;
      readonly reason: string;
      /** What is known about data the promotion may lose. */
      readonly lossNote: string;
      readonly fence: 'sql' | 'ssh' | 'none';
    }
  | {
      readonly action: 'complete';
      readonly candidate: string;
      readonly reason: string;
      readonly fence: 'sql' | 'ssh' | 'none';
    }
  | {
      readonly action: 'refuse';
      readonly reason: string;
      readonly override?: string;
      readonly hint?: string;
    };

/** Decides. Never throws. */
export function decideFailover(facts: PairFacts, config: Config, options: FailoverOptions): FailoverDecision {
  const me = config.node.name;
  const peer = config.peer.name;
  const local = facts.local.pg;
  const peerServer = facts.peer.reachable ? facts.peer.server : undefined;
  // Over SQL the replication role can fence only where it holds the PostgreSQL 15 parameter grants.
  const sqlFence = peerServer !== undefined && featuresFor(peerServer.major).parameterGrants;
  const fence: 'sql' | 'ssh' | 'none' = sqlFence ? 'sql' : config.peer.ssh ? 'ssh' : 'none';
  if (!local.running || !local.server) {
    return {
      action: 'refuse',
      reason: `${me}'s PostgreSQL is not running (${local.error ?? 'no answer'}), so there is nothing to promote`,
      hint: 'start it (it comes up as a standby) and run failover again',
    };
  }
  if (!local.server.inRecovery) {
    if (peerServer && !peerServer.inRecovery && !peerServer.readOnlyDefault) {
      return {
        action: 'refuse',
        reason: `${me} and ${peer} both answer as writable primaries; run \`chef-ha-ctl status\` and fence one of them`,
      };
    }
    if (facts.local.fenced) {
      return {
        action: 'refuse',
        reason: `${me} is not a standby: it is a fenced old primary; failover runs on the standby`,
        hint: `run failover on ${peer}, and \`chef-ha-ctl rejoin\` here afterwards`,
      };
    }
    if (!facts.local.failoverInProgress) {
      return {
        action: 'refuse',
        reason: `${me} is not a standby: it is the primary${peerServer?.inRecovery ? ` and ${peer} follows it` : ''}; failover runs on the standby`,
        hint: `run it on ${peer} when ${me} has failed; to swap roles on purpose, use \`chef-ha-ctl switchover\``,
      };
    }
    return {
      action: 'complete',
      candidate: me,
      reason: `${me} is already promoted (timeline ${local.server.timeline ?? '?'}); finishing the remaining steps`,
      fence,
    };
  }
  const replay = local.server.replayLsn ?? local.server.receiveLsn;
  if (peerServer && !peerServer.inRecovery && !peerServer.readOnlyDefault && !options.force) {
    const lag =
      peerServer.currentLsn && replay
        ? ` (${me} is ${formatBytes(lsnDiff(peerServer.currentLsn, replay))} behind)`
        : '';
    return {
      action: 'refuse',
      reason: `${peer} is healthy: it answers as a writable primary at ${config.peer.address}:${config.peer.postgresPort}${lag}; a failover now would throw away a working master`,
      override: '--force',
      hint: 'for a planned role swap with no lost writes use `chef-ha-ctl switchover`; re-run with --force to fence the master and promote anyway',
    };
  }
  let lossNote: string;
  if (peerServer?.currentLsn && replay) {
    const lag = lsnDiff(peerServer.currentLsn, replay);
    if (lag > config.failover.maxLagBytes && !options.force) {
      return {
        action: 'refuse',
        reason: `${me} is ${formatBytes(lag)} behind ${peer} (failover.maxLagBytes ${formatBytes(config.failover.maxLagBytes)}); promoting now would lose those writes`,
        override: '--force',
        hint: `wait for ${me} to catch up (chef-ha-ctl status), or re-run with --force to accept losing them`,
      };
    }
    const degraded =
      config.replication.synchronous && peerServer.synchronousStandbyNames.trim() === ''
        ? `; ${peer} is not synchronous (degraded or never switched on), so the pair is treated as asynchronous`
        : '';
    lossNote = `${me} is ${formatBytes(lag)} behind ${peer}${degraded}`;
  } else {
    const wr = local.server.walReceiver;
    const age = wr?.last_msg_age_s;
    // In synchronous mode the master's monitor degrades to asynchronous once this standby has stopped
    // confirming for monitor.degradeAfterMs: a dead master lost nothing, a cut-off one may have gone on.
    const sync = config.replication.synchronous;
    lossNote = `${peer} cannot be asked its position; ${me} has received WAL up to ${local.server.receiveLsn ?? '?'} and replayed up to ${replay ?? '?'}${age !== null && age !== undefined ? `, last message from ${peer} ${age.toFixed(1)}s ago` : ''}; ${sync ? `in synchronous mode every acknowledged commit reached this node, unless ${peer} stayed up after its last message (cut off rather than dead): its monitor then degraded it to asynchronous after monitor.degradeAfterMs (${config.monitor.degradeAfterMs} ms) and commits acknowledged after that are not here` : 'in asynchronous mode commits of the last moments before the fault may be lost'}`;
  }
  return {
    action: 'promote',
    candidate: me,
    reason: !peerServer
      ? `${peer}'s PostgreSQL does not answer (${facts.peer.error ?? 'unreachable'})`
      : !peerServer.inRecovery && !peerServer.readOnlyDefault
        ? `forced: ${peer} answers as a writable primary and is fenced first`
        : `${peer} is not a writable primary`,
    lossNote,
    fence,
  };
}
