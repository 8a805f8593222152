/**
 * The ports: every effect chef-ha has goes through one of these (STYLE.md B4). Commands receive them in
 * the CommandContext; tests pass fakes.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { userInfo } from 'node:os';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../core/version.js';
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
export { urlHost } from './http.js';

export interface Process {
  readonly pid: number;
  readonly isRoot: boolean;
  readonly user: string;
  /** Whether a process with this pid exists. */
  isAlive(pid: number): boolean;
  /** Where templates/ and recipes-overrides/ are (the package root). */
  readonly packageRoot: string;
  /**
   * The argv that runs this chef-ha-ctl from another program (a systemd drop-in): the omnibus package's
   * `/opt/chef-ha/bin/chef-ha-ctl`, or node with this tree's dist/cli.js.
   */
  readonly selfCommand: readonly [string, ...string[]];
  /** Sends a signal to a pid this program knows it started (from a pid file); false when it is gone. */
  kill(pid: number, signal: NodeJS.Signals): boolean;
  /**
   * Starts a long-running child in its own session, detached from this process, output appended to
   * logFile; returns its pid. For daemons chef-ha supervises (argv form only, no shell).
   */
  spawnDetached(argv: readonly [string, ...string[]], logFile: string): number;
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

/** See Process.selfCommand. In the package, root is <prefix>/embedded/lib/chef-ha. */
function selfCommand(root: string): [string, ...string[]] {
  if (root.endsWith(path.join('embedded', 'lib', 'chef-ha'))) {
    const ctl = path.resolve(root, '..', '..', '..', 'bin', 'chef-ha-ctl');
    if (existsSync(ctl)) {
      return [ctl];
    }
  }
  return [process.execPath, path.join(root, 'dist', 'cli.js')];
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
  const root = PACKAGE_ROOT;
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
      selfCommand: selfCommand(root),
      kill(pid, signal) {
        try {
          process.kill(pid, signal);
          return true;
        } catch {
          return false;
        }
      },
      spawnDetached(argv, logFile) {
        const fd = openSync(logFile, 'a', 0o600);
        try {
          const child = spawn(argv[0], argv.slice(1), {
            detached: true,
            stdio: ['ignore', fd, fd],
          });
          child.unref();
          if (child.pid === undefined) {
            throw new Error(`could not start ${argv.join(' ')}`);
          }
          return child.pid;
        } finally {
          closeSync(fd);
        }
      },
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
