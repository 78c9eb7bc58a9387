import {existsSync} from 'node:fs';
import {execa} from 'execa';
import {SERVICE_NAME} from './paths.js';

export class SystemError extends Error {}

/** Runs a system tool; a failure becomes a SystemError with what it printed. */
export async function run(file: string, args: string[]): Promise<string> {
  const result = await execa(file, args, {reject: false, stdin: 'ignore'});
  if (result.failed) {
    const output = `${result.stderr}\n${result.stdout}`.trim();
    throw new SystemError(`${file} ${args.join(' ')} failed${result.exitCode === undefined ? '' : ` (exit ${result.exitCode})`}${output ? `: ${output}` : ''}`);
  }
  return result.stdout;
}

export function systemdIsRunning(): boolean {
  return existsSync('/run/systemd/system');
}

export const systemctl = (...args: string[]) => run('systemctl', args);

export interface UnitState {
  loaded: boolean;
  activeState: string;
  subState: string;
  enabled: string;
  mainPid: number;
  since?: string;
  restarts: number;
}

/** The service's state as `systemctl show` reports it. */
export async function unitState(): Promise<UnitState> {
  const text = await systemctl(
    'show',
    SERVICE_NAME,
    '--property=LoadState,ActiveState,SubState,UnitFileState,MainPID,ActiveEnterTimestamp,NRestarts',
    '--timestamp=unix',
  );
  const values = Object.fromEntries(text.split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
  const since = /^@\d+$/.test(values.ActiveEnterTimestamp ?? '') ? new Date(Number(values.ActiveEnterTimestamp.slice(1)) * 1000).toISOString() : undefined;
  return {
    loaded: values.LoadState === 'loaded',
    activeState: values.ActiveState ?? 'unknown',
    subState: values.SubState ?? 'unknown',
    enabled: values.UnitFileState || 'unknown',
    mainPid: Number(values.MainPID ?? 0),
    ...(since ? {since} : {}),
    restarts: Number(values.NRestarts ?? 0),
  };
}
