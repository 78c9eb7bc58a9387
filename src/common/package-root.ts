import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {fs} from './node-builtins.js';

const {existsSync} = fs;

function findPackageRoot(start: string): string {
  for (let directory = start; ; directory = dirname(directory)) {
    if (existsSync(join(directory, 'package.json'))) return directory;
    if (dirname(directory) === directory) throw new Error(`no package.json in ${start} or above it`);
  }
}

/**
 * The directory of this program's package.json: what install copies. Found by walking up, because
 * compiled files (dist/) and the offline bundle's chunks (dist/chunks/) sit at different depths.
 */
export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
