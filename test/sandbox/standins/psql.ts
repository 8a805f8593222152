/**
 * psql as the recipes run it: as an OS user (chpst -u / the execute resource's `user`), over a Unix socket
 * directory and port, unaligned tuples-only output. Used by the reconfigure stand-in and the tests.
 */
import { join } from 'node:path';
import { runAs, type RunResult } from '../proc.js';

export interface PsqlTarget {
  readonly osUser: string;
  readonly bindir: string;
  readonly socketDir: string;
  readonly port: number;
  /** database role; omitted = the OS user's name (peer) */
  readonly user?: string;
}

export function psqlArgv(t: PsqlTarget, db: string, extra: readonly string[]): string[] {
  const argv = [
    join(t.bindir, 'psql'),
    '-X',
    '-q',
    '-A',
    '-t',
    '-v',
    'ON_ERROR_STOP=1',
    '-h',
    t.socketDir,
    '-p',
    String(t.port),
  ];
  if (t.user !== undefined) {
    argv.push('-U', t.user);
  }
  argv.push('-d', db, ...extra);
  return argv;
}

/** Runs SQL (one or more statements) and returns the raw result. */
export function psqlRun(t: PsqlTarget, db: string, sql: string): Promise<RunResult> {
  return runAs(t.osUser, psqlArgv(t, db, ['-c', sql]), { cwd: '/', timeoutMs: 30_000 });
}

/** Runs a SQL script given on stdin. */
export function psqlScript(t: PsqlTarget, db: string, script: string): Promise<RunResult> {
  return runAs(t.osUser, psqlArgv(t, db, ['-f', '-']), { cwd: '/', input: script, timeoutMs: 60_000 });
}

/** Runs SQL and returns the rows (fields split on "|"); throws with psql's stderr on failure. */
export async function psqlRows(t: PsqlTarget, db: string, sql: string): Promise<string[][]> {
  const r = await psqlRun(t, db, sql);
  if (r.code !== 0) {
    throw new Error(r.stderr.trim() || `psql exited ${r.code}`);
  }
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('|'));
}

/** Quotes a SQL literal. */
export function lit(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** Quotes a SQL identifier. */
export function ident(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}
