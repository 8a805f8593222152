/** failover: gather → decide → plan → confirm → execute → report. */
import type { CommandContext } from '../../core/context.js';
import { withLock } from '../../core/context.js';
import { gatherPairFacts } from '../../core/facts.js';
import { executePlan } from '../../core/execute.js';
import { RefusedError } from '../../core/errors.js';
import { decideFailover, type FailoverOptions } from './decide.js';
import { planFailover } from './plan.js';
import { renderManagedFiles } from '../render.js';
import { confirmPlan } from '../confirm.js';

export async function failover(ctx: CommandContext, options: FailoverOptions): Promise<void> {
  await withLock(ctx, 'failover', () => run(ctx, options));
}

async function run(ctx: CommandContext, options: FailoverOptions): Promise<void> {
  const started = ctx.ports.clock.now();
  const facts = await gatherPairFacts(ctx);
  const decision = decideFailover(facts, ctx.config, options);
  if (decision.action === 'refuse') {
    throw new RefusedError(
      `failover: refusing: ${decision.reason}; nothing was changed`,
      decision.override,
      decision.hint,
    );
  }
  if (decision.action === 'promote') {
    ctx.reporter.info(`failover: ${decision.lossNote}`);
  }
  const rendered = renderManagedFiles(ctx, { role: 'primary' });
  const plan = planFailover({
    facts,
    decision,
    config: ctx.config,
    primaryConf: rendered.chefHaConf,
    force: options.force,
  });
  await confirmPlan(ctx, plan, `Fence ${ctx.config.peer.name} and promote ${ctx.config.node.name}?`);
  const result = await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
  if (!ctx.options.dryRun) {
    const seconds = ((ctx.ports.clock.now() - started) / 1000).toFixed(2);
    ctx.reporter.result(
      `${ctx.config.node.name} is the primary now (${seconds}s). ${ctx.config.peer.name} must not be started writable: run \`chef-ha-ctl rejoin\` there to make it the new standby.`,
      {
        command: 'failover',
        primary: ctx.config.node.name,
        fence: decision.fence,
        completed: result.completed,
        skipped: result.skipped,
        seconds: Number(seconds),
      },
    );
  }
}
