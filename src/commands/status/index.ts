/** status: both nodes side by side; exit 0 healthy, 8 degraded, 9 broken. */
import type { CommandContext } from '../../core/context.js';
import { gatherPairFacts } from '../../core/facts.js';
import { StatusExit } from '../../core/errors.js';
import { summarizeStatus } from './summarize.js';
import { formatStatus } from './format.js';

export async function status(ctx: CommandContext): Promise<void> {
  if (ctx.config.replication.mode === 'londiste') {
    await (await import('./londiste.js')).londisteStatus(ctx);
    return;
  }
  const facts = await gatherPairFacts(ctx);
  const summary = summarizeStatus(facts, ctx.config);
  ctx.reporter.result(formatStatus(summary), summary);
  if (summary.exitCode !== 0) {
    // The table already said why; the exit code carries the verdict.
    throw new StatusExit(summary.exitCode as 8 | 9, '');
  }
}
