import {chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';

/** A path as it was: a file's bytes, mode and owner, where a symlink pointed, or nothing there. */
export type PathSnapshot =
  | {path: string; kind: 'absent'}
  | {path: string; kind: 'symlink'; target: string}
  | {path: string; kind: 'file'; content: Buffer; mode: number; uid: number; gid: number};

export class SnapshotError extends Error {}

/** What is at `path` now, read whole: programs are binary, so nothing is decoded. */
export function takeSnapshot(path: string): PathSnapshot {
  let info;
  try {
    info = lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {path, kind: 'absent'};
    throw error;
  }
  if (info.isSymbolicLink()) return {path, kind: 'symlink', target: readlinkSync(path)};
  if (!info.isFile()) throw new SnapshotError(`${path} is neither a file nor a symlink: move it away, then try again`);
  return {path, kind: 'file', content: readFileSync(path), mode: info.mode & 0o7777, uid: info.uid, gid: info.gid};
}

/** Puts a path back as it was, byte for byte: written beside it, then renamed over it. */
export function restoreSnapshot(snapshot: PathSnapshot): void {
  if (snapshot.kind === 'absent') {
    rmSync(snapshot.path, {force: true});
    return;
  }
  const temporary = `${snapshot.path}.dffs-restore`;
  rmSync(temporary, {force: true});
  if (snapshot.kind === 'symlink') {
    symlinkSync(snapshot.target, temporary);
  } else {
    writeFileSync(temporary, snapshot.content, {mode: 0o600});
    chownSync(temporary, snapshot.uid, snapshot.gid);
    // After chown, which clears set-id bits.
    chmodSync(temporary, snapshot.mode);
  }
  renameSync(temporary, snapshot.path);
}

type StoredSnapshot = Exclude<PathSnapshot, {kind: 'file'}> | (Omit<Extract<PathSnapshot, {kind: 'file'}>, 'content'> & {file: string});

/**
 * Keeps snapshots in a directory only root can enter: the files' bytes one file each, and what
 * they were in `manifest.json` with `details`. Written to a new directory renamed into place, so a
 * backup is whole or absent.
 */
export function saveSnapshots<Details>(directory: string, snapshots: PathSnapshot[], details: Details): void {
  const temporary = `${directory}.dffs-new`;
  rmSync(temporary, {recursive: true, force: true});
  mkdirSync(temporary, {recursive: true, mode: 0o700});
  chmodSync(temporary, 0o700);
  const stored: StoredSnapshot[] = snapshots.map((snapshot, index) => {
    if (snapshot.kind !== 'file') return snapshot;
    const {content, ...rest} = snapshot;
    writeFileSync(join(temporary, String(index)), content, {mode: 0o600});
    return {...rest, file: String(index)};
  });
  writeFileSync(join(temporary, 'manifest.json'), `${JSON.stringify({details, snapshots: stored}, null, 2)}\n`, {mode: 0o600});
  rmSync(directory, {recursive: true, force: true});
  renameSync(temporary, directory);
}

export function loadSnapshots<Details>(directory: string): {details: Details; snapshots: PathSnapshot[]} {
  const manifest = JSON.parse(readFileSync(join(directory, 'manifest.json'), 'utf8')) as {details: Details; snapshots: StoredSnapshot[]};
  const snapshots = manifest.snapshots.map((stored): PathSnapshot => {
    if (stored.kind !== 'file') return stored;
    const {file, ...rest} = stored;
    return {...rest, content: readFileSync(join(directory, file))};
  });
  return {details: manifest.details, snapshots};
}
