/**
 * failover in londiste mode, run on the slave (a branch): refuse while the master is a healthy root
 * unless --force; fence a master whose PostgreSQL answers (before), or its host over ssh (after, so the
 * first write does not wait on ssh); `takeover --dead-root`; the queue ticker settings again on the new
 * root (they live in the database and a promoted branch starts with Skytools' defaults); restart erchef;
 * reindex. Londiste is asynchronous: how many events were lost is unknown here and found at rejoin.
 */
import type { CommandContext } from '../../core/context.js';
import { statePaths, withLock } from '../../core/context.js';
import type { Config } from '../../core/config.js';
import { gatherPeerFacts, type PairFacts } from '../../core/facts.js';
import { executePlan } from '../../core/execute.js';
import { RefusedError } from '../../core/errors.js';
import type { Plan, Step } from '../../core/plan.js';
import { gatherLondisteFacts, type LondisteFacts } from '../../londiste/facts.js';
import {
  chefStepsAfterTakeover,
  grantStep,
  londisteStep,
  peerNode,
  queueSettingsStep,
} from '../../londiste/plan.js';
import { confirmPlan } from '../confirm.js';
import type { FailoverOptions } from './decide.js';

export const LOSS_NOTE =
  'Londiste replication is asynchronous: events the master committed but had not yet delivered are lost by this failover; their number is unknown now and is found by `chef-ha-ctl rejoin` on the old master';

/**
 * Plans the Londiste failover. Pure.
 * @throws RefusedError when the master is healthy (without --force) or this node cannot take over.
 */
export function planFailoverLondiste(
  facts: Pick<PairFacts, 'peer'>,
  lf: LondisteFacts,
  config: Config,
  options: FailoverOptions,
): Plan {
  const local = lf.local;
  const peer = lf.peer;
  if (!local.reachable) {
    throw new RefusedError(
      `failover: this node's PostgreSQL does not answer (${local.error ?? 'no answer'}); nothing was changed`,
      undefined,
      'start PostgreSQL on this node first',
    );
  }
  const isRoot = local.nodeType === 'root';
  if (!isRoot && local.nodeType !== 'branch') {
    throw new RefusedError(
      `failover: ${config.node.name} is ${local.nodeType ? `a Londiste ${local.nodeType}` : 'not a member of queue ' + config.londiste.queue}; only a branch can take over; nothing was changed`,
      undefined,
      'set the slave up with `chef-ha-ctl setup-slave` (it creates a branch)',
    );
  }
  const peerHealthyRoot = peer.reachable && peer.nodeType === 'root';
  if (!isRoot && peerHealthyRoot && !options.force) {
    throw new RefusedError(
      `failover: refusing: the master ${config.peer.name} answers and is the root of queue ${config.londiste.queue}; nothing was changed`,
      '--force',
      'for a planned change use `chef-ha-ctl switchover` (no lost writes)',
    );
  }
  const peerServer = facts.peer.server;
  const steps: Step[] = [];
  const fenceSqlDone =
    !facts.peer.reachable || !peerServer || peerServer.inRecovery || peerServer.readOnlyDefault;
  steps.push({
    kind: 'action',
    id: 'fence-old-master',
    title: `fence ${config.peer.name} through SQL: read-only now, a standby (read-only) at its next start`,
    action: 'fence-peer-sql',
    args: peerServer ? { peerDataDir: peerServer.dataDirectory, peerMajor: peerServer.major } : {},
    done: fenceSqlDone
      ? facts.peer.reachable && peerServer
        ? 'it is read-only already'
        : `its PostgreSQL does not answer (${facts.peer.error ?? 'down'}): its host is fenced over ssh after the takeover`
      : undefined,
  });
  steps.push(
    londisteStep(
      config,
      'takeover',
      `takeover ${peerNode(config)} --dead-root: this branch becomes the root of queue ${config.londiste.queue}`,
      ['takeover', peerNode(config), '--dead-root'],
      isRoot ? `${config.node.name} is the root already` : undefined,
    ),
  );
  // The step's facts are from before the takeover: the settings are always applied on the new root.
  steps.push({ ...queueSettingsStep(config, isRoot ? local : undefined, 'reapply-queue-ticker') });
  steps.push(grantStep(config, local));
  const ssh = config.peer.ssh !== undefined;
  steps.push({
    kind: 'action',
    id: 'fence-old-master-host',
    title: `fence ${config.peer.name} over ssh (\`chef-ha-ctl fence\` there: a later start is read-only)`,
    action: 'fence-peer-ssh',
    args: { reason: `londiste failover to ${config.node.name}` },
    done: !fenceSqlDone
      ? 'fenced through SQL above'
      : facts.peer.reachable && peerServer
        ? 'it is read-only already'
        : ssh
          ? undefined
          : 'peer.ssh is not configured: do not start the old master before `chef-ha-ctl rejoin`',
  });
  steps.push({
    kind: 'action',
    id: 'record-failover',
    title: 'record the failover in the state directory',
    action: 'record-state',
    args: {
      path: statePaths(config).history,
      append: true,
      data: { event: 'failover', mode: 'londiste', newRoot: config.node.name, oldRoot: config.peer.name },
    },
  });
  steps.push(...chefStepsAfterTakeover(config));
  return {
    command: 'failover',
    summary: isRoot
      ? `${config.node.name} is the root already: finish the failover`
      : `${peerHealthyRoot ? 'forced' : `${config.peer.name} is down`}: ${config.node.name} takes over queue ${config.londiste.queue}`,
    steps,
  };
}

export async function failoverLondiste(ctx: CommandContext, options: FailoverOptions): Promise<void> {
  await withLock(ctx, 'failover', async () => {
    const started = ctx.ports.clock.now();
    // Only what the plan reads: the peer's server facts and both nodes' cascade state (no local
    // PostgreSQL/embedded/file facts, no package checks): every fact read here delays the first write.
    const [peer, lf] = await Promise.all([
      gatherPeerFacts(ctx),
      gatherLondisteFacts(ctx, undefined, { packages: false }),
    ]);
    const facts = { peer };
    const plan = planFailoverLondiste(facts, lf, ctx.config, options);
    ctx.reporter.info(`failover: ${LOSS_NOTE}`);
    await confirmPlan(ctx, plan, `Fence ${ctx.config.peer.name} and take over as Londiste root?`);
    const result = await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
    if (!ctx.options.dryRun) {
      const seconds = ((ctx.ports.clock.now() - started) / 1000).toFixed(2);
      ctx.reporter.result(
        `${ctx.config.node.name} is the Londiste root now (${seconds}s). ${LOSS_NOTE}. ${ctx.config.peer.name} must not be started writable.`,
        {
          command: 'failover',
          mode: 'londiste',
          root: ctx.config.node.name,
          lostEvents: 'unknown until rejoin',
          completed: result.completed,
          skipped: result.skipped,
          seconds: Number(seconds),
        },
      );
    }
  });
}
