import {constants as osConstants} from 'node:os';

/**
 * A command as dffs-spawn takes it (native/dffs-spawn.c): LIMIT, CGROUP (empty: none), COMMAND,
 * WORKDIR (empty: none), then NAME=VALUE for each variable, each ended by a NUL. The request
 * parser has refused NULs inside the strings.
 */
export function encodeSpawnRequest(command: string, workdir: string | undefined, env: Record<string, string>, outputLimit: number, cgroup = ''): string {
  let request = `${outputLimit}\0${cgroup}\0${command}\0${workdir ?? ''}\0`;
  for (const name in env) request += `${name}=${env[name]}\0`;
  return request;
}

/** A wait status from waitpid(2) as Node reports a child's exit; -1, a status the helper could not read. */
export function decodeWaitStatus(status: number): {code: number | null; signal: NodeJS.Signals | null} {
  if (status === -1) return {code: null, signal: null};
  const signal = status & 0x7f;
  if (signal === 0) return {code: (status >> 8) & 0xff, signal: null};
  const name = Object.entries(osConstants.signals).find(([, number]) => number === signal)?.[0] as NodeJS.Signals | undefined;
  return {code: null, signal: name ?? null};
}
