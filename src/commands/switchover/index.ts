/**
 * switchover: a planned role swap with no lost write. Thin: dispatches on the replication mode; the
 * streaming work is in streaming.ts and plan.ts beside this file, Londiste's in londiste.ts.
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
      if (options.promoteStandby) {
        throw new RefusedError(
          'switchover --promote-standby is for streaming replication; nothing was changed',
          undefined,
          'run `chef-ha-ctl switchover` on either node',
        );
      }
      await (await import('./londiste.js')).switchoverLondiste(ctx, options);
      return;
  }
}
