/**
 * switchover in londiste mode: the planned `londiste takeover` (not --dead-root), run on the branch,
 * which becomes the root. Takeover pauses the old root's worker, disables inserts into the old root's
 * queue (from then on every write to a replicated table there fails, so no acknowledged write can be
 * left behind), inserts a last tick, waits until this branch has applied every batch up to that tick,
 * promotes this node and demotes the old root to a branch of it. Then, as failover does: the queue
 * ticker settings on the new root, grants, erchef restarted, reindex. Run on the root, it hands the
 * whole operation to the branch's chef-ha-ctl over peer.ssh.
 */
import type { CommandContext } from '../../core/context.js';
import { statePaths, withLock } from '../../core/context.js';
import type { Config } from '../../core/config.js';
import { executePlan } from '../../core/execute.js';
import { RefusedError } from '../../core/errors.js';
import type { Plan, Step } from '../../core/plan.js';
import { CommandError } from '../../ports/index.js';
import { renderSshArgv } from '../../chef/ssh.js';
import { gatherLondisteFacts, type LondisteFacts } from '../../londiste/facts.js';
import { qualifiedTables } from '../../londiste/names.js';
import {
  chefStepsAfterTakeover,
  grantStep,
  londisteStep,
  peerNode,
  queueSettingsStep,
} from '../../londiste/plan.js';
import { confirmPlan } from '../confirm.js';
import type { SwitchoverCliOptions } from './index.js';

export type LondisteSwitchoverDecision =
  | { readonly action: 'done'; readonly reason: string }
  | { readonly action: 'delegate'; readonly target: string }
  | { readonly action: 'takeover' };

/**
 * Decides what this node does. Pure.
 * @throws RefusedError naming the problem and the fix when the pair cannot switch over safely.
 */
export function decideSwitchoverLondiste(
  lf: LondisteFacts,
  config: Config,
  to: string | undefined,
): LondisteSwitchoverDecision {
  const me = config.node.name;
  const peer = config.peer.name;
  if (to !== undefined && to !== me && to !== peer) {
    throw new RefusedError(
      `switchover: ${to} is not a node of this pair (${me}, ${peer}); nothing was changed`,
      undefined,
      `use --to ${me} or --to ${peer}`,
    );
  }
  const local = lf.local;
  const remote = lf.peer;
  if (!local.reachable) {
    throw new RefusedError(
      `switchover: this node's PostgreSQL does not answer (${local.error ?? 'no answer'}); nothing was changed`,
      undefined,
      'start PostgreSQL on this node first',
    );
  }
  if (!remote.reachable) {
    throw new RefusedError(
      `switchover: ${peer}'s Chef database does not answer (${remote.error ?? 'no answer'}); a switchover needs both nodes; nothing was changed`,
      undefined,
      local.nodeType === 'branch'
        ? `if ${peer} is lost, use \`chef-ha-ctl failover\` on ${me}`
        : `start PostgreSQL on ${peer}`,
    );
  }
  if (local.nodeType === 'root' && remote.nodeType === 'root') {
    throw new RefusedError(
      `switchover: both ${me} and ${peer} are roots of queue ${config.londiste.queue}; nothing was changed`,
      undefined,
      `run \`chef-ha-ctl rejoin\` on the old master (the node that was fenced) first`,
    );
  }
  if (local.nodeType === 'root') {
    if (to === me) {
      return { action: 'done', reason: `${me} is the root already` };
    }
    if (remote.nodeType !== 'branch' || remote.provider !== londisteName(me)) {
      throw new RefusedError(
        `switchover: ${peer} is not a branch of ${me} (${remote.nodeType ?? 'not a member'}); nothing was changed`,
        undefined,
        `run \`chef-ha-ctl setup-slave\` (or \`rejoin\`) on ${peer} first`,
      );
    }
    if (!config.peer.ssh) {
      throw new RefusedError(
        `switchover: the takeover runs on the branch ${peer}, and peer.ssh is not configured; nothing was changed`,
        undefined,
        `run \`chef-ha-ctl switchover\` on ${peer}, or set peer.ssh`,
      );
    }
    return { action: 'delegate', target: peer };
  }
  if (local.nodeType !== 'branch') {
    throw new RefusedError(
      `switchover: ${me} is ${local.nodeType ? `a Londiste ${local.nodeType}` : `not a member of queue ${config.londiste.queue}`}; only a branch can take over; nothing was changed`,
      undefined,
      'set the slave up with `chef-ha-ctl setup-slave` (it creates a branch)',
    );
  }
  if (to === peer && remote.nodeType === 'root') {
    return { action: 'done', reason: `${peer} is the root already` };
  }
  if (remote.nodeType !== 'root' || local.provider !== peerNode(config)) {
    throw new RefusedError(
      `switchover: ${me}'s provider is ${local.provider ?? 'unknown'}, not the root ${peer}; nothing was changed`,
      undefined,
      'run `chef-ha-ctl status` on both nodes',
    );
  }
  const notOk = qualifiedTables(config).filter(
    (t) => !local.tables.some((x) => x.table === t && x.state === 'ok'),
  );
  if (notOk.length > 0) {
    throw new RefusedError(
      `switchover: tables not in sync on ${me}: ${notOk.join(', ')}; taking over now would lose their rows; nothing was changed`,
      undefined,
      'wait until `chef-ha-ctl status` shows every table ok',
    );
  }
  if (lf.daemons.workerPid === undefined) {
    throw new RefusedError(
      `switchover: the Londiste worker of ${me} does not run (takeover waits for it to pause and catch up); nothing was changed`,
      undefined,
      '`chef-ha-ctl londiste-daemons start`',
    );
  }
  return { action: 'takeover' };
}

function londisteName(name: string): string {
  return name.replace(/-/g, '_');
}

/** Steps on the branch. Pure. */
export function planSwitchoverLondiste(lf: LondisteFacts, config: Config): Plan {
  const steps: Step[] = [
    {
      ...londisteStep(
        config,
        'takeover',
        `takeover ${peerNode(config)}: inserts into ${config.peer.name}'s queue stop (writes to the replicated tables there fail), ${config.node.name} applies every event up to the last tick, then becomes the root and ${config.peer.name} its branch`,
        ['takeover', peerNode(config)],
        undefined,
        300_000,
      ),
      irreversible: true,
    },
    queueSettingsStep(config, undefined, 'reapply-queue-ticker'),
    grantStep(config, lf.local),
    {
      kind: 'action',
      id: 'record-switchover',
      title: 'record the switchover in the state directory',
      action: 'record-state',
      args: {
        path: statePaths(config).history,
        append: true,
        data: { event: 'switchover', mode: 'londiste', newRoot: config.node.name, oldRoot: config.peer.name },
      },
    },
    ...chefStepsAfterTakeover(config),
  ];
  return {
    command: 'switchover',
    summary: `${config.node.name} takes over queue ${config.londiste.queue} from ${config.peer.name} (no committed write is lost)`,
    steps,
  };
}

async function delegate(ctx: CommandContext, target: string): Promise<void> {
  const argv = renderSshArgv(ctx.config, [
    'switchover',
    '--yes',
    '--to',
    target,
    ...(ctx.options.dryRun ? ['--dry-run'] : []),
  ]);
  if (!argv) {
    throw new RefusedError('switchover: peer.ssh is not configured; nothing was changed');
  }
  ctx.reporter.info(`switchover: the takeover runs on the branch; running it on ${target} over ssh`);
  const r = await ctx.ports.shell.run(argv, { timeoutMs: 3_600_000, inherit: true });
  if (r.exitCode === 4) {
    throw new RefusedError(`switchover: ${target} refused (see above); nothing was changed`);
  }
  if (r.exitCode !== 0) {
    throw new CommandError(
      argv.join(' '),
      r.exitCode,
      r.stderr,
      `the switchover on ${target} failed (exit ${r.exitCode}, see above); run \`chef-ha-ctl status\` there`,
    );
  }
}

export async function switchoverLondiste(ctx: CommandContext, options: SwitchoverCliOptions): Promise<void> {
  const config = ctx.config;
  const started = ctx.ports.clock.now();
  const first = decideSwitchoverLondiste(await gatherLondisteFacts(ctx), config, options.to);
  if (first.action === 'delegate') {
    await delegate(ctx, first.target);
    return;
  }
  await withLock(ctx, 'switchover', async () => {
    const lf = await gatherLondisteFacts(ctx);
    const decision = decideSwitchoverLondiste(lf, config, options.to);
    if (decision.action === 'done') {
      ctx.reporter.result(`switchover: nothing to do: ${decision.reason}.`, {
        command: 'switchover',
        mode: 'londiste',
        already: true,
        root: lf.local.nodeType === 'root' ? config.node.name : config.peer.name,
      });
      return;
    }
    if (decision.action === 'delegate') {
      throw new RefusedError(
        `switchover: ${config.node.name} became the root meanwhile; nothing was changed`,
      );
    }
    const plan = planSwitchoverLondiste(lf, config);
    await confirmPlan(ctx, plan, `${plan.summary}. Go on?`);
    const result = await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
    if (ctx.options.dryRun) {
      return;
    }
    const seconds = Number(((ctx.ports.clock.now() - started) / 1000).toFixed(2));
    ctx.reporter.result(
      `${config.node.name} is the Londiste root now and ${config.peer.name} its branch (${seconds}s); no committed write was left behind.`,
      {
        command: 'switchover',
        mode: 'londiste',
        root: config.node.name,
        branch: config.peer.name,
        completed: result.completed,
        skipped: result.skipped,
        seconds,
      },
    );
  });
}
