/**
 * Filesystem access through node:fs: atomic writes with explicit modes and owners, trees, free space.
 */
import * as fs from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

export interface FileInfo {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly isDirectory: boolean;
  readonly isFile: boolean;
  readonly isSymlink: boolean;
  readonly dev: number;
  readonly mtimeMs: number;
}

export interface TreeEntry {
  /** Path relative to the tree's root, with "/" separators. */
  readonly path: string;
  readonly info: FileInfo;
}

export interface Files {
  /** @throws when the file cannot be read. */
  readText(file: string): Promise<string>;
  readBytes(file: string): Promise<Buffer>;
  /** Returns undefined when the file does not exist. */
  readTextIfExists(file: string): Promise<string | undefined>;
  /** Writes through a temp file, fsync and rename, with this mode (and owner when given). */
  writeAtomic(
    file: string,
    data: string | Buffer,
    mode: number,
    owner?: { uid: number; gid: number },
  ): Promise<void>;
  exists(file: string): Promise<boolean>;
  /** lstat; undefined when missing. */
  stat(file: string): Promise<FileInfo | undefined>;
  /** Creates a missing directory (and parents) with this mode and owner; an existing one is left as it is. */
  mkdirp(dir: string, mode: number, owner?: { uid: number; gid: number }): Promise<void>;
  listDir(dir: string): Promise<string[]>;
  isEmptyDir(dir: string): Promise<boolean>;
  /** Every entry below dir (depth first), directories included. */
  walk(dir: string): Promise<TreeEntry[]>;
  removeTree(target: string): Promise<void>;
  /** Empties a directory but keeps it (and its mode and owner). */
  emptyDir(dir: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  chmod(file: string, mode: number): Promise<void>;
  chown(file: string, uid: number, gid: number): Promise<void>;
  /** Bytes available to unprivileged users on the filesystem holding this path. */
  freeBytes(target: string): Promise<number>;
  /** Creates a file exclusively; false if it already exists. */
  createExclusive(file: string, data: string, mode: number): Promise<boolean>;
  remove(file: string): Promise<void>;
  canExecute(file: string): Promise<boolean>;
  /** uid and gid of an OS user, from /etc/passwd; undefined when unknown. */
  lookupUser(name: string): Promise<{ uid: number; gid: number } | undefined>;
}

function info(st: import('node:fs').Stats): FileInfo {
  return {
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    isDirectory: st.isDirectory(),
    isFile: st.isFile(),
    isSymlink: st.isSymbolicLink(),
    dev: st.dev,
    mtimeMs: st.mtimeMs,
  };
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** The real files port. */
export function createFiles(): Files {
  const self: Files = {
    readText: (file) => fs.readFile(file, 'utf8'),
    readBytes: (file) => fs.readFile(file),
    async readTextIfExists(file) {
      try {
        return await fs.readFile(file, 'utf8');
      } catch (error) {
        if (isNotFound(error)) {
          return undefined;
        }
        throw error;
      }
    },
    async writeAtomic(file, data, mode, owner) {
      const tmp = path.join(
        path.dirname(file),
        `.${path.basename(file)}.chef-ha-${randomBytes(4).toString('hex')}`,
      );
      const handle = await fs.open(tmp, 'wx', mode);
      try {
        await handle.writeFile(data);
        await handle.chmod(mode);
        if (owner) {
          await handle.chown(owner.uid, owner.gid);
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      try {
        await fs.rename(tmp, file);
      } catch (error) {
        await fs.rm(tmp, { force: true });
        throw error;
      }
    },
    async exists(file) {
      try {
        await fs.lstat(file);
        return true;
      } catch (error) {
        if (isNotFound(error)) {
          return false;
        }
        throw error;
      }
    },
    async stat(file) {
      try {
        return info(await fs.lstat(file));
      } catch (error) {
        if (isNotFound(error)) {
          return undefined;
        }
        throw error;
      }
    },
    async mkdirp(dir, mode, owner) {
      // An existing directory keeps its mode and owner (a data directory must stay 0700).
      if (await self.exists(dir)) {
        return;
      }
      await fs.mkdir(dir, { recursive: true, mode });
      await fs.chmod(dir, mode);
      if (owner) {
        await fs.chown(dir, owner.uid, owner.gid);
      }
    },
    listDir: (dir) => fs.readdir(dir),
    async isEmptyDir(dir) {
      try {
        return (await fs.readdir(dir)).length === 0;
      } catch (error) {
        if (isNotFound(error)) {
          return true;
        }
        throw error;
      }
    },
    async walk(dir) {
      const out: TreeEntry[] = [];
      const visit = async (rel: string): Promise<void> => {
        const names = (await fs.readdir(path.join(dir, rel))).sort();
        for (const name of names) {
          const relPath = rel === '' ? name : `${rel}/${name}`;
          const st = info(await fs.lstat(path.join(dir, relPath)));
          out.push({ path: relPath, info: st });
          if (st.isDirectory) {
            await visit(relPath);
          }
        }
      };
      await visit('');
      return out;
    },
    removeTree: (target) => fs.rm(target, { recursive: true, force: true }),
    async emptyDir(dir) {
      for (const name of await fs.readdir(dir)) {
        await fs.rm(path.join(dir, name), { recursive: true, force: true });
      }
    },
    rename: (from, to) => fs.rename(from, to),
    chmod: (file, mode) => fs.chmod(file, mode),
    chown: (file, uid, gid) => fs.chown(file, uid, gid),
    async freeBytes(target) {
      let probe = target;
      for (;;) {
        try {
          const st = await fs.statfs(probe);
          return st.bavail * st.bsize;
        } catch (error) {
          const parent = path.dirname(probe);
          if (!isNotFound(error) || parent === probe) {
            throw error;
          }
          probe = parent;
        }
      }
    },
    async createExclusive(file, data, mode) {
      try {
        await fs.writeFile(file, data, { flag: 'wx', mode });
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
          return false;
        }
        throw error;
      }
    },
    remove: (file) => fs.rm(file, { force: true }),
    async canExecute(file) {
      try {
        await fs.access(file, fsConstants.X_OK);
        return true;
      } catch {
        return false;
      }
    },
    async lookupUser(name) {
      const passwd = await self.readTextIfExists('/etc/passwd');
      for (const line of (passwd ?? '').split('\n')) {
        const parts = line.split(':');
        if (parts[0] === name && parts[2] !== undefined && parts[3] !== undefined) {
          return { uid: Number(parts[2]), gid: Number(parts[3]) };
        }
      }
      return undefined;
    },
  };
  return self;
}
