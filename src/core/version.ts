/** chef-ha's own version and the folder of its package.json (templates, recipe overrides and dist/ live there). */
import { createRequire } from 'node:module';
import * as path from 'node:path';

const require = createRequire(import.meta.url);

interface Found {
  readonly root: string;
  readonly version: string;
}

/**
 * This module runs from src/core (tests, tsx) or from a bundle file in dist/ or dist/chunks (the build,
 * the package): chef-ha's package.json is one or two folders up.
 */
function findPackage(): Found {
  for (const candidate of ['../package.json', '../../package.json']) {
    let file: string;
    try {
      file = require.resolve(candidate);
    } catch {
      continue;
    }
    const pkg = require(file) as { name?: string; version?: string };
    if (pkg.name === 'chef-ha' && typeof pkg.version === 'string') {
      return { root: path.dirname(file), version: pkg.version };
    }
  }
  throw new Error(`internal: chef-ha's package.json is not above ${import.meta.url}`);
}

const found = findPackage();

export const VERSION: string = found.version;

/** The package root: the folder of chef-ha's package.json. */
export const PACKAGE_ROOT: string = found.root;
