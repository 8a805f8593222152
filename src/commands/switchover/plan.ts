/**
 * switchover (streaming): a planned role swap with no lost write. On the primary: fence itself, stop
 * cleanly (its walsender ships everything up to the shutdown checkpoint), wait until the standby has
 * replayed that checkpoint, then have the standby promote itself (its own chef-ha-ctl over ssh). The
 * old primary then follows the new one by the rejoin path, planned from fresh facts. Pure.
 */
import type { Config } from '../../core/config.js';
import type { PairFacts } from '../../core/facts.js';
import type { Plan, Step } from '../../core/plan.js';
import { statePaths } from '../../core/context.js';
import type { ControlData } from '../../pg/controldata.js';
import { isCleanShutdown } from '../../pg/controldata.js';
import { renderFenceFile } from '../../pg/version.js';
import { renderSshArgv } from '../../chef/ssh.js';
import { serviceStep, slotOf } from '../common.js';
import type { FailoverDecision } from '../failover/decide.js';
import { planFailover } from '../failover/plan.js';

export interface SwitchoverOptions {
  /** The node that becomes the primary (default: the current standby). */
  readonly to?: string | undefined;
}

export interface SwitchoverFacts {
  readonly pair: PairFacts;
  readonly control?: ControlData;
}

/** The fence reason a switchover records; a re-run recognises its own interrupted switchover by it. */
export function switchoverFenceReason(target: string): string {
  return `switchover to ${target}`;
}

export type SwitchoverDecision =
  | { readonly action: 'refuse'; readonly reason: string; readonly hint: string }
  /** Nothing to do: `target` is the primary and the other node streams from it. */
  | { readonly action: 'done'; readonly reason: string }
  /** Run on the standby: hand the switchover to the primary's chef-ha-ctl over ssh. */
  | { readonly action: 'delegate'; readonly target: string; readonly reason: string }
  /** This node is the primary (or a primary this switchover already stopped): demote, then rejoin. */
  | { readonly action: 'demote'; readonly target: string; readonly resumed: boolean }
  /** The peer is promoted already: only the rejoin part is left. */
  | { readonly action: 'rejoin'; readonly target: string };

/** Decides what this run does. Never throws. */
export function decideSwitchover(
  facts: SwitchoverFacts,
  config: Config,
  options: SwitchoverOptions,
): SwitchoverDecision {
  const me = config.node.name;
  const peer = config.peer.name;
  if (options.to !== undefined && options.to !== me && options.to !== peer) {
    return {
      action: 'refuse',
      reason: `--to ${options.to} names neither this node (${me}) nor its peer (${peer})`,
      hint: `use --to ${me} or --to ${peer}`,
    };
  }
  const { local, peer: peerFacts } = facts.pair;
  const server = local.pg.running ? local.pg.server : undefined;
  const peerServer = peerFacts.reachable ? peerFacts.server : undefined;
  const writable = server !== undefined && !server.inRecovery && !server.readOnlyDefault;
  const peerWritable = peerServer !== undefined && !peerServer.inRecovery && !peerServer.readOnlyDefault;
  const streams = (primary: typeof server, standby: string): boolean =>
    primary?.replication.some((r) => r.application_name === slotOf(standby) && r.state === 'streaming') ??
    false;
  if (writable && peerWritable) {
    return {
      action: 'refuse',
      reason: `${me} and ${peer} both answer as writable primaries`,
      hint: 'run `chef-ha-ctl status`, fence the one that must not take writes, then rejoin it',
    };
  }
  // This node is the primary.
  if (writable) {
    const target = options.to ?? peer;
    if (target === me) {
      return streams(server, peer)
        ? { action: 'done', reason: `${me} is already the primary and ${peer} streams from it` }
        : {
            action: 'refuse',
            reason: `${me} is already the primary, but ${peer} does not stream from it`,
            hint: `make ${peer} a standby first (\`chef-ha-ctl rejoin\` or \`setup-slave\` there)`,
          };
    }
    if (!peerServer || !peerServer.inRecovery || !streams(server, peer)) {
      return {
        action: 'refuse',
        reason: `the pair is not healthy: ${peer} ${!peerServer ? `does not answer (${peerFacts.error ?? 'no answer'})` : !peerServer.inRecovery ? 'is not a standby' : `does not stream from ${me}`}; a switchover needs a standby that has everything`,
        hint: `fix the standby first (\`chef-ha-ctl status\`); if ${me} has failed, use \`chef-ha-ctl failover\` on ${peer}`,
      };
    }
    if (!config.peer.ssh) {
      return {
        action: 'refuse',
        reason: `peer.ssh is not configured: the switchover promotes ${peer} by running its chef-ha-ctl over ssh`,
        hint: 'set peer.ssh in the config (docs/configuration.md)',
      };
    }
    return { action: 'demote', target, resumed: false };
  }
  // This node is a standby of the primary.
  if (server?.inRecovery && peerWritable) {
    const target = options.to ?? me;
    if (target === peer) {
      return streams(peerServer, me)
        ? { action: 'done', reason: `${peer} is already the primary and ${me} streams from it` }
        : {
            action: 'refuse',
            reason: `${peer} is the primary, but ${me} does not stream from it`,
            hint: `run \`chef-ha-ctl rejoin\` on ${me}`,
          };
    }
    if (!config.peer.ssh) {
      return {
        action: 'refuse',
        reason: `peer.ssh is not configured: run on the standby, switchover hands over to ${peer}'s chef-ha-ctl over ssh`,
        hint: `run \`chef-ha-ctl switchover\` on ${peer}, or set peer.ssh`,
      };
    }
    return {
      action: 'delegate',
      target,
      reason: `${peer} is the primary: it stops first, so the switchover runs there`,
    };
  }
  // This node was stopped by an interrupted switchover (its own fence record says so).
  const mine = local.fenced?.reason.startsWith('switchover to ') === true;
  if (!server && mine) {
    const target = local.fenced?.reason.slice('switchover to '.length) ?? peer;
    if (peerServer?.inRecovery) {
      if (!facts.control || !isCleanShutdown(facts.control)) {
        return {
          action: 'refuse',
          reason: `${me} was stopped by a switchover but did not shut down cleanly (${facts.control?.state ?? 'no control data'}): ${peer} may lack some of its WAL`,
          hint: `start ${me} again (remove standby.signal and the fence record ${statePaths(config).fence} first) and re-run switchover, or use \`chef-ha-ctl failover\` on ${peer} accepting the loss`,
        };
      }
      return { action: 'demote', target, resumed: true };
    }
    if (peerWritable) {
      return { action: 'rejoin', target };
    }
  }
  return {
    action: 'refuse',
    reason: `no healthy pair to switch over: ${me} is ${!server ? 'stopped' : server.inRecovery ? 'a standby' : 'a read-only primary'} and ${peer} ${!peerServer ? 'does not answer' : peerServer.inRecovery ? 'is a standby' : 'is a read-only primary'}`,
    hint: 'run `chef-ha-ctl status`; after a failover use `chef-ha-ctl rejoin` on the old master',
  };
}

/** Steps on the primary: fence itself, stop cleanly, wait for the standby, promote it over ssh. */
export function planSwitchoverDemote(
  facts: SwitchoverFacts,
  decision: Extract<SwitchoverDecision, { action: 'demote' }>,
  config: Config,
  nowIso: string,
): Plan {
  const local = facts.pair.local;
  const target = decision.target;
  const fenceFile = renderFenceFile(config.postgres.version);
  const hasSignal =
    fenceFile.name === 'standby.signal' ? local.dataDir.standbySignal : local.dataDir.recoveryConf;
  const promote = renderSshArgv(config, ['switchover', '--yes', '--promote-standby']);
  const steps: Step[] = [
    {
      kind: 'action',
      id: 'record-fence',
      title: `record the fence: ${config.node.name} stops taking writes (a re-run resumes from here)`,
      action: 'record-state',
      args: {
        path: statePaths(config).fence,
        data: { at: nowIso, reason: switchoverFenceReason(target) },
      },
      done: local.fenced ? `fenced since ${local.fenced.at}` : undefined,
    },
    {
      kind: 'action',
      id: 'write-fence-file',
      title: `write ${fenceFile.name} so that any later start is read-only`,
      action: 'write-fence-file',
      args: {},
      done: hasSignal ? `${fenceFile.name} is present` : undefined,
    },
    {
      ...serviceStep(
        config,
        'stop',
        'stop-postgresql',
        'stop PostgreSQL cleanly (sessions end; the WAL up to the shutdown checkpoint is sent to the standby)',
        local.pg.running ? undefined : 'PostgreSQL is stopped',
      ),
    },
    {
      kind: 'wait',
      id: 'wait-standby-replayed',
      title: `wait until ${target} has replayed this node's shutdown checkpoint (every write)`,
      until: { name: 'peer-replayed-local-checkpoint' },
      timeoutMs: config.replication.streamingTimeoutMs,
      intervalMs: 20,
    },
  ];
  if (promote) {
    // This node's health endpoint answers from a snapshot up to health.refreshMs old: the standby must not
    // answer 200 on /primary while this one still does (bounded; at the end the switchover goes on).
    steps.push({
      kind: 'action',
      id: 'refresh-own-health',
      title: "ask this node's health endpoint for a new snapshot (it sees the stop now)",
      action: 'refresh-health',
      args: { on: 'local' },
    });
    steps.push({
      kind: 'wait',
      id: 'wait-own-health',
      title: "wait until this node's health endpoint has seen the stop (no 200 on /primary)",
      until: { name: 'health-not-primary', on: 'local' },
      timeoutMs: config.health.refreshMs + config.health.probeTimeoutMs,
      intervalMs: 50,
      onTimeout: 'continue',
    });
    steps.push({
      kind: 'run',
      id: 'promote-standby',
      title: `promote ${target} (its chef-ha-ctl over ssh: promote, primary settings, slot, chef services, reindex)`,
      argv: promote,
      timeoutMs: config.failover.promoteTimeoutMs + config.chefServer.reindexTimeoutMs + 120_000,
      irreversible: true,
    });
  }
  return {
    command: 'switchover',
    summary: `switch over from ${config.node.name} to ${target}${decision.resumed ? ' (resuming an interrupted switchover)' : ''}`,
    steps,
  };
}

/**
 * Steps on the standby that the old primary asks for over ssh: failover's promotion steps, without the
 * fence (the old primary stopped cleanly and fenced itself).
 */
export function planSwitchoverPromote(facts: PairFacts, config: Config, primaryConf: string): Plan {
  const decision: Extract<FailoverDecision, { action: 'promote' | 'complete' }> =
    facts.local.pg.server?.inRecovery === false
      ? {
          action: 'complete',
          candidate: config.node.name,
          reason: 'switchover: already promoted',
          fence: 'none',
        }
      : {
          action: 'promote',
          candidate: config.node.name,
          reason: `switchover: ${config.peer.name} stopped cleanly and this node replayed all of its WAL`,
          lossNote: 'no write is lost',
          fence: 'none',
        };
  const plan = planFailover({ facts, decision, config, primaryConf });
  return {
    ...plan,
    command: 'switchover',
    steps: plan.steps.map((s) =>
      s.id === 'fence-old-master'
        ? { ...s, done: `${config.peer.name} stopped cleanly and fenced itself (switchover)` }
        : s,
    ),
  };
}
