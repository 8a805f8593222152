/**
 * An in-memory Files port: a tree of files and directories with modes and owners, a record of every
 * call, and the strictness of the real filesystem where it matters (writing needs the parent folder).
 */
import * as path from 'node:path';
import type { FileInfo, Files, TreeEntry } from '../../src/ports/index.js';

interface Node {
  readonly kind: 'file' | 'dir';
  data: Buffer;
  mode: number;
  uid: number;
  gid: number;
}

export interface FilesCall {
  readonly method: keyof Files;
  readonly path: string;
  readonly mode?: number;
}

/** Methods of Files that change the filesystem. */
export const MUTATING_FILE_METHODS: ReadonlySet<keyof Files> = new Set<keyof Files>([
  'writeAtomic',
  'mkdirp',
  'removeTree',
  'emptyDir',
  'rename',
  'chmod',
  'chown',
  'createExclusive',
  'remove',
]);

function enoent(file: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`ENOENT: no such file or directory, '${file}'`);
  error.code = 'ENOENT';
  return error;
}

export class MemoryFiles implements Files {
  readonly calls: FilesCall[] = [];
  readonly nodes = new Map<string, Node>([
    ['/', { kind: 'dir', data: Buffer.alloc(0), mode: 0o755, uid: 0, gid: 0 }],
  ]);
  readonly executables = new Set<string>();
  readonly users = new Map<string, { uid: number; gid: number }>([
    ['root', { uid: 0, gid: 0 }],
    ['postgres', { uid: 105, gid: 110 }],
    ['opscode-pgsql', { uid: 497, gid: 497 }],
  ]);
  free = 100 * 1024 ** 3;
  /** The device a path lives on (rename across devices is what `backup` steps avoid). */
  deviceOf: (file: string) => number = () => 1;

  private record(method: keyof Files, file: string, mode?: number): void {
    this.calls.push(mode === undefined ? { method, path: file } : { method, path: file, mode });
  }

  /** Calls that changed something. */
  mutations(): FilesCall[] {
    return this.calls.filter((c) => MUTATING_FILE_METHODS.has(c.method));
  }

  /** Creates a file (and its folders) without recording a call: the state before the test. */
  seed(file: string, data: string | Buffer, mode = 0o644): this {
    this.ensureDir(path.dirname(file), 0o755);
    this.nodes.set(file, { kind: 'file', data: Buffer.from(data), mode, uid: 0, gid: 0 });
    return this;
  }

  /** Creates a folder (and its parents) without recording a call. */
  seedDir(dir: string, mode = 0o755): this {
    this.ensureDir(dir, mode);
    return this;
  }

  /** The text of a file, or undefined. */
  text(file: string): string | undefined {
    const node = this.nodes.get(file);
    return node?.kind === 'file' ? node.data.toString('utf8') : undefined;
  }

  modeOf(file: string): number | undefined {
    return this.nodes.get(file)?.mode;
  }

  private ensureDir(dir: string, mode: number, owner?: { uid: number; gid: number }): void {
    const parts = path.resolve(dir).split('/').filter(Boolean);
    let current = '';
    for (const part of parts) {
      current = `${current}/${part}`;
      const node = this.nodes.get(current);
      if (node?.kind === 'file') {
        throw new Error(`ENOTDIR: not a directory, '${current}'`);
      }
      if (!node) {
        this.nodes.set(current, {
          kind: 'dir',
          data: Buffer.alloc(0),
          mode,
          uid: owner?.uid ?? 0,
          gid: owner?.gid ?? 0,
        });
      }
    }
    const last = this.nodes.get(path.resolve(dir));
    if (last) {
      last.mode = mode;
      if (owner) {
        last.uid = owner.uid;
        last.gid = owner.gid;
      }
    }
  }

  private below(dir: string): string[] {
    const prefix = dir === '/' ? '/' : `${dir}/`;
    return [...this.nodes.keys()].filter((p) => p.startsWith(prefix) && p !== dir).sort();
  }

  private infoOf(file: string, node: Node): FileInfo {
    return {
      mode: node.mode,
      uid: node.uid,
      gid: node.gid,
      size: node.data.length,
      isDirectory: node.kind === 'dir',
      isFile: node.kind === 'file',
      isSymlink: false,
      mtimeMs: 0,
      dev: this.deviceOf(file),
    };
  }

  readText(file: string): Promise<string> {
    this.record('readText', file);
    const node = this.nodes.get(file);
    return node?.kind === 'file' ? Promise.resolve(node.data.toString('utf8')) : Promise.reject(enoent(file));
  }

  readBytes(file: string): Promise<Buffer> {
    this.record('readBytes', file);
    const node = this.nodes.get(file);
    return node?.kind === 'file' ? Promise.resolve(Buffer.from(node.data)) : Promise.reject(enoent(file));
  }

  readTextIfExists(file: string): Promise<string | undefined> {
    this.record('readTextIfExists', file);
    const node = this.nodes.get(file);
    return Promise.resolve(node?.kind === 'file' ? node.data.toString('utf8') : undefined);
  }

  writeAtomic(
    file: string,
    data: string | Buffer,
    mode: number,
    owner?: { uid: number; gid: number },
  ): Promise<void> {
    this.record('writeAtomic', file, mode);
    if (this.nodes.get(path.dirname(file))?.kind !== 'dir') {
      return Promise.reject(enoent(path.dirname(file)));
    }
    this.nodes.set(file, {
      kind: 'file',
      data: Buffer.from(data),
      mode,
      uid: owner?.uid ?? 0,
      gid: owner?.gid ?? 0,
    });
    return Promise.resolve();
  }

  exists(file: string): Promise<boolean> {
    this.record('exists', file);
    return Promise.resolve(this.nodes.has(file));
  }

  stat(file: string): Promise<FileInfo | undefined> {
    this.record('stat', file);
    const node = this.nodes.get(file);
    return Promise.resolve(node ? this.infoOf(file, node) : undefined);
  }

  mkdirp(dir: string, mode: number, owner?: { uid: number; gid: number }): Promise<void> {
    this.record('mkdirp', dir, mode);
    this.ensureDir(dir, mode, owner);
    return Promise.resolve();
  }

  listDir(dir: string): Promise<string[]> {
    this.record('listDir', dir);
    if (this.nodes.get(dir)?.kind !== 'dir') {
      return Promise.reject(enoent(dir));
    }
    return Promise.resolve(
      this.below(dir)
        .filter((p) => path.dirname(p) === dir)
        .map((p) => path.basename(p)),
    );
  }

  isEmptyDir(dir: string): Promise<boolean> {
    this.record('isEmptyDir', dir);
    return Promise.resolve(this.below(dir).length === 0);
  }

  walk(dir: string): Promise<TreeEntry[]> {
    this.record('walk', dir);
    const entries = this.below(dir).map((p) => ({
      path: p.slice(dir.length + 1),
      info: this.infoOf(p, this.nodes.get(p)!),
    }));
    return Promise.resolve(entries);
  }

  removeTree(target: string): Promise<void> {
    this.record('removeTree', target);
    for (const p of this.below(target)) {
      this.nodes.delete(p);
    }
    this.nodes.delete(target);
    return Promise.resolve();
  }

  emptyDir(dir: string): Promise<void> {
    this.record('emptyDir', dir);
    for (const p of this.below(dir)) {
      this.nodes.delete(p);
    }
    return Promise.resolve();
  }

  rename(from: string, to: string): Promise<void> {
    this.record('rename', from);
    const node = this.nodes.get(from);
    if (!node) {
      return Promise.reject(enoent(from));
    }
    for (const p of [from, ...this.below(from)]) {
      const moved = this.nodes.get(p)!;
      this.nodes.delete(p);
      this.nodes.set(to + p.slice(from.length), moved);
    }
    return Promise.resolve();
  }

  chmod(file: string, mode: number): Promise<void> {
    this.record('chmod', file, mode);
    const node = this.nodes.get(file);
    if (!node) {
      return Promise.reject(enoent(file));
    }
    node.mode = mode;
    return Promise.resolve();
  }

  chown(file: string, uid: number, gid: number): Promise<void> {
    this.record('chown', file);
    const node = this.nodes.get(file);
    if (!node) {
      return Promise.reject(enoent(file));
    }
    node.uid = uid;
    node.gid = gid;
    return Promise.resolve();
  }

  freeBytes(target: string): Promise<number> {
    this.record('freeBytes', target);
    return Promise.resolve(this.free);
  }

  createExclusive(file: string, data: string, mode: number): Promise<boolean> {
    this.record('createExclusive', file, mode);
    if (this.nodes.has(file)) {
      return Promise.resolve(false);
    }
    if (this.nodes.get(path.dirname(file))?.kind !== 'dir') {
      return Promise.reject(enoent(path.dirname(file)));
    }
    this.nodes.set(file, { kind: 'file', data: Buffer.from(data), mode, uid: 0, gid: 0 });
    return Promise.resolve(true);
  }

  remove(file: string): Promise<void> {
    this.record('remove', file);
    this.nodes.delete(file);
    return Promise.resolve();
  }

  canExecute(file: string): Promise<boolean> {
    this.record('canExecute', file);
    return Promise.resolve(this.executables.has(file));
  }

  lookupUser(name: string): Promise<{ uid: number; gid: number } | undefined> {
    this.record('lookupUser', name);
    return Promise.resolve(this.users.get(name));
  }
}
