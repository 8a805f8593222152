/** monitor: the long-running watcher of one node (DESIGN.md section 7); the loop is src/monitor/loop.ts. */
import type { CommandContext } from '../../core/context.js';
import { RefusedError } from '../../core/errors.js';
import { runMonitor } from '../../monitor/loop.js';

export interface MonitorCommandOptions {
  /** Stop after this many loops (tests and benchmarks); forever when absent. */
  readonly maxLoops?: number;
}

export async function monitor(ctx: CommandContext, options: MonitorCommandOptions): Promise<void> {
  if (ctx.options.dryRun) {
    throw new RefusedError(
      'monitor has no dry run: it watches and acts until stopped',
      undefined,
      'run `chef-ha-ctl status` to see what it would see',
    );
  }
  await runMonitor(ctx, options.maxLoops === undefined ? {} : { maxLoops: options.maxLoops });
}
