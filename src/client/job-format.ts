// How `dffs-ctl jobs` prints records for a person: one line per job, or one job's fields.
import {oneLine} from '../common/printable.js';
import type {JobRecordView} from '../protocol/job-record.js';

const COMMAND_WIDTH = 60;

function cut(text: string, width: number): string {
  const flat = oneLine(text);
  return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat;
}

function outcome(job: JobRecordView): string {
  if (typeof job.exitCode === 'number') return `exit ${job.exitCode}`;
  if (job.signal) return job.signal;
  return '';
}

export function jobTable(jobs: JobRecordView[]): string[] {
  const rows = jobs.map((job) => [...[job.id, job.state, job.key, job.startedAt ?? job.queuedAt, job.durationMs === undefined ? '' : `${(job.durationMs / 1000).toFixed(1)}s`, outcome(job)].map((cell) => oneLine(String(cell))), cut(job.command, COMMAND_WIDTH)]);
  const header = ['JOB', 'STATE', 'KEY', 'STARTED', 'TOOK', 'RESULT', 'COMMAND'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column].length)));
  return [header, ...rows].map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]))).join('  '));
}

export function jobDetails(job: JobRecordView): string[] {
  const lines: [string, string | number | undefined][] = [
    ['Job', job.id],
    ['State', job.state],
    ['Command', job.command],
    ['Key', job.key],
    ['From', job.remote],
    ['Workdir', job.workdir],
    ['Queued', job.queuedAt],
    ['Started', job.startedAt],
    ['Finished', job.finishedAt],
    ['Pid', job.pid],
    ['Result', [outcome(job), job.timedOut ? 'timed out' : '', job.error ?? ''].filter(Boolean).join('; ') || undefined],
    ['Took', job.durationMs === undefined ? undefined : `${job.durationMs} ms`],
    ['Output', `${job.stdoutBytes} bytes stdout, ${job.stderrBytes} bytes stderr${job.truncated ? ' (truncated at OUTPUT_LIMIT)' : ''}${job.outputKept ? '' : ' (no longer kept)'}`],
    ['Callback', job.callbackDelivery ? `${job.callback} ${job.callbackDelivery.outcome} after ${job.callbackDelivery.attempts.length} attempt(s)` : undefined],
  ];
  return lines.filter(([, value]) => value !== undefined && value !== '').map(([name, value]) => `${`${name}:`.padEnd(10)}${oneLine(String(value))}`);
}
