/**
 * The omnibus-style packages (scripts/build-package): built twice from HEAD and compared; the .tar.gz
 * installed into a temporary root and run with no Node.js on PATH; the .deb installed on this machine,
 * used for the two-node sandbox scenario with the installed chef-ha-ctl, then removed and purged.
 * Needs root (dpkg -i), as CI has.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { downSandbox, upSandbox } from '../sandbox/index.js';
import {
  REPO,
  getClient,
  makeTempDir,
  postmasterPid,
  registerClient,
  waitFor,
  type SandboxInfo,
  type SandboxNode,
} from '../e2e/helpers.js';

const execFileP = promisify(execFile);
const VERSION = (JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string })
  .version;
const DEB = `chef-ha_${VERSION}_amd64.deb`;
const TGZ = `chef-ha-${VERSION}-linux-x64.tar.gz`;

async function run(
  file: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? { ...process.env, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 900_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? -1, stdout, stderr });
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      resolvePromise({ code: -1, stdout, stderr: `${stderr}${String(error)}` });
    });
  });
}

async function build(out: string): Promise<void> {
  const r = await run(process.execPath, [
    '--import',
    'tsx',
    join(REPO, 'scripts', 'build-package.ts'),
    '--out',
    out,
  ]);
  assert.equal(r.code, 0, `build-package failed:\n${r.stderr}`);
}

const sha256 = async (file: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(file))
    .digest('hex');

async function dpkgInstalled(): Promise<boolean> {
  const r = await run('dpkg-query', ['-W', '-f=${Status}', 'chef-ha']);
  return r.code === 0 && r.stdout.includes('install ok installed');
}

let work = '';
let first = '';

before(async () => {
  assert.equal(process.getuid?.(), 0, 'the package tests install a .deb: run them as root (CI does)');
  work = await makeTempDir('chef-ha-package-');
  first = join(work, 'first');
  await build(first);
});

after(async () => {
  if (await dpkgInstalled()) {
    await run('dpkg', ['--purge', 'chef-ha']);
  }
  await rm(work, { recursive: true, force: true });
});

describe('scripts/build-package', () => {
  test('builds the .deb and the .tar.gz within the size target, and a second build of the commit is identical', async () => {
    const second = join(work, 'second');
    await build(second);
    for (const name of [DEB, TGZ]) {
      const [a, b] = [join(first, name), join(second, name)];
      assert.ok(existsSync(a), `${name} was built`);
      const size = (await readFile(a)).length;
      assert.ok(size < 60 * 1024 * 1024, `${name} is ${(size / 1024 / 1024).toFixed(1)} MB (target ≤ 60 MB)`);
      if ((await sha256(a)) !== (await sha256(b))) {
        const list = async (f: string): Promise<string> =>
          (
            await execFileP('sh', ['-c', name.endsWith('.deb') ? 'dpkg-deb -c "$0"' : 'tar tvzf "$0"', f], {
              maxBuffer: 64 * 1024 * 1024,
            })
          ).stdout;
        const [la, lb] = [await list(a), await list(b)];
        const differing = la.split('\n').filter((line) => !lb.includes(line));
        assert.fail(
          `${name} differs between two builds of one commit; entries only in the first:\n${differing.slice(0, 20).join('\n')}`,
        );
      }
    }
  });
});

describe('the .tar.gz', () => {
  test('installs into a root with install.sh and runs --version with no Node.js on PATH', async () => {
    const unpacked = join(work, 'unpacked');
    const root = join(work, 'root');
    await mkdir(unpacked);
    await execFileP('tar', ['-xzf', join(first, TGZ), '-C', unpacked]);
    const top = join(unpacked, `chef-ha-${VERSION}`);
    const install = await run(join(top, 'install.sh'), ['--root', root]);
    assert.equal(install.code, 0, install.stderr);
    const opt = join(root, 'opt', 'chef-ha');
    for (const p of [
      'bin/chef-ha-ctl',
      'embedded/bin/node',
      'embedded/lib/chef-ha/dist/cli.js',
      'embedded/lib/chef-ha/templates',
      'embedded/lib/chef-ha/recipes-overrides/postgresql.rb',
      'service/systemd/chef-ha-health-server.service',
      'service/systemd/chef-ha-monitor.service',
      'service/runit/chef-ha-health-server/run',
      'service/runit/chef-ha-monitor/log/run',
      'service/systemd/chef-ha-londiste-daemons.service',
      'service/runit/chef-ha-londiste-daemons/run',
    ]) {
      assert.ok(existsSync(join(opt, p)), `${p} is in the package`);
    }
    const modules = await readdir(join(opt, 'embedded/lib/chef-ha/node_modules'));
    for (const dev of ['typescript', 'eslint', 'tsx', 'prettier']) {
      assert.ok(!modules.includes(dev), `${dev} (a devDependency) is not shipped`);
    }
    assert.ok(modules.includes('commander') && modules.includes('pg'), 'production dependencies are shipped');
    // An empty PATH: the system node (and everything else) is out of reach.
    const emptyPath = join(work, 'empty-bin');
    await mkdir(emptyPath);
    const noNode = { PATH: emptyPath, NO_COLOR: '1' };
    assert.notEqual(
      (await run('/bin/sh', ['-c', 'command -v node'], { env: noNode })).code,
      0,
      'node is hidden',
    );
    for (const cmd of [join(opt, 'bin', 'chef-ha-ctl'), join(root, 'usr', 'local', 'bin', 'chef-ha-ctl')]) {
      const v = await run(cmd, ['--version'], { env: noNode });
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stdout.trim(), VERSION);
    }
    const uninstall = await run(join(top, 'uninstall.sh'), ['--root', root]);
    assert.equal(uninstall.code, 0, uninstall.stderr);
    assert.ok(!existsSync(opt), 'uninstall.sh removed /opt/chef-ha');
  });
});

describe('the .deb', () => {
  let sb: SandboxInfo | undefined;
  let sandboxDir = '';
  after(async () => {
    if (sandboxDir) {
      await downSandbox(sandboxDir);
      await rm(sandboxDir, { recursive: true, force: true });
    }
  });

  test('installs, runs the two-node scenario with the installed chef-ha-ctl, and removes cleanly', async () => {
    assert.ok(
      !(await dpkgInstalled()),
      'a chef-ha package is already installed on this machine: the test would replace and purge it; remove it first',
    );
    for (const p of ['/etc/chef-ha', '/var/opt/chef-ha', '/opt/chef-ha']) {
      assert.ok(!existsSync(p), `${p} exists on this machine: the test would purge it; move it away first`);
    }
    const install = await run('dpkg', ['-i', join(first, DEB)]);
    assert.equal(install.code, 0, install.stderr);
    const ctl = '/usr/bin/chef-ha-ctl';
    const version = await run(ctl, ['--version']);
    assert.equal(version.stdout.trim(), VERSION, version.stderr);
    const ps = (await execFileP('ps', ['-eo', 'args'])).stdout;
    assert.ok(!/chef-ha-ctl (health-server|monitor)/.test(ps), 'installing started no service');
    assert.ok(existsSync('/lib/systemd/system/chef-ha-monitor.service'), 'the systemd units are installed');

    sandboxDir = await makeTempDir('chef-ha-package-sb-');
    sb = await upSandbox(sandboxDir, { nodes: 2 });
    const [a, b] = sb.nodes as [SandboxNode, SandboxNode];
    // The peer's host-level actions (fence over ssh) run the installed command too.
    for (const [node, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      const cfg = JSON.parse(await readFile(node.config, 'utf8')) as { peer: { ssh?: { ctl: string[] } } };
      if (cfg.peer.ssh) {
        cfg.peer.ssh.ctl = [ctl, '--config', peer.config];
      }
      await writeFile(node.config, `${JSON.stringify(cfg, null, 2)}\n`);
    }
    const cli = (node: SandboxNode, args: readonly string[]) =>
      run(ctl, ['--config', node.config, '--yes', ...args]);

    const check = await cli(a, ['check']);
    assert.equal(check.code, 0, `check before setup: ${check.stdout}${check.stderr}`);
    const master = await cli(a, ['setup-master']);
    assert.equal(master.code, 0, master.stderr);
    const bundle = join(a.root, 'var/opt/chef-ha/join-bundle.tar.gz');
    const slave = await cli(b, ['setup-slave', '--bundle', bundle, '--wait-reindex']);
    assert.equal(slave.code, 0, slave.stderr);
    assert.equal((await registerClient(a, 'pkg-web-01')).status, 201);
    await waitFor(
      'the client on the slave',
      async () => (await getClient(b, 'pkg-web-01')).status === 200,
      10_000,
    );

    const pid = await postmasterPid(a.postgres.dataDir);
    assert.ok(pid, "chef-a's postmaster pid");
    process.kill(pid, 'SIGKILL');
    await waitFor(
      'the master to die',
      async () => (await postmasterPid(a.postgres.dataDir)) === undefined,
      30_000,
    );
    const failover = await cli(b, ['failover']);
    assert.equal(failover.code, 0, failover.stderr);
    assert.equal((await getClient(b, 'pkg-web-01')).status, 200, 'the old registration survived');
    assert.equal((await registerClient(b, 'pkg-web-02')).status, 201, 'the new master takes registrations');
    const status = await cli(b, ['status', '--json']);
    assert.match(status.stdout, /"role": ?"primary"/);
    await downSandbox(sandboxDir);
    await rm(sandboxDir, { recursive: true, force: true });
    sandboxDir = '';

    await mkdir('/etc/chef-ha');
    await writeFile('/etc/chef-ha/chef-ha.json', '{}\n');
    const remove = await run('dpkg', ['--remove', 'chef-ha']);
    assert.equal(remove.code, 0, remove.stderr);
    assert.ok(
      !existsSync('/opt/chef-ha/bin/chef-ha-ctl') && !existsSync(ctl),
      'remove takes the program away',
    );
    assert.ok(existsSync('/etc/chef-ha/chef-ha.json'), 'remove keeps the configuration');
    const purge = await run('dpkg', ['--purge', 'chef-ha']);
    assert.equal(purge.code, 0, purge.stderr);
    assert.ok(!existsSync('/etc/chef-ha'), 'purge removes the configuration');
    assert.ok(!(await dpkgInstalled()));
  });
});
