/**
 * guard: run before PostgreSQL starts (systemd ExecStartPre=, or postgres.preStartHook). Exit 0 lets the
 * start go on: read-only when this node is fenced or superseded. A non-zero exit stops the start.
 */
import type { CommandContext } from '../../core/context.js';
import { withLock } from '../../core/context.js';
import { executePlan } from '../../core/execute.js';
import { decideGuard, gatherGuardFacts } from '../../monitor/guard.js';
import { planFence } from '../fence/index.js';

export async function guard(ctx: CommandContext): Promise<void> {
  const facts = await gatherGuardFacts(ctx);
  const decision = decideGuard(facts, ctx.config);
  if (decision.action === 'allow') {
    ctx.reporter.info(`guard: ${decision.reason}`);
    ctx.reporter.result(`start allowed: ${decision.reason}`, {
      command: 'guard',
      node: ctx.config.node.name,
      action: 'allow',
      reason: decision.reason,
    });
    return;
  }
  ctx.reporter.info(`guard: ${decision.reason}`);
  await withLock(ctx, 'guard', async () => {
    const plan = planFence(
      facts.fence,
      ctx.config,
      { reason: `guard: ${decision.reason}` },
      new Date(ctx.ports.clock.now()).toISOString(),
    );
    await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
  });
  ctx.reporter.result(`start allowed read-only: ${ctx.config.node.name} is fenced`, {
    command: 'guard',
    node: ctx.config.node.name,
    action: 'fence',
    reason: decision.reason,
  });
}
