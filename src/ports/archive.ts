/** tar.gz archives (join bundle, backups of /etc/chef-server) through node-tar. */
import { chmod } from 'node:fs/promises';

export interface Archive {
  /** Creates a gzip tar of `entries` (relative to cwd), mode applied to the archive file. */
  create(file: string, cwd: string, entries: readonly string[], mode: number, mtime?: Date): Promise<void>;
  /**
   * Extracts into dest (which must exist), keeping modes.
   * @throws when the archive is corrupt.
   */
  extract(file: string, dest: string): Promise<void>;
}

/** The real archive port. */
export function createArchive(): Archive {
  return {
    async create(file, cwd, entries, mode, mtime) {
      const tar = await import('tar');
      await tar.c(
        { gzip: true, file, cwd, portable: false, noDirRecurse: false, ...(mtime ? { mtime } : {}) },
        [...entries],
      );
      await chmod(file, mode);
    },
    async extract(file, dest) {
      const tar = await import('tar');
      await tar.x({ file, cwd: dest, strict: true, preserveOwner: false, noMtime: false });
    },
  };
}
