import {join} from 'node:path';
import {fs} from '../node-builtins.js';

/** How often the cgroups of finished commands whose background processes still ran are tried again. */
const SWEEP_MS = 10_000;
const JOB_PREFIX = 'job-';

/** The daemon's own cgroup in the cgroup v2 tree, from /proc/self/cgroup and the cgroup2 mount. */
function ownCgroupDirectory(): string | undefined {
  const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((entry) => entry.startsWith('0::'));
  if (!line) return undefined;
  // A hybrid host mounts cgroup v2 at /sys/fs/cgroup/unified, a unified one at /sys/fs/cgroup.
  const mount = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((entry) => entry.split(' '))
    .find((fields) => fields[fields.indexOf('-') + 1] === 'cgroup2')?.[4];
  return mount ? join(mount, line.slice(3)) : undefined;
}

/**
 * A cgroup for each command, below the service's own, which systemd delegates to it (Delegate=yes
 * in the unit, which also sets DFFS_DELEGATED_CGROUP=1). A command's cgroup holds everything it
 * starts, also what leaves its process group or session (`setsid`, daemons), so that a timeout
 * ends the whole tree with cgroup.kill. A command that ends by itself may leave background
 * processes running, as under the original Sidecar: its cgroup is removed once they are gone.
 */
export class CommandCgroups {
  readonly #leftovers = new Set<string>();
  #sweeper: NodeJS.Timeout | undefined;

  private constructor(readonly home: string) {}

  /** The service's delegated cgroup, if this daemon has one it can use (cgroup v2 with cgroup.kill). */
  static detect(env = process.env): CommandCgroups | undefined {
    if (env.DFFS_DELEGATED_CGROUP !== '1') return undefined;
    try {
      const home = ownCgroupDirectory();
      if (!home) return undefined;
      fs.accessSync(home, fs.constants.W_OK);
      fs.accessSync(join(home, 'cgroup.kill'));
      const cgroups = new CommandCgroups(home);
      cgroups.#removeStale();
      return cgroups;
    } catch {
      return undefined;
    }
  }

  /** The cgroup a command starts in (the helper makes it). */
  pathFor(jobId: string): string {
    return join(this.home, `${JOB_PREFIX}${jobId}`);
  }

  /** Removes a finished command's cgroup, now if it is empty, or once what it left running has gone. */
  remove(path: string): void {
    if (this.#tryRemove(path)) return;
    this.#leftovers.add(path);
    this.#sweeper ??= setInterval(() => this.#sweep(), SWEEP_MS).unref();
  }

  close(): void {
    clearInterval(this.#sweeper);
  }

  #tryRemove(path: string): boolean {
    try {
      fs.rmdirSync(path);
      return true;
    } catch (error) {
      // ENOENT: never made (the command did not start). EBUSY: processes are still in it, or
      // cgroups the command made below it; with no process left anywhere below, those go first.
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY' || !this.#empty(path)) return false;
      for (const entry of fs.readdirSync(path, {withFileTypes: true})) if (entry.isDirectory()) this.#tryRemove(join(path, entry.name));
      try {
        fs.rmdirSync(path);
        return true;
      } catch {
        return false;
      }
    }
  }

  /** Whether no process is left in a cgroup or below it (cgroup.events says `populated 0`). */
  #empty(path: string): boolean {
    try {
      return /^populated 0$/m.test(fs.readFileSync(join(path, 'cgroup.events'), 'utf8'));
    } catch {
      return false;
    }
  }

  #sweep(): void {
    for (const path of this.#leftovers) if (this.#tryRemove(path)) this.#leftovers.delete(path);
    if (this.#leftovers.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  /** Cgroups of a previous daemon's commands: removed, or watched like any other. */
  #removeStale(): void {
    for (const name of fs.readdirSync(this.home)) {
      if (name.startsWith(JOB_PREFIX)) this.remove(join(this.home, name));
    }
  }
}
