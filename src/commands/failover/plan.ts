/** planFailover: a promote decision → the steps. Pure. */
import type { Config } from '../../core/config.js';
import type { PairFacts } from '../../core/facts.js';
import type { Plan, Step } from '../../core/plan.js';
import { statePaths } from '../../core/context.js';
import { quoteLiteral } from '../../pg/conninfo.js';
import { createSlotSql } from '../../pg/queries.js';
import { featuresFor } from '../../pg/version.js';
import type { FailoverDecision } from './decide.js';
import { serviceStep, slotOf } from '../common.js';
import { chefHaConfPath } from '../../chef/paths.js';
import { serversOf } from '../../haproxy/view.js';

export interface FailoverPlanInput {
  readonly facts: PairFacts;
  readonly decision: Extract<FailoverDecision, { action: 'promote' | 'complete' }>;
  readonly config: Config;
  /** chef-ha.conf for this node as a primary. */
  readonly primaryConf: string;
  /** --force: a proxy fence that fails is a warning even when nothing else fenced the old master. */
  readonly force?: boolean;
}

export function planFailover(input: FailoverPlanInput): Plan {
  const { facts, decision, config } = input;
  const steps: Step[] = [];
  const promoted = decision.action === 'complete';
  const peer = config.peer.name;
  const peerServer = facts.peer.server;
  // The marker lets a failover interrupted after promote be finished by running it again, and only then.
  steps.push({
    kind: 'action',
    id: 'mark-failover-started',
    title: 'note that a failover to this node is in progress',
    action: 'record-state',
    args: { path: statePaths(config).failoverMarker, data: { oldPrimary: peer } },
    done: promoted ? 'a failover to this node is in progress' : undefined,
  });
  // When the old master's PostgreSQL answers it is alive and may take writes: fence it before promoting.
  // When it does not answer it cannot take writes now; fencing its host over ssh is about its next start,
  // so it runs after the promotion and does not delay the first write (an ssh timeout on a cut-off host
  // would otherwise hold the failover for seconds).
  const fenceSteps: Step[] = [];
  if (decision.fence === 'sql' && peerServer) {
    const alreadyReadOnly = peerServer.inRecovery || peerServer.readOnlyDefault;
    fenceSteps.push({
      kind: 'action',
      id: 'fence-old-master',
      title: `fence ${peer} over SQL (read-only now; starts as a standby next time)`,
      action: 'fence-peer-sql',
      args: { peerDataDir: peerServer.dataDirectory, peerMajor: peerServer.major },
      done: alreadyReadOnly ? `${peer} is already read-only` : undefined,
    });
    // The old master's health endpoint answers from a snapshot up to health.refreshMs old: until it has
    // seen the fence it still says 200 on /primary, and after the promotion both nodes would. Wait for its
    // next snapshot (bounded: a peer endpoint this node cannot reach is waited for as long as a snapshot
    // can live before its refresh, then the failover goes on).
    if (!alreadyReadOnly && !promoted) {
      fenceSteps.push({
        kind: 'action',
        id: 'refresh-old-master-health',
        title: `ask ${peer}'s health endpoint for a new snapshot (it sees the fence now)`,
        action: 'refresh-health',
        args: { on: 'peer' },
      });
      fenceSteps.push({
        kind: 'wait',
        id: 'wait-old-master-health',
        title: `wait until ${peer}'s health endpoint has seen the fence (no 200 on /primary)`,
        until: { name: 'health-not-primary', on: 'peer' },
        timeoutMs: config.health.refreshMs + config.health.probeTimeoutMs,
        intervalMs: 50,
        onTimeout: 'continue',
      });
    }
  } else if (decision.fence === 'ssh') {
    fenceSteps.push({
      kind: 'action',
      id: 'fence-old-master',
      title: `fence ${peer} over ssh (its PostgreSQL cannot start writable until rejoin)`,
      action: 'fence-peer-ssh',
      args: { reason: `failover to ${config.node.name}` },
    });
  } else {
    fenceSteps.push({
      kind: 'action',
      id: 'fence-old-master',
      title: `fence ${peer}`,
      action: 'record-state',
      args: {},
      done: `no way to reach ${peer} (no answer from PostgreSQL, no peer.ssh): it must not be started before \`chef-ha-ctl rejoin\``,
    });
  }
  const fenceFirst = peerServer !== undefined;
  // HAProxy fence: the old master's servers go to maint before the promotion, so that a master this node
  // cannot reach (but the proxy can) gets no more clients. It is required when nothing else fences the
  // old master before the promotion (its PostgreSQL does not answer here), unless --force.
  const api = config.haproxy.runtimeApi;
  if (api) {
    steps.push({
      kind: 'action',
      id: 'fence-old-master-in-haproxy',
      title: `put ${peer} in maint in every HAProxy backend, ${config.node.name} ready (${api.address})`,
      action: 'fence-proxy',
      args: {
        address: api.address,
        servers: serversOf(peer),
        // a failover to the peer earlier (then rejoin) left this node's servers in maint
        ready: serversOf(config.node.name),
        timeoutMs: api.timeoutMs,
        required: !fenceFirst && input.force !== true,
      },
    });
  }
  if (fenceFirst) {
    steps.push(...fenceSteps);
  }
  const f = featuresFor(config.postgres.version);
  const promoteSeconds = Math.ceil(config.failover.promoteTimeoutMs / 1000);
  if (f.sqlPromote) {
    steps.push({
      kind: 'sql',
      id: 'promote',
      title: `promote ${config.node.name}`,
      on: 'local',
      database: 'postgres',
      text: `SELECT pg_promote(true, ${promoteSeconds});`,
      irreversible: true,
      done: promoted ? 'already promoted' : undefined,
    });
  } else {
    steps.push({
      ...serviceStep(
        config,
        'promote',
        'promote',
        `promote ${config.node.name}`,
        promoted ? 'already promoted' : undefined,
      ),
      irreversible: true,
    });
  }
  steps.push({
    kind: 'wait',
    id: 'wait-writable',
    title: 'wait until this node accepts writes',
    until: { name: 'local-writable' },
    timeoutMs: config.failover.promoteTimeoutMs,
    intervalMs: 50,
  });
  // HAProxy routes to this node once its health endpoint answers 200 on /primary: ask for that snapshot
  // now rather than at the next refresh (up to health.refreshMs later).
  steps.push({
    kind: 'action',
    id: 'refresh-health',
    title: "ask this node's health endpoint for a new snapshot (HAProxy sees the new primary sooner)",
    action: 'refresh-health',
    args: { on: 'local' },
  });
  if (!fenceFirst) {
    steps.push(...fenceSteps);
  }
  steps.push({
    kind: 'write',
    id: 'write-primary-settings',
    title: 'rewrite chef-ha.conf for the primary role (no primary_conninfo)',
    path: chefHaConfPath(config),
    content: input.primaryConf,
    mode: 0o644,
    owner: config.postgres.osUser,
    done: facts.local.files.chefHaConf === input.primaryConf ? 'chef-ha.conf is current' : undefined,
  });
  // A synchronous_standby_names inherited from the old master would block every write: the new primary
  // has no standby until rejoin.
  steps.push({
    kind: 'sql',
    id: 'clear-inherited-settings',
    title: 'clear synchronous_standby_names and read-only defaults inherited by the copy',
    on: 'local',
    database: 'postgres',
    text: `ALTER SYSTEM RESET synchronous_standby_names;\nALTER SYSTEM RESET default_transaction_read_only;\nSELECT pg_reload_conf();`,
    done: f.alterSystem
      ? undefined
      : `PostgreSQL ${config.postgres.version} has no ALTER SYSTEM settings to inherit`,
  });
  steps.push({
    kind: 'sql',
    id: 'create-slot-for-old-master',
    title: `create replication slot ${slotOf(peer)} so that ${peer} can rejoin`,
    on: 'local',
    database: 'postgres',
    text: createSlotSql(quoteLiteral(slotOf(peer))),
    done: !f.replicationSlots
      ? `PostgreSQL ${config.postgres.version} has no replication slots`
      : facts.local.pg.slots.some((s) => s.slot_name === slotOf(peer))
        ? 'the slot exists'
        : undefined,
  });
  steps.push({
    kind: 'action',
    id: 'record-failover',
    title: 'record the failover in the state directory',
    action: 'record-state',
    args: {
      path: statePaths(config).history,
      append: true,
      data: { event: 'failover', newPrimary: config.node.name, oldPrimary: peer, fence: decision.fence },
    },
  });
  steps.push({
    kind: 'run',
    id: 'restart-chef-services',
    title: 'restart erchef so that its database pool reconnects to the new primary',
    argv: [config.chefServer.ctl, 'restart', 'erchef'],
    timeoutMs: 120_000,
    // erchef's pool talks to this node's PostgreSQL; sessions open before the promotion take writes after
    // it, so a restart would only interrupt a service that already works.
    done:
      (facts.local.pg.chefSessions ?? 0) > 0
        ? `erchef holds ${facts.local.pg.chefSessions ?? 0} sessions on this node's PostgreSQL, which take writes once it is promoted`
        : undefined,
  });
  steps.push({
    kind: 'run',
    id: 'reindex',
    title: 'chef-server-ctl reindex',
    argv: [config.chefServer.ctl, 'reindex'],
    timeoutMs: config.chefServer.reindexTimeoutMs,
  });
  steps.push({
    kind: 'remove',
    id: 'mark-failover-finished',
    title: 'the failover is complete',
    path: statePaths(config).failoverMarker,
  });
  return {
    command: 'failover',
    summary: `${decision.reason}: ${promoted ? 'finish the failover to' : 'promote'} ${config.node.name}`,
    steps,
  };
}
