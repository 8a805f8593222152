/**
 * switchover: a planned role swap with no lost write. Thin: dispatches on the replication mode; the
 * streaming work is in streaming.ts and plan.ts beside this file.
 */
import type { CommandContext } from '../../core/context.js';
import { RefusedError } from '../../core/errors.js';

export interface SwitchoverCliOptions {
  readonly to?: string | undefined;
  /** Internal: run by the old primary over ssh on the standby, once it has replayed everything. */
  readonly promoteStandby: boolean;
}

export async function switchover(ctx: CommandContext, options: SwitchoverCliOptions): Promise<void> {
  switch (ctx.config.replication.mode) {
    case 'streaming':
      await (await import('./streaming.js')).switchoverStreaming(ctx, options);
      return;
    case 'londiste':
      throw new RefusedError(
        'switchover: replication.mode "londiste" is not supported by this command yet; nothing was changed',
        undefined,
        'switchover works for streaming replication only',
      );
  }
}
