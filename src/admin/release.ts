// A release: the program copied under /usr/local/lib/dataflux-func-sidecar/releases, with the
// Node.js that runs it, sealed root-owned before `current` points at it; and the wrappers that run it.
import {chmodSync, closeSync, cpSync, existsSync, lchownSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync} from 'node:fs';
import {dirname, join, relative} from 'node:path';
import {CURRENT_LINK, LIB_DIR, RELEASES_DIR} from './paths.js';
import {shellQuote, untrustedRuntimeReason} from './runtime.js';
import {INSTALL_MARK} from './unit.js';
import {InstallError} from './preconditions.js';


/** The dependencies to copy: production packages from the lock file; all of node_modules without one. */
export function productionPackages(root: string): Set<string> | undefined {
  const lockPath = join(root, 'package-lock.json');
  if (!existsSync(lockPath)) return undefined;
  const lock = JSON.parse(readFileSync(lockPath, 'utf8')) as {packages: Record<string, {dev?: boolean; optional?: boolean}>};
  return new Set(Object.entries(lock.packages).filter(([path, info]) => path.startsWith('node_modules/') && !info.dev).map(([path]) => path));
}

/** Where an offline bundle's application keeps its own Node.js runtime. */
export const BUNDLED_NODE = 'runtime/bin/node';

/**
 * Copies the program (bin, dist, manifest, a bundled runtime, production node_modules) into a new
 * release directory, which stays root's alone until sealRelease: no one can open a file in it
 * while its mode is still the source's. Symlinks are copied as what they lead to: a link out of
 * the release would let its owner change what root runs.
 */
export function copyRelease(sourceRoot: string, target: string): void {
  const packages = productionPackages(sourceRoot);
  const wanted = (path: string): boolean => {
    const rel = relative(sourceRoot, path);
    if (rel === '' || rel === 'package.json' || rel === 'oclif.manifest.json') return true;
    if (/^(bin|dist|runtime)(\/|$)/.test(rel)) return true;
    if (!/^node_modules(\/|$)/.test(rel) || /(^|\/)\.bin(\/|$)/.test(rel)) return false;
    if (!packages || rel === 'node_modules') return true;
    for (const pkg of packages) {
      if (rel === pkg || rel.startsWith(`${pkg}/`) || pkg.startsWith(`${rel}/`)) return true;
    }
    return false;
  };
  for (const directory of [LIB_DIR, RELEASES_DIR]) {
    mkdirSync(directory, {recursive: true});
    chmodSync(directory, 0o755);
  }
  mkdirSync(target, {mode: 0o700});
  chmodSync(target, 0o700);
  cpSync(sourceRoot, target, {recursive: true, filter: wanted, dereference: true});
  for (const required of ['package.json', 'bin/run.js', 'dist/commands/serve.js']) {
    if (!existsSync(join(target, required))) throw new InstallError(`${sourceRoot} has no ${required}: run npm ci (it builds dist/) first`);
  }
}

/**
 * Makes every file of a release root's, 0644 or 0755 (0755 when it was executable at all), with
 * no set-id bit, whatever the source's modes and root's umask were; then opens the release to all.
 */
export function sealRelease(release: string): void {
  const seal = (path: string) => {
    const info = lstatSync(path);
    if (info.isDirectory()) for (const name of readdirSync(path)) seal(join(path, name));
    lchownSync(path, 0, 0);
    if (!info.isSymbolicLink()) chmodSync(path, info.isDirectory() || (info.mode & 0o111) !== 0 ? 0o755 : 0o644);
  };
  for (const name of readdirSync(release)) seal(join(release, name));
  lchownSync(release, 0, 0);
  chmodSync(release, 0o755);
}

/**
 * Copies a file into a release that is still root's alone. The source is read from an open
 * descriptor: a Node.js being run is read through /proc/self/exe, the very file running, which a
 * rename over its path does not change.
 */
export function copyInto(source: string, target: string): void {
  mkdirSync(dirname(target), {recursive: true});
  const from = openSync(source, 'r');
  const to = openSync(target, 'wx', 0o700);
  const chunk = Buffer.allocUnsafe(1 << 20);
  try {
    for (let read = readSync(from, chunk); read > 0; read = readSync(from, chunk)) writeSync(to, chunk, 0, read);
  } finally {
    closeSync(from);
    closeSync(to);
  }
}

/** Compares two files a megabyte at a time: a runtime is 120 MB, too much to hold twice on a small host. */
export function sameContent(a: string, b: string): boolean {
  if (statSync(a).size !== statSync(b).size) return false;
  const [fileA, fileB] = [openSync(a, 'r'), openSync(b, 'r')];
  const [chunkA, chunkB] = [Buffer.alloc(1 << 20), Buffer.alloc(1 << 20)];
  try {
    for (;;) {
      const read = readSync(fileA, chunkA);
      if (readSync(fileB, chunkB) !== read || !chunkA.subarray(0, read).equals(chunkB.subarray(0, read))) return false;
      if (read === 0) return true;
    }
  } finally {
    closeSync(fileA);
    closeSync(fileB);
  }
}

/** An upgrade with the same bundled Node.js links the previous release's copy: 120 MB less on disk. */
export function shareUnchangedRuntime(release: string, previousRelease: string | undefined): void {
  const runtime = join(release, BUNDLED_NODE);
  const previous = previousRelease && join(previousRelease, BUNDLED_NODE);
  if (!previous || !existsSync(runtime) || !existsSync(previous) || !sameContent(runtime, previous)) return;
  rmSync(runtime);
  linkSync(previous, runtime);
}

/** Replaces a file by writing a temporary one beside it and renaming it over. */
export function writeAtomic(path: string, content: string, mode: number): void {
  const temporary = `${path}.dffs-new`;
  writeFileSync(temporary, content, {mode});
  chmodSync(temporary, mode);
  renameSync(temporary, path);
}

export function pointCurrentAt(release: string): void {
  const temporary = `${CURRENT_LINK}.dffs-new`;
  rmSync(temporary, {force: true});
  symlinkSync(release, temporary);
  renameSync(temporary, CURRENT_LINK);
}

export function currentRelease(): string | undefined {
  try {
    return readlinkSync(CURRENT_LINK);
  } catch {
    return undefined;
  }
}

/**
 * Node.js flags of the installed program. A young generation of 2 MB semi-spaces keeps the daemon
 * at about 103 MiB under a burst of 32 concurrent commands on Node 24 (192 MiB with V8's default),
 * at the same rate (docs/performance.md).
 */
export const NODE_FLAGS = ['--max-semi-space-size=2'];

export function wrapperScript(nodePath: string): string {
  return `#!/bin/sh\n${INSTALL_MARK}: the sidecar with the Node.js it was installed with.\nexec ${shellQuote(nodePath)} ${NODE_FLAGS.join(' ')} ${shellQuote(`${CURRENT_LINK}/bin/run.js`)} "$@"\n`;
}

/** The Node.js the installed program runs on: the one given if only root can change it, else a copy in the release. */
export function serviceRuntime(release: string, nodePath: string, log: (line: string) => void): string {
  if (existsSync(join(release, BUNDLED_NODE))) return join(CURRENT_LINK, BUNDLED_NODE);
  const running = nodePath === process.execPath;
  // Linux names the file running as "PATH (deleted)" once another file has been renamed over PATH.
  const reason = running && !existsSync(nodePath) ? `${nodePath} was replaced while install ran` : untrustedRuntimeReason(nodePath);
  if (reason === undefined) return realpathSync(nodePath);
  copyInto(running ? '/proc/self/exe' : nodePath, join(release, BUNDLED_NODE));
  log(`Copied ${nodePath} into the release, as root runs it and ${reason}. (This install itself ran it as root: install Node.js system-wide, or use the offline bundle, to run nothing a user can change.)`);
  return join(CURRENT_LINK, BUNDLED_NODE);
}
