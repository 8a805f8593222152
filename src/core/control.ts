/**
 * Read-only looks at the local data directory through PostgreSQL's own tools (pg_controldata), for
 * commands that must know a stopped cluster's state: rejoin and switchover.
 */
import type { CommandContext } from './context.js';
import { parseControlData, type ControlData } from '../pg/controldata.js';

/** The local data directory's control data, or undefined when it cannot be read (no cluster there). */
export async function readLocalControlData(ctx: CommandContext): Promise<ControlData | undefined> {
  const pgc = ctx.config.postgres;
  try {
    const r = await ctx.ports.shell.run([`${pgc.bindir}/pg_controldata`, '-D', pgc.dataDir], {
      user: pgc.osUser,
      env: { LC_ALL: 'C', LANG: 'C' },
      timeoutMs: 30_000,
    });
    if (r.exitCode !== 0) {
      return undefined;
    }
    const data = parseControlData(r.stdout);
    return data.checkpointLsn ? data : undefined;
  } catch {
    return undefined;
  }
}
