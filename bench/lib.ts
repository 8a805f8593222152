/**
 * Shared helpers of the benchmarks in bench/: a sandbox that is always torn down, the built CLI run
 * with timestamped stderr lines, step timings read from the reporter's `[n/N] id  done (1.23s)` lines,
 * psql as postgres, and small number formatting helpers. Nothing here asserts a speed: the scripts
 * print figures and ratios.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, release, totalmem, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { downSandbox, upSandbox, type SandboxInfo, type SandboxNode } from '../test/sandbox/index.js';
import { inNetns } from '../test/sandbox/netns.js';
import type { NetMode } from '../test/sandbox/types.js';
import { sql as e2eSql } from '../test/e2e/helpers.js';

export type { SandboxInfo, SandboxNode };

const execFileP = promisify(execFile);

export const REPO = resolve(import.meta.dirname, '..');
export const CLI = join(REPO, 'dist', 'cli.js');
export const PG_BINDIR = '/usr/lib/postgresql/15/bin';

/** Milliseconds on a monotonic clock. */
export function now(): number {
  return performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  if (s.length === 0) {
    return Number.NaN;
  }
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function formatMb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MB`;
}

/** A line of the CLI's stderr with the time it arrived, in ms after the process was spawned. */
export interface TimedLine {
  readonly atMs: number;
  readonly line: string;
}

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly lines: readonly TimedLine[];
  /** From just before spawn() to the process's exit. */
  readonly totalMs: number;
  /** now() at the process's exit. */
  readonly endedAt: number;
}

export interface StartedCli {
  readonly child: ChildProcess;
  /** now() just before spawn(). */
  readonly t0: number;
  readonly done: Promise<CliRun>;
  exited(): boolean;
}

const ANSI = new RegExp(String.raw`\u001b\[[0-9;]*m`, 'g');

/**
 * Starts `node dist/cli.js --config <node config> --yes ARGS` on the node (inside its namespace in netns
 * mode) and timestamps its stderr lines.
 */
export function startCli(node: SandboxNode, args: readonly string[]): StartedCli {
  const t0 = now();
  const argv = [...inNetns(node.netns, [process.execPath, CLI, '--config', node.config, '--yes', ...args])];
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  let stdout = '';
  let stderr = '';
  let partial = '';
  let exitAt: number | undefined;
  const lines: TimedLine[] = [];
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => {
    const atMs = now() - t0;
    const text = d.toString();
    stderr += text;
    const parts = (partial + text).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      lines.push({ atMs, line: line.replace(ANSI, '') });
    }
  });
  child.on('exit', () => {
    exitAt = now();
  });
  const done = new Promise<CliRun>((resolvePromise) => {
    child.on('close', (code) => {
      if (partial) {
        lines.push({ atMs: now() - t0, line: partial.replace(ANSI, '') });
      }
      const endedAt = exitAt ?? now();
      resolvePromise({ code: code ?? -1, stdout, stderr, lines, totalMs: endedAt - t0, endedAt });
    });
    child.on('error', (error) => {
      const endedAt = now();
      resolvePromise({
        code: -1,
        stdout,
        stderr: `${stderr}\n${String(error)}`,
        lines,
        totalMs: endedAt - t0,
        endedAt,
      });
    });
  });
  return { child, t0, done, exited: () => exitAt !== undefined };
}

export function runCli(node: SandboxNode, args: readonly string[]): Promise<CliRun> {
  return startCli(node, args).done;
}

/** Runs the CLI and throws with its stderr when it does not exit 0. */
export async function mustCli(node: SandboxNode, args: readonly string[]): Promise<CliRun> {
  const r = await runCli(node, args);
  if (r.code !== 0) {
    throw new Error(`chef-ha-ctl ${args.join(' ')} on ${node.name} exited ${r.code}:\n${r.stderr}`);
  }
  return r;
}

/** Kills a child we started, by its pid, if it still runs. */
export function killChild(child: ChildProcess): void {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

const STEP_DONE = /^\[(\d+)\/(\d+)\] (\S+)\s+done \((\d+(?:\.\d+)?)s\)/;
const STEP_START = /^\[(\d+)\/(\d+)\] (\S+)\s+(?!done \(|skipped:)/;

export interface StepTiming {
  readonly id: string;
  /** Duration the CLI printed. */
  readonly ms: number;
  /** When the step's start line arrived, in ms after spawn. */
  readonly startAtMs: number | undefined;
  /** When its done line arrived, in ms after spawn. */
  readonly doneAtMs: number;
}

/** The steps that ran (were not skipped as already done), in plan order. */
export function stepTimings(run: CliRun): StepTiming[] {
  const starts = new Map<string, number>();
  const out: StepTiming[] = [];
  for (const { atMs, line } of run.lines) {
    const d = STEP_DONE.exec(line);
    if (d) {
      const id = d[3]!;
      out.push({ id, ms: Number(d[4]) * 1000, startAtMs: starts.get(id), doneAtMs: atMs });
      continue;
    }
    const s = STEP_START.exec(line);
    if (s && !starts.has(s[3]!)) {
      starts.set(s[3]!, atMs);
    }
  }
  return out;
}

export function stepMs(steps: readonly StepTiming[], id: string): number | undefined {
  return steps.find((s) => s.id === id)?.ms;
}

/** When the first step started (node startup, config, facts, planning happen before), in ms after spawn. */
export function firstStepAtMs(run: CliRun): number | undefined {
  return run.lines.find((l) => /^\[\d+\/\d+\] /.test(l.line))?.atMs;
}

/** psql as the postgres OS user over the node's socket (the e2e helper, with a bulk-load timeout). */
export function sql(node: SandboxNode, text: string, database = 'opscode_chef'): Promise<string> {
  return e2eSql(node, text, database, 600_000);
}

/** Runs a command and returns its stdout; throws with stderr on failure. */
export async function sh(
  file: string,
  args: readonly string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const { stdout } = await execFileP(file, args, {
    timeout: opts.timeoutMs ?? 600_000,
    maxBuffer: 16 * 1024 * 1024,
    env: opts.env ?? process.env,
  });
  return stdout;
}

/** Apparent size of a directory tree in bytes (`du -sb`). */
export async function duBytes(dir: string): Promise<number> {
  return Number((await sh('du', ['-sb', dir])).split(/\s/)[0]);
}

/** Whether a pid runs and is not a zombie. */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The postmaster pid of a data directory, if it runs. */
export async function postmasterPid(dataDir: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 && (await isAlive(pid)) ? pid : undefined;
  } catch {
    return undefined;
  }
}

export async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = now() + timeoutMs;
  while (!(await fn())) {
    if (now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(20);
  }
}

/** The parts of a node's chef-ha.json the benchmarks need. */
export interface NodeConfig {
  readonly stateDir: string;
  readonly passfile: string;
  readonly replicationUser: string;
}

export async function readNodeConfig(node: SandboxNode): Promise<NodeConfig> {
  const c = JSON.parse(await readFile(node.config, 'utf8')) as {
    stateDir?: string;
    postgres?: { passfile?: string };
    replication?: { user?: string };
  };
  return {
    stateDir: c.stateDir ?? '/var/opt/chef-ha',
    passfile: c.postgres?.passfile ?? '/var/lib/postgresql/.chef-ha.pgpass',
    replicationUser: c.replication?.user ?? 'chef_ha_replication',
  };
}

/** The join bundle setup-master writes on the master. */
export async function bundlePath(master: SandboxNode): Promise<string> {
  return join((await readNodeConfig(master)).stateDir, 'join-bundle.tar.gz');
}

/** Busy and total CPU jiffies of the whole machine, from /proc/stat. */
async function cpuTimes(): Promise<{ busy: number; total: number }> {
  const first = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const f = first.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((x, y) => x + y, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** The machine's CPU use (0..1, all cores) over the next ms milliseconds. */
export async function cpuBusy(ms = 1000): Promise<number> {
  const a = await cpuTimes();
  await sleep(ms);
  const b = await cpuTimes();
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
}

/**
 * The machine is shared (other builds and tests may run): waits until the CPUs are below `threshold`
 * busy over one second, for at most maxMs. Returns the last measured busy fraction, to print.
 */
export async function waitForQuiet(label: string, maxMs = 180_000, threshold = 0.15): Promise<number> {
  const deadline = now() + maxMs;
  let busy = await cpuBusy();
  let told = false;
  while (busy > threshold && now() < deadline) {
    if (!told) {
      process.stderr.write(
        `  ${label}: waiting for the machine to be idle (CPU ${(busy * 100).toFixed(0)}% busy)\n`,
      );
      told = true;
    }
    busy = await cpuBusy();
  }
  if (busy > threshold) {
    process.stderr.write(`  ${label}: machine still ${(busy * 100).toFixed(0)}% busy, measuring anyway\n`);
  }
  return busy;
}

export function loadLine(): string {
  return `load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`;
}

/** One line describing the machine: cores, memory, kernel, PostgreSQL, Node. */
export async function machineLine(): Promise<string> {
  let pg = 'PostgreSQL ?';
  try {
    pg = (await sh(`${PG_BINDIR}/postgres`, ['--version'])).trim();
  } catch {
    // not installed: upSandbox will say so
  }
  const cpu = cpus();
  return `${cpu.length} cores (${cpu[0]?.model ?? '?'}), ${(totalmem() / 1024 ** 3).toFixed(1)} GiB, kernel ${release()}, ${pg}, node ${process.version}`;
}

/**
 * Builds a two-node streaming sandbox in a fresh temporary directory, runs fn, and always tears the
 * sandbox down (and removes the directory unless keep). Ctrl-C and SIGTERM tear it down too.
 */
/**
 * A fresh temporary directory for a sandbox, torn down afterwards (`down`, then removed unless keep),
 * also on Ctrl-C or SIGTERM.
 */
export async function withSandboxDir<T>(
  prefix: string,
  fn: (dir: string) => Promise<T>,
  keep = false,
): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const teardown = async (): Promise<void> => {
    await downSandbox(dir);
    if (!keep) {
      await rm(dir, { recursive: true, force: true });
    }
  };
  const onSignal = (): void => {
    process.stderr.write(`\ninterrupted: tearing down ${dir}\n`);
    teardown().then(
      () => process.exit(130),
      () => process.exit(130),
    );
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await fn(dir);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await teardown();
    if (keep) {
      process.stderr.write(`kept ${dir} (sandbox is down)\n`);
    }
  }
}

export async function withSandbox<T>(
  prefix: string,
  opts: { keep?: boolean; mode?: 'streaming' | 'londiste'; sync?: boolean; net?: NetMode },
  fn: (sb: SandboxInfo, dir: string) => Promise<T>,
): Promise<T> {
  return withSandboxDir(
    prefix,
    async (dir) => {
      const sb = await upSandbox(dir, {
        nodes: 2,
        mode: opts.mode ?? 'streaming',
        sync: opts.sync ?? false,
        net: opts.net ?? 'loopback',
      });
      return fn(sb, dir);
    },
    opts.keep === true,
  );
}

/** The two nodes of a sandbox. */
export function pair(sb: SandboxInfo): [SandboxNode, SandboxNode] {
  const [a, b] = sb.nodes;
  if (!a || !b) {
    throw new Error('the sandbox has fewer than two nodes');
  }
  return [a, b];
}

/** A Chef node JSON as chef-client PUTs it. */
export function chefNode(name: string, attrs: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    chef_environment: '_default',
    json_class: 'Chef::Node',
    chef_type: 'node',
    normal: attrs,
    run_list: ['recipe[base]'],
  };
}

/** PUT /nodes/<name> on a Chef API; the HTTP status, or 0 when there was no answer. */
export async function putNode(chefApi: string, name: string, timeoutMs = 5_000): Promise<number> {
  try {
    const res = await fetch(`${chefApi}/nodes/${encodeURIComponent(name)}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(chefNode(name, { bench: true })),
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

export async function getStatus(url: string, timeoutMs = 5_000): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}
