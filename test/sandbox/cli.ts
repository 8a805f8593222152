/**
 * Command-line face of the sandbox (run through scripts/sandbox):
 *   up DIR [--nodes 2] [--net loopback|netns] [--mode streaming|londiste] [--sync] [--proxy] [--etcd]
 *   down DIR
 *   services DIR start|stop
 *   exec DIR NODE -- CMD [ARG...]
 *   partition DIR NODE [OTHER] | heal DIR NODE [OTHER]       (netns mode)
 *   freeze DIR NODE | thaw DIR NODE
 * Exit codes: 0 ok, 1 failure, 2 usage or not implemented yet; exec exits with the command's code.
 */
import { spawn } from 'node:child_process';
import {
  NotImplementedError,
  SandboxStateError,
  SandboxUpError,
  downSandbox,
  cutLink,
  freezePostgres,
  healLink,
  healNode,
  nodeNamed,
  partitionNode,
  readSandbox,
  startServices,
  stopServices,
  thawPostgres,
  upSandbox,
} from './index.js';
import { inNetns } from './netns.js';
import type { NetMode, ReplicationMode, UpOptions } from './types.js';

const USAGE = `usage:
  scripts/sandbox up DIR [--nodes 2] [--net loopback|netns] [--mode streaming|londiste] [--sync] [--proxy] [--etcd [--automatic-failover]]
  scripts/sandbox down DIR
  scripts/sandbox services DIR start|stop
  scripts/sandbox exec DIR NODE -- CMD [ARG...]    run CMD on NODE (inside its namespace in netns mode)
  scripts/sandbox partition DIR NODE [OTHER]       take NODE's link down at the bridge (netns mode);
                                                   with OTHER (a node or "proxy"): drop only their traffic
  scripts/sandbox heal DIR NODE [OTHER]            undo it
  scripts/sandbox freeze DIR NODE                  SIGSTOP NODE's postmaster
  scripts/sandbox thaw DIR NODE                    SIGCONT it`;

class Usage extends Error {}

function parseUp(args: readonly string[]): { dir: string; opts: UpOptions } {
  let dir: string | undefined;
  let nodes = 2;
  let net: NetMode = 'loopback';
  let mode: ReplicationMode = 'streaming';
  let sync = false;
  let proxy = false;
  let etcd = false;
  let automaticFailover = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    const value = (): string => {
      const v = args[++i];
      if (v === undefined) {
        throw new Usage(`${a} needs a value`);
      }
      return v;
    };
    const [flag, inline] =
      a.startsWith('--') && a.includes('=')
        ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
        : [a, undefined];
    const val = (): string => inline ?? value();
    switch (flag) {
      case '--nodes':
        nodes = Number(val());
        break;
      case '--net': {
        const v = val();
        if (v !== 'loopback' && v !== 'netns') {
          throw new Usage('--net must be loopback or netns');
        }
        net = v;
        break;
      }
      case '--mode': {
        const v = val();
        if (v !== 'streaming' && v !== 'londiste') {
          throw new Usage('--mode must be streaming or londiste');
        }
        mode = v;
        break;
      }
      case '--sync':
        sync = true;
        break;
      case '--proxy':
        proxy = true;
        break;
      case '--etcd':
        etcd = true;
        break;
      case '--automatic-failover':
        automaticFailover = true;
        break;
      default:
        if (a.startsWith('-') || dir !== undefined) {
          throw new Usage(`unexpected argument ${a}`);
        }
        dir = a;
    }
  }
  if (dir === undefined) {
    throw new Usage('up needs a DIR');
  }
  return { dir, opts: { nodes, net, mode, sync, proxy, etcd, automaticFailover } };
}

async function main(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'up': {
        const { dir, opts } = parseUp(rest);
        const started = Date.now();
        const info = await upSandbox(dir, opts);
        console.log(`sandbox up in ${info.dir} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
        for (const n of info.nodes) {
          console.log(
            `  ${n.name}: chef API ${n.chefApi}, postgres ${n.postgres.host}:${n.postgres.port}, embedded :${n.embeddedPostgres.port}, ssh :${n.sshPort}, config ${n.config}${n.netns === null ? '' : `, netns ${n.netns}`}`,
          );
        }
        if (info.proxy) {
          console.log(
            `  proxy: chef API ${info.proxy.chefApi}, postgres ${info.proxy.postgres}, read-only ${info.proxy.postgresReadOnly}, runtime API ${info.proxy.runtimeApi}${info.proxy.netns === null ? '' : `, netns ${info.proxy.netns}`} (servers DOWN until \`services DIR start\` runs health-server)`,
          );
        }
        if (info.etcd) {
          console.log(
            `  etcd: ${info.etcd.endpoint} (dcs.etcd.endpoints of every node${opts.automaticFailover === true ? ', failover.automatic on' : ''}), log ${info.etcd.log}`,
          );
        }
        console.log(`  details: ${info.dir}/sandbox.json`);
        return 0;
      }
      case 'down': {
        if (rest.length !== 1 || rest[0] === undefined) {
          throw new Usage('down needs exactly one DIR');
        }
        await downSandbox(rest[0]);
        console.log(`sandbox in ${rest[0]} is down`);
        return 0;
      }
      case 'services': {
        const [dir, action] = rest;
        if (dir === undefined || (action !== 'start' && action !== 'stop') || rest.length !== 2) {
          throw new Usage('services needs DIR and start|stop');
        }
        const info = await readSandbox(dir);
        const reports = action === 'start' ? await startServices(info) : await stopServices(info);
        for (const r of reports) {
          console.log(
            `${r.node} ${r.service}: ${r.state}${r.pid === undefined ? '' : ` (pid ${r.pid})`}${r.detail === undefined ? '' : `: ${r.detail}`}`,
          );
        }
        return 0;
      }
      case 'exec': {
        const sep = rest.indexOf('--');
        const [dir, name] = rest;
        const cmd = sep < 0 ? [] : rest.slice(sep + 1);
        if (dir === undefined || name === undefined || sep !== 2 || cmd.length === 0) {
          throw new Usage('exec needs DIR NODE -- CMD [ARG...]');
        }
        const node = nodeNamed(await readSandbox(dir), name);
        const [file, ...args] = inNetns(node.netns, cmd) as [string, ...string[]];
        return await new Promise<number>((resolvePromise) => {
          const child = spawn(file, args, { stdio: 'inherit' });
          child.on('error', (error) => {
            console.error(`sandbox: exec ${cmd.join(' ')}: ${error.message}`);
            resolvePromise(127);
          });
          child.on('exit', (code, signal) => {
            resolvePromise(code ?? (signal === null ? 1 : 128));
          });
        });
      }
      case 'partition':
      case 'heal':
      case 'freeze':
      case 'thaw': {
        const [dir, name, other] = rest;
        const withOther = cmd === 'partition' || cmd === 'heal';
        if (dir === undefined || name === undefined || rest.length > (withOther ? 3 : 2)) {
          throw new Usage(`${cmd} needs DIR NODE${withOther ? ' [OTHER]' : ''}`);
        }
        const info = await readSandbox(dir);
        if (other !== undefined && cmd === 'partition') {
          await cutLink(info, name, other);
          console.log(`${name} and ${other} no longer reach each other`);
        } else if (other !== undefined) {
          await healLink(info, name, other);
          console.log(`${name} and ${other} reach each other again`);
        } else if (cmd === 'partition') {
          await partitionNode(info, name);
          console.log(`${name} is cut off the bridge`);
        } else if (cmd === 'heal') {
          await healNode(info, name);
          console.log(`${name} is back on the bridge`);
        } else if (cmd === 'freeze') {
          console.log(`${name}: postmaster pid ${await freezePostgres(info, name)} stopped (SIGSTOP)`);
        } else {
          console.log(`${name}: postmaster pid ${await thawPostgres(info, name)} continued (SIGCONT)`);
        }
        return 0;
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        throw new Usage(`unknown command ${cmd}`);
    }
  } catch (error) {
    if (error instanceof Usage) {
      console.error(`sandbox: ${error.message}\n${USAGE}`);
      return 2;
    }
    if (error instanceof NotImplementedError) {
      console.error(`sandbox: not implemented yet: ${error.message}`);
      return 2;
    }
    if (error instanceof SandboxUpError || error instanceof SandboxStateError) {
      console.error(`sandbox: ${error.message}`);
      return 1;
    }
    console.error(`sandbox: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    if (cmd === 'up' && rest[0] !== undefined) {
      console.error(`sandbox: up failed; inspect ${rest[0]} and run \`scripts/sandbox down ${rest[0]}\``);
    }
    return 1;
  }
}

// a closed pipe (`scripts/sandbox up DIR | head`) must not turn a successful run into a crash
process.stdout.on('error', () => undefined);
process.exitCode = await main(process.argv.slice(2));
