/** resume: automatic failover again after `pause` (removes the `paused` key in etcd). */
import type { CommandContext } from '../../core/context.js';
import { pause } from '../pause/index.js';

export async function resume(ctx: CommandContext): Promise<void> {
  await pause(ctx, { reason: '' }, 'resume');
}
