/**
 * The proxy host of `scripts/sandbox up --proxy`: Debian's HAProxy (real) in front of the nodes, in its
 * own network namespace in netns mode (address .10 on the bridge), on 127.0.0.1 in loopback mode, with
 * the config that `chef-ha-ctl haproxy-config` prints for the pair.
 *
 * Its files live in DIR/proxy/: haproxy.cfg and haproxy.state (written by `chef-ha-ctl haproxy-config
 * --output`: the config and its every-server-DOWN state seed), haproxy.pid (the pid recorded at start;
 * `down` stops it by that pid), haproxy.log (HAProxy logs to stdout in the foreground) and admin.sock
 * (HAProxy's admin socket: a filesystem path, so reachable from every namespace).
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inNetns } from './netns.js';
import { run, spawnDetached, stopPid, tcpOpen, waitFor } from './proc.js';
import type { SandboxInfo, SandboxProxy } from './types.js';

/** Where the proxy host listens (one port block of the sandbox, see docs/sandbox.md). */
export interface ProxyPlan {
  readonly address: string;
  readonly netns: string | null;
  readonly ports: {
    readonly postgres: number;
    readonly postgresReadOnly: number;
    readonly chefApi: number;
    /** HAProxy's TCP runtime API, which `chef-ha-ctl failover` uses to put an old master in maint */
    readonly runtimeApi: number;
  };
}

/** The files of the proxy host under the sandbox directory. */
export function proxyFiles(sandboxDir: string): {
  dir: string;
  config: string;
  stateFile: string;
  adminSocket: string;
  pidFile: string;
  log: string;
} {
  const dir = join(sandboxDir, 'proxy');
  return {
    dir,
    config: join(dir, 'haproxy.cfg'),
    stateFile: join(dir, 'haproxy.state'),
    adminSocket: join(dir, 'admin.sock'),
    pidFile: join(dir, 'haproxy.pid'),
    log: join(dir, 'haproxy.log'),
  };
}

/**
 * The `haproxy` section of every node's chef-ha.json when the sandbox has a proxy host: its frontends,
 * the nodes' Chef API ports, the admin socket, the state file and the runtime API.
 */
export function haproxySection(
  sandboxDir: string,
  plan: ProxyPlan,
  chefApiPort: number,
  peerChefApiPort: number,
): Record<string, unknown> {
  const f = proxyFiles(sandboxDir);
  return {
    chefApi: { bind: plan.address, port: plan.ports.chefApi },
    postgres: { bind: plan.address, port: plan.ports.postgres },
    postgresReadOnly: { bind: plan.address, port: plan.ports.postgresReadOnly },
    chefApiPort,
    peerChefApiPort,
    socket: f.adminSocket,
    stateFile: f.stateFile,
    runtimeApi: { address: `${plan.address}:${plan.ports.runtimeApi}` },
  };
}

/**
 * Has the first node's chef-ha-ctl write the proxy's config and state seed (`haproxy-config --output`),
 * checks it (`haproxy -c`), starts HAProxy in the foreground as a detached process (inside the proxy
 * namespace in netns mode) and waits for its Chef API frontend. Every server starts DOWN until the
 * health endpoint of its node answers (`scripts/sandbox services DIR start` runs health-server).
 * @throws when haproxy-config fails, the config is rejected or HAProxy does not listen within 15 s.
 */
export async function startProxy(info: SandboxInfo, plan: ProxyPlan): Promise<SandboxProxy> {
  const f = proxyFiles(info.dir);
  await mkdir(f.dir, { recursive: true, mode: 0o755 });
  const first = info.nodes[0];
  if (first === undefined) {
    throw new Error('internal: a proxy needs nodes');
  }
  const render = await run(
    inNetns(first.netns, [
      process.execPath,
      join(info.repo, 'dist', 'cli.js'),
      '--config',
      first.config,
      'haproxy-config',
      '--output',
      f.config,
    ]),
  );
  if (render.code !== 0) {
    throw new Error(
      `chef-ha-ctl haproxy-config on ${first.name} exited ${render.code} (is dist/ built? npm run build):\n${render.stderr || render.stdout}`,
    );
  }
  const check = await run(['haproxy', '-c', '-q', '-f', f.config]);
  if (check.code !== 0) {
    throw new Error(`haproxy -c -f ${f.config} rejected the config:\n${check.stderr || check.stdout}`);
  }
  const pid = spawnDetached(inNetns(plan.netns, ['haproxy', '-db', '-f', f.config]), {
    logFile: f.log,
    cwd: '/',
  });
  await writeFile(f.pidFile, `${pid}\n`);
  if (!(await waitFor(() => tcpOpen(plan.address, plan.ports.chefApi), 15_000))) {
    throw new Error(
      `HAProxy of the proxy host did not listen on ${plan.address}:${plan.ports.chefApi}; see ${f.log}`,
    );
  }
  return {
    address: plan.address,
    chefApi: `http://${plan.address}:${plan.ports.chefApi}`,
    postgres: `${plan.address}:${plan.ports.postgres}`,
    postgresReadOnly: `${plan.address}:${plan.ports.postgresReadOnly}`,
    runtimeApi: `${plan.address}:${plan.ports.runtimeApi}`,
    adminSocket: f.adminSocket,
    config: f.config,
    stateFile: f.stateFile,
    pidFile: f.pidFile,
    log: f.log,
    netns: plan.netns,
  };
}

/** Stops the proxy's HAProxy by its recorded pid (only if its command line still names the sandbox). */
export async function stopProxy(sandboxDir: string): Promise<void> {
  const f = proxyFiles(sandboxDir);
  const pid = Number((await readFile(f.pidFile, 'utf8').catch(() => '')).trim());
  if (pid > 0) {
    await stopPid(pid, { mustContain: f.dir, graceMs: 3_000 });
  }
  await rm(f.adminSocket, { force: true });
}
