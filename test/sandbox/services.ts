/**
 * `scripts/sandbox services DIR start|stop`: the long-running processes a chef-ha package runs as
 * services (DESIGN.md sections 8 and 9), started on every node inside its network namespace, each under
 * a supervisor (supervise.ts) that restarts it when it dies.
 *
 * The list of services is data (SERVICES). A service whose chef-ha-ctl command this build does not have
 * is reported as skipped, never imitated. Per node and service:
 *   <root>/run/chef-ha/<name>.supervise.pid   the supervisor (stopped by this pid)
 *   <root>/run/chef-ha/<name>.pid             the service process itself (written by the supervisor)
 *   <root>/var/log/chef-ha/<name>.log         the service's output and the supervisor's notes
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inNetns } from './netns.js';
import { REPO_ROOT, TSX_IMPORT } from './paths.js';
import { cmdlineOf, isAlive, run, spawnDetached, stopPid, waitFor } from './proc.js';
import type { SandboxInfo, SandboxNode } from './types.js';

export type ServiceDef =
  | {
      readonly name: string;
      /** chef-ha-ctl arguments after `--config <node config>` */
      readonly args: readonly [string, ...string[]];
    }
  | {
      readonly name: string;
      /**
       * any other long-running argv for a node (the supervisor's own tests use one); it must name the
       * node's root, since processes are only ever stopped when their command line does
       */
      readonly command: (node: SandboxNode) => readonly [string, ...string[]];
    };

/** The services of the package (systemd units / runit folders in DESIGN.md section 9). */
export const SERVICES: readonly ServiceDef[] = [
  { name: 'health-server', args: ['health-server'] },
  { name: 'monitor', args: ['monitor'] },
];

export interface ServiceReport {
  readonly node: string;
  readonly service: string;
  readonly state: 'started' | 'already running' | 'stopped' | 'not running' | 'skipped';
  readonly pid?: number;
  readonly detail?: string;
}

function files(node: SandboxNode, name: string): { supervisorPid: string; pid: string; log: string } {
  return {
    supervisorPid: join(node.root, 'run', 'chef-ha', `${name}.supervise.pid`),
    pid: join(node.root, 'run', 'chef-ha', `${name}.pid`),
    log: join(node.root, 'var', 'log', 'chef-ha', `${name}.log`),
  };
}

async function readPid(file: string): Promise<number | null> {
  const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/** The commands (first words) this build's chef-ha-ctl lists in its --help. */
export async function availableCommands(info: SandboxInfo): Promise<Set<string>> {
  const r = await run([process.execPath, join(info.repo, 'dist', 'cli.js'), '--help']);
  if (r.code !== 0) {
    throw new Error(`chef-ha-ctl --help exited ${r.code} (run \`npm run build\` first): ${r.stderr.trim()}`);
  }
  const commands = new Set<string>();
  let inCommands = false;
  for (const line of r.stdout.split('\n')) {
    if (/^Commands:/.test(line)) {
      inCommands = true;
    } else if (inCommands && /^\S/.test(line)) {
      inCommands = false;
    } else if (inCommands) {
      const m = /^ {2}([a-z][a-z0-9-]*)((?:\|[a-z0-9-]+)*)/.exec(line);
      if (m?.[1] !== undefined) {
        commands.add(m[1]);
        for (const alias of (m[2] ?? '').split('|').filter(Boolean)) {
          commands.add(alias);
        }
      }
    }
  }
  return commands;
}

async function supervisorAlive(node: SandboxNode, name: string): Promise<number | null> {
  const pid = await readPid(files(node, name).supervisorPid);
  return pid !== null && (await isAlive(pid)) && (await cmdlineOf(pid)).includes(node.root) ? pid : null;
}

/**
 * Starts every service of SERVICES that this build has, on every node, each under its supervisor and
 * inside the node's namespace; waits until each has a running process. Idempotent.
 * @throws when a service does not come up within 20 s (its log is named).
 */
export async function startServices(
  info: SandboxInfo,
  services: readonly ServiceDef[] = SERVICES,
): Promise<ServiceReport[]> {
  const have = await availableCommands(info);
  const reports: ServiceReport[] = [];
  for (const node of info.nodes) {
    for (const svc of services) {
      if ('args' in svc && !have.has(svc.args[0])) {
        reports.push({
          node: node.name,
          service: svc.name,
          state: 'skipped',
          detail: `this build of chef-ha-ctl has no \`${svc.args[0]}\` command`,
        });
        continue;
      }
      const f = files(node, svc.name);
      const running = await supervisorAlive(node, svc.name);
      if (running !== null) {
        reports.push({ node: node.name, service: svc.name, state: 'already running', pid: running });
        continue;
      }
      await mkdir(join(node.root, 'run', 'chef-ha'), { recursive: true, mode: 0o755 });
      await mkdir(join(node.root, 'var', 'log', 'chef-ha'), { recursive: true, mode: 0o755 });
      await rm(f.pid, { force: true });
      const argv = [
        process.execPath,
        '--import',
        TSX_IMPORT,
        join(REPO_ROOT, 'test', 'sandbox', 'supervise.ts'),
        '--name',
        svc.name,
        '--pid-file',
        f.pid,
        '--log',
        f.log,
        '--',
        ...('args' in svc
          ? [process.execPath, join(info.repo, 'dist', 'cli.js'), '--config', node.config, ...svc.args]
          : svc.command(node)),
      ];
      const supervisor = spawnDetached(inNetns(node.netns, argv), { logFile: f.log, cwd: '/' });
      await writeFile(f.supervisorPid, `${supervisor}\n`);
      const up = await waitFor(async () => {
        const pid = await readPid(f.pid);
        return pid !== null && (await isAlive(pid));
      }, 20_000);
      if (!up) {
        throw new Error(`${svc.name} on ${node.name} did not start within 20 s; see ${f.log}`);
      }
      reports.push({
        node: node.name,
        service: svc.name,
        state: 'started',
        pid: (await readPid(f.pid)) ?? supervisor,
      });
    }
  }
  return reports;
}

/**
 * Stops every service's supervisor by its recorded pid (the supervisor stops its service), then the
 * service itself by its pid if it outlived the supervisor. Idempotent.
 */
export async function stopServices(
  info: SandboxInfo,
  services: readonly ServiceDef[] = SERVICES,
): Promise<ServiceReport[]> {
  const reports: ServiceReport[] = [];
  for (const node of info.nodes) {
    for (const svc of services) {
      const f = files(node, svc.name);
      const supervisor = await readPid(f.supervisorPid);
      const service = await readPid(f.pid);
      let stopped = false;
      if (supervisor !== null && (await isAlive(supervisor))) {
        stopped = await stopPid(supervisor, { mustContain: node.root, graceMs: 8_000 });
      }
      if (service !== null && (await isAlive(service))) {
        stopped = (await stopPid(service, { mustContain: node.root, graceMs: 5_000 })) || stopped;
      }
      await rm(f.supervisorPid, { force: true });
      await rm(f.pid, { force: true });
      reports.push({ node: node.name, service: svc.name, state: stopped ? 'stopped' : 'not running' });
    }
  }
  return reports;
}
