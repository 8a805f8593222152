/**
 * rejoin: make a fenced old primary the standby of the new one. Thin: dispatches on the replication
 * mode; the streaming work is in streaming.ts and plan.ts beside this file, Londiste's in londiste.ts.
 */
import type { CommandContext } from '../../core/context.js';
import type { RejoinOptions } from './plan.js';

export type { RejoinOptions } from './plan.js';

export async function rejoin(ctx: CommandContext, options: RejoinOptions): Promise<void> {
  switch (ctx.config.replication.mode) {
    case 'streaming':
      await (await import('./streaming.js')).rejoinStreaming(ctx, options);
      return;
    case 'londiste':
      await (await import('./londiste.js')).rejoinLondiste(ctx);
      return;
  }
}
