import {realpathSync, statSync} from 'node:fs';
import {dirname} from 'node:path';

/**
 * Why root should not run the file at `path` in place: a directory on its way, or the file, that
 * someone other than root owns or may write. Symlinks are resolved first: it is the file they
 * lead to that runs. Undefined when only root can change it.
 */
export function untrustedRuntimeReason(path: string): string | undefined {
  let current = realpathSync(path);
  for (;;) {
    const info = statSync(current);
    if (info.uid !== 0) return `${current} belongs to uid ${info.uid}`;
    if ((info.mode & 0o022) !== 0) return `${current} may be written by ${(info.mode & 0o002) !== 0 ? 'anyone' : 'its group'} (mode ${(info.mode & 0o7777).toString(8)})`;
    if (current === '/') return undefined;
    current = dirname(current);
  }
}

/** A word for /bin/sh: single-quoted, with each quote in it closed, escaped and reopened. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}
