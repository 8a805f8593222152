/**
 * Helpers for the health and HAProxy end-to-end tests: the health-server and a real HAProxy 2.6, started
 * by the test as its own children and stopped by pid; the runtime API over its Unix socket.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { CLI, type SandboxInfo, type SandboxNode } from './helpers.js';

export interface Daemon {
  readonly child: ChildProcess;
  readonly log: () => string;
  stop(): Promise<void>;
}

function daemon(argv: readonly string[], name: string): Daemon {
  const child = spawn(argv[0] ?? '', argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  let log = '';
  child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  child.on('error', (e) => (log += `${name}: ${e.message}\n`));
  return {
    child,
    log: () => log,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        return;
      }
      const exited = new Promise<void>((resolve) =>
        child.once('exit', () => {
          resolve();
        }),
      );
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** `chef-ha-ctl health-server` for a node, as the package's service would run it. */
export function startHealthServer(node: SandboxNode): Daemon {
  return daemon([process.execPath, CLI, '--config', node.config, 'health-server'], `health ${node.name}`);
}

/** HAProxy in the foreground (-db) with this config. */
export function startHaproxy(cfg: string): Daemon {
  return daemon(['haproxy', '-db', '-f', cfg], 'haproxy');
}

/** HTTP status of a health path, 0 when nothing answers. */
export async function healthStatus(node: SandboxNode, path: string, method = 'GET'): Promise<number> {
  try {
    const r = await fetch(`http://127.0.0.1:${node.healthPort}${path}`, {
      method,
      signal: AbortSignal.timeout(2_000),
    });
    await r.text();
    return r.status;
  } catch {
    return 0;
  }
}

export async function healthJson(node: SandboxNode, path: string): Promise<Record<string, unknown>> {
  const r = await fetch(`http://127.0.0.1:${node.healthPort}${path}`, { signal: AbortSignal.timeout(2_000) });
  return (await r.json()) as Record<string, unknown>;
}

/** One runtime API command over a Unix socket or host:port. */
export function runtime(address: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const m = /^(.+):(\d+)$/.exec(address);
    const s = address.startsWith('/') ? connect(address) : connect(Number(m?.[2]), m?.[1] ?? '');
    let out = '';
    s.on('data', (d) => (out += d.toString()));
    s.on('error', reject);
    s.on('close', () => {
      resolve(out);
    });
    s.on('connect', () => s.end(`${line}\n`));
  });
}

/** Total sessions per backend/server from `show stat`. */
export async function sessionsByServer(sock: string): Promise<Map<string, number>> {
  const csv = await runtime(sock, 'show stat');
  const out = new Map<string, number>();
  for (const line of csv.split('\n')) {
    const f = line.split(',');
    if (f.length > 8 && !line.startsWith('#') && f[1] !== 'FRONTEND' && f[1] !== 'BACKEND') {
      out.set(`${f[0]}/${f[1]}`, Number(f[7]));
    }
  }
  return out;
}

/** op_state and admin_state of each backend/server from `show servers state`. */
export async function serverStates(sock: string): Promise<Map<string, { op: number; admin: number }>> {
  const text = await runtime(sock, 'show servers state');
  const out = new Map<string, { op: number; admin: number }>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length > 7 && /^\d+$/.test(f[0] ?? '')) {
      out.set(`${f[1]}/${f[3]}`, { op: Number(f[5]), admin: Number(f[6]) });
    }
  }
  return out;
}

export interface ProxyPorts {
  readonly chefApi: number;
  readonly postgres: number;
  readonly postgresReadOnly: number;
  readonly runtimeApi: number;
  readonly socket: string;
  readonly stateFile: string;
  readonly cfg: string;
}

/**
 * Adds a haproxy section to both nodes' chef-ha.json: frontends on the unused offsets 5..8 of the first
 * node's reserved port block, the Chef API stand-ins' ports, and the TCP runtime API failover uses.
 */
export async function configureProxy(sb: SandboxInfo, dir: string): Promise<ProxyPorts> {
  const [a, b] = sb.nodes as [SandboxNode, SandboxNode];
  const p: ProxyPorts = {
    chefApi: sb.basePort + 5,
    postgres: sb.basePort + 6,
    postgresReadOnly: sb.basePort + 7,
    runtimeApi: sb.basePort + 8,
    socket: join(dir, 'haproxy-admin.sock'),
    stateFile: join(dir, 'haproxy.state'),
    cfg: join(dir, 'haproxy.cfg'),
  };
  const apiPort = (n: SandboxNode): number => Number(new URL(n.chefApi).port);
  for (const [n, peer] of [
    [a, b],
    [b, a],
  ] as const) {
    const cfg = JSON.parse(await readFile(n.config, 'utf8')) as Record<string, unknown>;
    cfg['haproxy'] = {
      chefApi: { bind: '127.0.0.1', port: p.chefApi },
      postgres: { bind: '127.0.0.1', port: p.postgres },
      postgresReadOnly: { bind: '127.0.0.1', port: p.postgresReadOnly },
      chefApiPort: apiPort(n),
      peerChefApiPort: apiPort(peer),
      socket: p.socket,
      stateFile: p.stateFile,
      runtimeApi: { address: `127.0.0.1:${p.runtimeApi}` },
    };
    await writeFile(n.config, JSON.stringify(cfg, null, 2) + '\n');
  }
  return p;
}

/** Opens n TCP connections one after the other (each closed after holdMs); returns how many connected. */
export async function connectMany(port: number, n: number, holdMs = 20): Promise<number> {
  let ok = 0;
  for (let i = 0; i < n; i++) {
    ok += await new Promise<number>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.on('connect', () => {
        setTimeout(() => {
          s.destroy();
          resolve(1);
        }, holdMs);
      });
      s.on('error', () => {
        resolve(0);
      });
    });
  }
  return ok;
}
