/** Asking before a mutating plan runs (patronictl style): --yes skips, no TTY without --yes refuses. */
import type { CommandContext } from '../core/context.js';
import type { Plan } from '../core/plan.js';
import { RefusedError } from '../core/errors.js';

export async function confirmPlan(ctx: CommandContext, plan: Plan, question?: string): Promise<void> {
  if (ctx.options.dryRun || ctx.options.yes) {
    return;
  }
  const todo = plan.steps.filter((s) => !s.done);
  if (todo.length === 0) {
    return;
  }
  const ok = await ctx.confirm(question ?? `${plan.summary}. Go on?`);
  if (!ok) {
    throw new RefusedError(`${plan.command}: not confirmed; nothing was changed`, '--yes');
  }
}
