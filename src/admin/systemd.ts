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

/**
 * systemctl. A start or restart that fails (of a Type=notify unit: also a daemon that ended before
 * it was ready) says why with the units' last journal lines, to which systemctl only points.
 */
export async function systemctl(...args: string[]): Promise<string> {
  try {
    return await run('systemctl', args);
  } catch (error) {
    if (!(error instanceof SystemError) || !['start', 'restart'].includes(args[0])) throw error;
    const units = args.slice(1).filter((arg) => !arg.startsWith('-'));
    const journal = await run('journalctl', [...units.flatMap((unit) => ['-u', unit]), '-n', '15', '--no-pager', '-o', 'cat']).catch(() => '');
    throw new SystemError(`${error.message}${journal ? `\nLast log lines:\n${journal}` : ''}`);
  }
}

export interface UnitState {
  loaded: boolean;
  activeState: string;
  subState: string;
  enabled: string;
  mainPid: number;
  since?: string;
  restarts: number;
  /** What the daemon last told systemd of itself (STATUS=), as `systemctl status` shows it. */
  statusText?: string;
  /** WatchdogSec=: how long the daemon may go without pinging before systemd restarts it. */
  watchdogSeconds?: number;
  /** When the daemon last pinged the watchdog (or was started, before any ping). */
  watchdogPingedAt?: string;
}

const TIMESPAN_UNITS: Record<string, number> = {us: 1e-6, ms: 1e-3, s: 1, min: 60, h: 3600, d: 86_400, w: 604_800};

/** A timespan as `systemctl show` prints it (`30s`, `1min 30s`, `500ms`) in seconds; undefined for `0`, `infinity` or anything else. */
export function parseTimespan(text: string): number | undefined {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(us|ms|s|min|h|d|w)\b\s*/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join('') !== text) return undefined;
  return parts.reduce((total, [, amount, unit]) => total + Number(amount) * TIMESPAN_UNITS[unit], 0);
}

/** `@1700000000` (`--timestamp=unix`) as an ISO time; undefined when unset. */
function unixTimestamp(text: string | undefined): string | undefined {
  return text && /^@\d+$/.test(text) ? new Date(Number(text.slice(1)) * 1000).toISOString() : undefined;
}

/** The service's state as `systemctl show` reports it. */
export async function unitState(): Promise<UnitState> {
  const text = await systemctl(
    'show',
    SERVICE_NAME,
    '--property=LoadState,ActiveState,SubState,UnitFileState,MainPID,ActiveEnterTimestamp,NRestarts,StatusText,WatchdogUSec,WatchdogTimestamp',
    '--timestamp=unix',
  );
  const values = Object.fromEntries(text.split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
  const since = unixTimestamp(values.ActiveEnterTimestamp);
  const watchdogSeconds = parseTimespan(values.WatchdogUSec ?? '');
  const watchdogPingedAt = watchdogSeconds === undefined ? undefined : unixTimestamp(values.WatchdogTimestamp);
  return {
    loaded: values.LoadState === 'loaded',
    activeState: values.ActiveState ?? 'unknown',
    subState: values.SubState ?? 'unknown',
    enabled: values.UnitFileState || 'unknown',
    mainPid: Number(values.MainPID ?? 0),
    ...(since ? {since} : {}),
    restarts: Number(values.NRestarts ?? 0),
    ...(values.StatusText ? {statusText: values.StatusText} : {}),
    ...(watchdogSeconds === undefined ? {} : {watchdogSeconds}),
    ...(watchdogPingedAt ? {watchdogPingedAt} : {}),
  };
}
