/**
 * The sandbox's way to start a node's PostgreSQL by hand, as an operator would with
 * `systemctl start postgresql@15-main` on a real host: the pre-start hook of the node's chef-ha.json
 * first (systemd's ExecStartPre= drop-in), then pg_ctl start. A failing hook stops the start, as
 * ExecStartPre= does. In netns mode both run inside the node's network namespace.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PG_BINDIR } from './paths.js';
import { inNetns } from './netns.js';
import { run, type RunResult } from './proc.js';
import type { SandboxNode } from './types.js';

export interface StartResult {
  readonly hook: RunResult | undefined;
  readonly start: RunResult | undefined;
}

/** Starts the node's distribution cluster; `hook: false` skips the pre-start hook (no drop-in). */
export async function startNodePostgres(
  node: SandboxNode,
  opts: { readonly hook?: boolean } = {},
): Promise<StartResult> {
  const config = JSON.parse(await readFile(node.config, 'utf8')) as {
    postgres?: { preStartHook?: string[] };
  };
  const hookArgv = config.postgres?.preStartHook;
  let hook: RunResult | undefined;
  if (opts.hook !== false && hookArgv !== undefined) {
    hook = await run(inNetns(node.netns, hookArgv), { timeoutMs: 60_000, cwd: '/' });
    if (hook.code !== 0) {
      return { hook, start: undefined };
    }
  }
  // in netns mode the cluster runs inside the node's namespace, as `up` starts it
  const start = await run(
    inNetns(node.netns, [
      'runuser',
      '-u',
      'postgres',
      '--',
      join(PG_BINDIR, 'pg_ctl'),
      '-D',
      node.postgres.dataDir,
      '-o',
      `-c config_file=${node.postgres.confDir}/postgresql.conf`,
      '-l',
      node.postgres.logFile,
      '-w',
      '-t',
      '60',
      'start',
    ]),
    { cwd: '/', timeoutMs: 90_000 },
  );
  return { hook, start };
}
