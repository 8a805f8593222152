/**
 * Helpers for the end-to-end tests: run the built chef-ha-ctl against a sandbox node, talk SQL to a
 * node's PostgreSQL, act as a chef-client through a node's Chef API stand-in, and poll for conditions.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { downSandbox, upSandbox, type SandboxInfo, type SandboxNode } from '../sandbox/index.js';

const execFileP = promisify(execFile);

export const REPO = resolve(import.meta.dirname, '..', '..');
export const CLI = join(REPO, 'dist', 'cli.js');

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** argv prefix that runs a command on this node: `ip netns exec <ns>` in netns mode, nothing on loopback. */
function onNode(node: SandboxNode | null): string[] {
  return node?.netns ? ['ip', 'netns', 'exec', node.netns] : [];
}

/** Runs `node dist/cli.js --config <node config> --yes ARGS` on the node (inside its namespace in netns mode). */
export async function runCli(
  node: SandboxNode,
  args: readonly string[],
  opts: { timeoutMs?: number; yes?: boolean } = {},
): Promise<CliResult> {
  return runCliRaw(
    ['--config', node.config, ...(opts.yes === false ? [] : ['--yes']), ...args],
    opts.timeoutMs,
    node,
  );
}

/** Runs the CLI with exactly these arguments, no stdin (on `node` when given, see runCli). */
export function runCliRaw(
  args: readonly string[],
  timeoutMs = 600_000,
  node: SandboxNode | null = null,
): Promise<CliResult> {
  const started = Date.now();
  const [file, ...argv] = [...onNode(node), process.execPath, CLI, ...args] as [string, ...string[]];
  return new Promise((resolvePromise) => {
    const child = spawn(file, argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? -1, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** Starts the CLI in its own process group (to kill it and its children mid-way), on the node. */
export function spawnCli(node: SandboxNode, args: readonly string[]): ChildProcess {
  // `ip netns exec` execs the command in place: the child's pid is the CLI's
  const [file, ...argv] = [
    ...onNode(node),
    process.execPath,
    CLI,
    '--config',
    node.config,
    '--yes',
    ...args,
  ] as [string, ...string[]];
  return spawn(file, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, NO_COLOR: '1' },
  });
}

/** psql as postgres over the node's socket; returns trimmed stdout. */
export async function sql(
  node: SandboxNode,
  text: string,
  database = 'opscode_chef',
  timeoutMs = 30_000,
): Promise<string> {
  const { stdout } = await execFileP(
    'runuser',
    [
      '-u',
      'postgres',
      '--',
      `${node.postgres.bindir}/psql`,
      '-X',
      '-q',
      '-A',
      '-t',
      '-v',
      'ON_ERROR_STOP=1',
      '-h',
      node.postgres.socketDir,
      '-p',
      String(node.postgres.port),
      '-d',
      database,
      '-c',
      text,
    ],
    { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
  );
  return stdout.trim();
}

/** Like sql(), but returns the error text instead of throwing. */
export async function trySql(
  node: SandboxNode,
  text: string,
  database = 'opscode_chef',
): Promise<{ ok: boolean; out: string }> {
  try {
    return { ok: true, out: await sql(node, text, database) };
  } catch (error) {
    return { ok: false, out: String((error as { stderr?: string }).stderr ?? error) };
  }
}

export interface HttpResult {
  readonly status: number;
  readonly body: unknown;
}

async function http(method: string, url: string, body?: unknown): Promise<HttpResult> {
  try {
    const res = await fetch(url, {
      method,
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(5_000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed };
  } catch (error) {
    return { status: 0, body: String(error) };
  }
}

/** A chef-client registering itself (POST /clients). */
export function registerClient(node: SandboxNode, name: string): Promise<HttpResult> {
  return http('POST', `${node.chefApi}/clients`, { name });
}

export function getClient(node: SandboxNode, name: string): Promise<HttpResult> {
  return http('GET', `${node.chefApi}/clients/${encodeURIComponent(name)}`);
}

export function putNode(
  node: SandboxNode,
  name: string,
  attrs: Record<string, unknown> = {},
): Promise<HttpResult> {
  return http('PUT', `${node.chefApi}/nodes/${encodeURIComponent(name)}`, {
    name,
    chef_environment: '_default',
    json_class: 'Chef::Node',
    chef_type: 'node',
    normal: attrs,
    run_list: ['recipe[base]'],
  });
}

export function getNode(node: SandboxNode, name: string): Promise<HttpResult> {
  return http('GET', `${node.chefApi}/nodes/${encodeURIComponent(name)}`);
}

/** Polls fn every intervalMs until it returns a truthy value or timeoutMs passes. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T>,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) {
        return v;
      }
      last = v;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${String(last)})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Waits for the reindex setup-slave started in the background to end; returns its exit status and log.
 */
export async function waitForBackgroundReindex(
  node: SandboxNode,
  timeoutMs = 120_000,
): Promise<{ exitCode: number; log: string }> {
  const logFile = join(node.root, 'var/opt/chef-ha/logs/reindex.log');
  const exitText = await waitFor(
    'the background reindex to end',
    async () => (await readFile(`${logFile}.exit`, 'utf8').catch(() => '')).trim() || undefined,
    timeoutMs,
    100,
  );
  return { exitCode: Number(exitText), log: await readFile(logFile, 'utf8') };
}

/** The postmaster pid of a data directory, or undefined. */
export async function postmasterPid(dataDir: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** Whether the node's PostgreSQL is in recovery (standby). */
export async function inRecovery(node: SandboxNode): Promise<boolean> {
  return (await sql(node, 'SELECT pg_is_in_recovery()', 'postgres')) === 't';
}

/** sha256 of every file under the given roots (path → hash), to prove "nothing changed". */
export async function snapshotFiles(roots: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const visit = async (p: string): Promise<void> => {
    if (!existsSync(p)) {
      return;
    }
    const st = await stat(p);
    if (st.isDirectory()) {
      for (const name of (await readdir(p)).sort()) {
        await visit(join(p, name));
      }
    } else if (st.isFile()) {
      out.set(
        `${p} ${(st.mode & 0o7777).toString(8)}`,
        createHash('sha256')
          .update(await readFile(p))
          .digest('hex'),
      );
    }
  };
  for (const r of roots) {
    await visit(r);
  }
  return out;
}

/** The files of a node that chef-ha may change (for "nothing changed" checks). */
export function managedRoots(node: SandboxNode): string[] {
  return [
    join(node.root, 'etc', 'chef-server'),
    join(node.root, 'opt', 'chef-server', 'embedded', 'cookbooks', 'chef-server', 'recipes'),
    node.postgres.confDir,
  ];
}

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * A test's teardown: `down` (every process, namespace and port reservation), then the folder itself
 * (0.1-2 GB of clusters). CHEF_HA_KEEP_SANDBOX=1 keeps the folder, downed, for a post-mortem.
 */
export async function removeSandbox(dir: string | undefined): Promise<void> {
  if (dir === undefined || dir === '') {
    return;
  }
  await downSandbox(dir);
  if (process.env.CHEF_HA_KEEP_SANDBOX === '1') {
    process.stderr.write(`keeping ${dir} (CHEF_HA_KEEP_SANDBOX=1)\n`);
    return;
  }
  await rm(dir, { recursive: true, force: true });
}

/** Lines of a node's chef-ha state files and logs, for secret-leak checks. */
export async function readTree(dir: string): Promise<string> {
  let text = '';
  const visit = async (p: string): Promise<void> => {
    if (!existsSync(p)) {
      return;
    }
    const st = await stat(p);
    if (st.isDirectory()) {
      for (const name of await readdir(p)) {
        await visit(join(p, name));
      }
    } else if (st.isFile() && st.size < 5_000_000) {
      text += (await readFile(p)).toString('latin1');
    }
  };
  await visit(dir);
  return text;
}

export type { SandboxInfo, SandboxNode };

/**
 * A loopback streaming pair set up as the tests need it most often: a sandbox in a new temporary folder,
 * setup-master on the first node, setup-slave --bundle on the second (each asserted to exit 0).
 */
export async function setUpStreamingPair(
  prefix: string,
  opts: { sync: boolean },
): Promise<{ dir: string; sb: SandboxInfo; a: SandboxNode; b: SandboxNode }> {
  const dir = await makeTempDir(prefix);
  const sb = await upSandbox(dir, { nodes: 2, mode: 'streaming', sync: opts.sync });
  const [a, b] = sb.nodes as [SandboxNode, SandboxNode];
  const m = await runCli(a, ['setup-master']);
  if (m.code !== 0) {
    throw new Error(`setup-master exited ${m.code}:\n${m.stderr}`);
  }
  const s = await runCli(b, ['setup-slave', '--bundle', join(a.root, 'var/opt/chef-ha/join-bundle.tar.gz')]);
  if (s.code !== 0) {
    throw new Error(`setup-slave exited ${s.code}:\n${s.stderr}`);
  }
  return { dir, sb, a, b };
}
