/**
 * Process helpers shared by the sandbox builder and the stand-ins: run a command and collect its output,
 * spawn a detached daemon, look at /proc, stop a process by pid. Nothing here ever kills by name.
 */
import { spawn, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, readlink } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly input?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

/** Runs argv (no shell) and resolves with its exit code and output; never rejects on a non-zero exit. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) {
    return Promise.reject(new Error('run: empty argv'));
  }
  return new Promise((resolvePromise, reject) => {
    const options: SpawnOptions = { stdio: ['pipe', 'pipe', 'pipe'], timeout: opts.timeoutMs ?? 60_000 };
    if (opts.env !== undefined) {
      options.env = opts.env;
    }
    if (opts.cwd !== undefined) {
      options.cwd = opts.cwd;
    }
    const child = spawn(cmd, args, options);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolvePromise({ code: code ?? (signal === null ? 1 : 128), stdout, stderr });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input ?? '');
  });
}

/** Like run() but rejects with the command, exit code and stderr when it fails. */
export async function runOk(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(argv, opts);
  if (r.code !== 0) {
    throw new Error(`${argv.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  }
  return r;
}

/** Runs argv as another OS user through runuser (what the recipes' `user` attribute and chpst -u do). */
export function runAs(user: string, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(['runuser', '-u', user, '--', ...argv], opts);
}

export interface DetachedOptions {
  readonly logFile: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly uid?: number;
  readonly gid?: number;
}

/** Starts a daemon in its own session with stdout/stderr appended to logFile; returns its pid. */
export function spawnDetached(argv: readonly string[], opts: DetachedOptions): number {
  const [cmd, ...args] = argv;
  if (cmd === undefined) {
    throw new Error('spawnDetached: empty argv');
  }
  const fd = openSync(opts.logFile, 'a');
  try {
    const options: SpawnOptions = { detached: true, stdio: ['ignore', fd, fd] };
    if (opts.env !== undefined) {
      options.env = opts.env;
    }
    if (opts.cwd !== undefined) {
      options.cwd = opts.cwd;
    }
    if (opts.uid !== undefined) {
      options.uid = opts.uid;
    }
    if (opts.gid !== undefined) {
      options.gid = opts.gid;
    }
    const child = spawn(cmd, args, options);
    child.on('error', () => undefined);
    child.unref();
    if (child.pid === undefined) {
      throw new Error(`could not start ${argv.join(' ')}`);
    }
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** True when a process with this pid exists and is not a zombie. */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The command line of a process, NUL separators turned into spaces ('' when it is gone). */
export async function cmdlineOf(pid: number): Promise<string> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** Parent pid of a process (0 when unknown). */
export async function parentOf(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Every pid currently in /proc. */
export async function allPids(): Promise<number[]> {
  const { readdir } = await import('node:fs/promises');
  return (await readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number);
}

/** Working directory of a process ('' when unknown). */
export async function cwdOf(pid: number): Promise<string> {
  try {
    return await readlink(`/proc/${pid}/cwd`);
  } catch {
    return '';
  }
}

/**
 * Stops one process by pid: SIGTERM, wait up to graceMs, then SIGKILL. When `mustContain` is given the
 * process is only signalled if its command line contains it (protects against pid reuse).
 * Resolves true when the process is gone.
 */
export async function stopPid(
  pid: number,
  opts: { graceMs?: number; mustContain?: string } = {},
): Promise<boolean> {
  if (!(await isAlive(pid))) {
    return true;
  }
  if (opts.mustContain !== undefined && !(await cmdlineOf(pid)).includes(opts.mustContain)) {
    return true;
  }
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return true;
  }
  const deadline = Date.now() + (opts.graceMs ?? 5_000);
  while (Date.now() < deadline) {
    if (!(await isAlive(pid))) {
      return true;
    }
    await sleep(50);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return true;
  }
  for (let i = 0; i < 40; i++) {
    if (!(await isAlive(pid))) {
      return true;
    }
    await sleep(50);
  }
  return false;
}

/** uid and gid of an OS account, from `id`. */
export async function userIds(user: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await runOk(['id', '-u', user])).stdout.trim());
  const gid = Number((await runOk(['id', '-g', user])).stdout.trim());
  return { uid, gid };
}

/** Polls `probe` every intervalMs until it resolves true or timeoutMs passes. */
export async function waitFor(
  probe: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) {
      return true;
    }
    if (Date.now() >= deadline) {
      return false;
    }
    await sleep(intervalMs);
  }
}

/** Whether a TCP connection to host:port opens within 1 s. */
export function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const s = createConnection({ host, port });
    s.setTimeout(1_000, () => {
      s.destroy();
      resolvePromise(false);
    });
    s.once('connect', () => {
      s.destroy();
      resolvePromise(true);
    });
    s.once('error', () => {
      resolvePromise(false);
    });
  });
}
