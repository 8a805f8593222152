/**
 * The proxy host of `scripts/sandbox up --proxy`: Debian's HAProxy (real) in front of the nodes, in its
 * own network namespace in netns mode (address .10 on the bridge), on 127.0.0.1 in loopback mode.
 *
 * Its files live in DIR/proxy/: haproxy.cfg, haproxy.pid (the pid recorded at start; `down` stops it by
 * that pid), haproxy.log (HAProxy logs to stdout in the foreground) and admin.sock (HAProxy's admin
 * socket: a filesystem path, so reachable from every namespace).
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { inNetns } from './netns.js';
import { run, spawnDetached, stopPid, waitFor } from './proc.js';
import type { SandboxInfo, SandboxProxy } from './types.js';

export interface ProxyPlan {
  readonly address: string;
  readonly netns: string | null;
  readonly ports: { readonly postgres: number; readonly chefApi: number; readonly stats: number };
}

function proxyDir(sandboxDir: string): string {
  return join(sandboxDir, 'proxy');
}

/**
 * SANDBOX BRIDGE CONFIG, not chef-ha's: until `chef-ha-ctl haproxy-config` exists, the proxy routes both
 * frontends to the node whose Chef API stand-in reports a writable database (GET /_status, a sandbox-only
 * endpoint). chef-ha's real config checks its health endpoint (port 5445 role) instead.
 */
export function renderBridgeConfig(info: SandboxInfo, plan: ProxyPlan, adminSocket: string): string {
  const server = (n: SandboxInfo['nodes'][number], port: number): string => {
    const api = new URL(n.chefApi);
    return `    server ${n.name} ${n.postgres.host}:${port} check port ${api.port} inter 1s fall 2 rise 1 on-marked-down shutdown-sessions`;
  };
  const check = [
    '    option httpchk GET /_status',
    // (HAProxy's tokenizer eats double quotes: "." stands for the JSON quote)
    '    http-check expect rstring writable.:true',
  ];
  return [
    '# HAProxy of the chef-ha sandbox proxy host.',
    '# SANDBOX BRIDGE CONFIG (test/sandbox/proxy.ts), not the output of chef-ha-ctl haproxy-config: a node',
    '# is in service when its Chef API stand-in says its database is writable (sandbox-only /_status).',
    'global',
    `    stats socket ${adminSocket} mode 600 level admin`,
    '    log stdout format raw local0 info',
    '',
    'defaults',
    '    mode tcp',
    '    log global',
    '    option tcplog',
    '    timeout connect 1s',
    '    timeout client 60s',
    '    timeout server 60s',
    '    timeout check 1s',
    '',
    'frontend chef_api',
    `    bind ${plan.address}:${plan.ports.chefApi}`,
    '    default_backend chef_api_primary',
    '',
    'backend chef_api_primary',
    ...check,
    ...info.nodes.map((n) => server(n, Number(new URL(n.chefApi).port))),
    '',
    'frontend postgres',
    `    bind ${plan.address}:${plan.ports.postgres}`,
    '    default_backend postgres_primary',
    '',
    'backend postgres_primary',
    ...check,
    ...info.nodes.map((n) => server(n, n.postgres.port)),
    '',
    'frontend stats',
    '    mode http',
    `    bind ${plan.address}:${plan.ports.stats}`,
    '    stats enable',
    '    stats uri /stats',
    '',
  ].join('\n');
}

function tcpOpen(host: string, port: number): Promise<boolean> {
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

/**
 * Writes the proxy's config, checks it (`haproxy -c`), starts HAProxy in the foreground as a detached
 * process (inside the proxy namespace in netns mode) and waits for its Chef API frontend.
 * @throws when the config is rejected or HAProxy does not listen within 15 s.
 */
export async function startProxy(info: SandboxInfo, plan: ProxyPlan): Promise<SandboxProxy> {
  const dir = proxyDir(info.dir);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const config = join(dir, 'haproxy.cfg');
  const adminSocket = join(dir, 'admin.sock');
  const pidFile = join(dir, 'haproxy.pid');
  const log = join(dir, 'haproxy.log');
  await writeFile(config, renderBridgeConfig(info, plan, adminSocket));
  const check = await run(['haproxy', '-c', '-q', '-f', config]);
  if (check.code !== 0) {
    throw new Error(`haproxy -c -f ${config} rejected the config:\n${check.stderr || check.stdout}`);
  }
  const pid = spawnDetached(inNetns(plan.netns, ['haproxy', '-db', '-f', config]), {
    logFile: log,
    cwd: '/',
  });
  await writeFile(pidFile, `${pid}\n`);
  if (!(await waitFor(() => tcpOpen(plan.address, plan.ports.chefApi), 15_000))) {
    throw new Error(
      `HAProxy of the proxy host did not listen on ${plan.address}:${plan.ports.chefApi}; see ${log}`,
    );
  }
  return {
    address: plan.address,
    chefApi: `http://${plan.address}:${plan.ports.chefApi}`,
    postgres: `${plan.address}:${plan.ports.postgres}`,
    stats: `http://${plan.address}:${plan.ports.stats}/stats`,
    adminSocket,
    config,
    configSource: 'sandbox',
    pidFile,
    log,
    netns: plan.netns,
  };
}

/** Stops the proxy's HAProxy by its recorded pid (only if its command line still names the sandbox). */
export async function stopProxy(sandboxDir: string): Promise<void> {
  const dir = proxyDir(sandboxDir);
  const pid = Number((await readFile(join(dir, 'haproxy.pid'), 'utf8').catch(() => '')).trim());
  if (pid > 0) {
    await stopPid(pid, { mustContain: dir, graceMs: 3_000 });
  }
  await rm(join(dir, 'admin.sock'), { force: true });
}
