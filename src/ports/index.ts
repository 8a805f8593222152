/**
 * The ports: every effect chef-ha has goes through one of these (STYLE.md B4). Commands receive them in
 * the CommandContext; tests pass fakes.
 */
import { userInfo } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Archive } from './archive.js';
import { createArchive } from './archive.js';
import type { Clock } from './clock.js';
import { createClock } from './clock.js';
import type { Files } from './files.js';
import { createFiles } from './files.js';
import type { Postgres } from './postgres.js';
import { createPostgres } from './postgres.js';
import type { Shell } from './shell.js';
import { createShell } from './shell.js';
import type { Templates } from './templates.js';
import { createTemplates } from './templates.js';
import type { HaproxyRuntime } from './haproxy.js';
import { createHaproxyRuntime } from './haproxy.js';
import type { Http } from './http.js';
import { createHttp } from './http.js';

export type { Archive } from './archive.js';
export type { Clock } from './clock.js';
export type { Files, FileInfo, TreeEntry } from './files.js';
export type { Postgres, LocalPgTarget, PeerPgTarget } from './postgres.js';
export { SqlError } from './postgres.js';
export type { Shell, RunOptions, RunResult } from './shell.js';
export { CommandError, shellQuote, redact } from './shell.js';
export type { Templates } from './templates.js';
export type { HaproxyRuntime } from './haproxy.js';
export type { Http } from './http.js';

export interface Process {
  readonly pid: number;
  readonly isRoot: boolean;
  readonly user: string;
  /** Whether a process with this pid exists. */
  isAlive(pid: number): boolean;
  /** Where templates/ and recipes-overrides/ are (the package root). */
  readonly packageRoot: string;
}

export interface Ports {
  readonly shell: Shell;
  readonly pg: Postgres;
  readonly files: Files;
  readonly archive: Archive;
  readonly templates: Templates;
  readonly clock: Clock;
  readonly proc: Process;
  /** HAProxy's runtime API (failover's proxy fence). */
  readonly haproxy: HaproxyRuntime;
  /** HTTP probes (health endpoints shown by status). */
  readonly http: Http;
}

export interface RealPortsOptions {
  readonly applicationName: string;
  readonly signal: AbortSignal;
  readonly log: (line: string) => void;
  /** Values to redact from every log line and error (loaded secrets). */
  readonly secrets: () => readonly string[];
}

/** The package root: two levels above this file, in src/ports or dist/ports. */
export function packageRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
}

/** Builds the real ports. */
export function createRealPorts(options: RealPortsOptions): Ports {
  const files = createFiles();
  const isRoot = process.getuid?.() === 0;
  const user = userInfo().username;
  const shell = createShell(
    { secrets: options.secrets, log: options.log, signal: options.signal, isRoot, currentUser: user },
    (p) => files.canExecute(p),
  );
  const root = packageRoot();
  return {
    shell,
    pg: createPostgres(shell, options.applicationName),
    files,
    archive: createArchive(),
    templates: createTemplates(root),
    clock: createClock(),
    haproxy: createHaproxyRuntime(),
    http: createHttp(),
    proc: {
      pid: process.pid,
      isRoot,
      user,
      packageRoot: root,
      isAlive(pid) {
        try {
          process.kill(pid, 0);
          return true;
        } catch (error) {
          return (error as NodeJS.ErrnoException).code === 'EPERM';
        }
      },
    },
  };
}
