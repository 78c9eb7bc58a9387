// `dffs-ctl exec`: the command starts as a job (wait=false), and its output is followed as it comes
// (GET /jobs/{id}/output?follow=1), so a long command shows its lines at once. Ctrl-C asks whether
// to cancel the job or to leave it running; where no one can answer (no terminal), it cancels.
import {ExecError, sendShell, type ExecRequest} from './exec-client.js';
import {cancelJob, readOutput} from './jobs-client.js';
import type {SidecarTarget} from './target.js';
import {JOB_ID, type JobRecordView} from '../protocol/job-record.js';
import {oneLine} from '../common/printable.js';

const SIGNAL_NUMBERS: Record<string, number> = {SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15};

/** The exit code that stands for a job's end, as a shell would report it: 124 for a timeout, 130 for a cancel, 128+N for a signal. */
export function exitCodeOfJob(record: Pick<JobRecordView, 'state' | 'exitCode' | 'signal' | 'error'>): number {
  if (record.state === 'timed-out') return 124;
  if (record.state === 'cancelled') return 130;
  if (typeof record.exitCode === 'number') return record.exitCode;
  if (record.error) return 1;
  return 128 + (SIGNAL_NUMBERS[String(record.signal)] ?? 0);
}

/** Starts a command without waiting; returns its job id. */
export async function startJob(target: SidecarTarget, request: Omit<ExecRequest, 'wait'>): Promise<string> {
  const {status, body} = await sendShell(target.baseUrl, target.secretKey, {...request, wait: false}, target.ca);
  if (status !== 200 || !body.ok) {
    const hint = status === 401 ? ' (is the key right? see sudo dffs-ctl secret show)' : '';
    throw new ExecError(`the sidecar refused the request: HTTP ${status}: ${oneLine(String(body.message))}${hint}`, status === 401 ? 77 : 1);
  }
  const jobId = body.data?.jobId;
  // Printed, and put in URLs, only once it is one of the daemon's.
  if (typeof jobId !== 'string' || !JOB_ID.test(jobId)) throw new ExecError('the sidecar started the command but gave no job id: it is not this version\'s sidecar', 69);
  return jobId;
}

export interface LiveIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Asks the one at the terminal whether to cancel (true) or detach (false); undefined: no one can answer. */
  ask?(question: string): Promise<boolean>;
}

export type LiveOutcome = {detached: true; jobId: string} | {detached: false; record: JobRecordView; stdout: string; stderr: string};

/**
 * Follows a job's output to its end. `interrupts` is called with the handler for Ctrl-C; the
 * output followed so far is kept for --json. Detaching ends the follow; the job runs on.
 */
export async function followJob(target: SidecarTarget, jobId: string, io: LiveIo, interrupts: (onInterrupt: () => void) => () => void): Promise<LiveOutcome> {
  const printed = {stdout: '', stderr: ''};
  const follow = new AbortController();
  let detached = false;
  let asking = false;
  const cancel = async () => {
    io.stderr(`dffs-ctl: cancelling job ${jobId}\n`);
    try {
      await cancelJob(target, jobId);
    } catch (error) {
      io.stderr(`dffs-ctl: ${(error as Error).message}\n`);
    }
  };
  const stopListening = interrupts(() => {
    // A second Ctrl-C while the question is open cancels.
    if (asking || !io.ask) {
      asking = false;
      void cancel();
      return;
    }
    asking = true;
    void io.ask(`\ndffs-ctl: cancel job ${jobId} (c), or detach and leave it running (d)? `).then((wantsCancel) => {
      if (!asking) return;
      asking = false;
      if (wantsCancel) void cancel();
      else {
        detached = true;
        follow.abort();
      }
    });
  });
  try {
    const record = await readOutput(
      target,
      jobId,
      true,
      {
        data: (stream, text) => {
          printed[stream] += text;
          io[stream](text);
        },
        skipped: (_stream, bytes) => io.stderr(`\ndffs-ctl: [${bytes} bytes of output not kept]\n`),
      },
      follow.signal,
    );
    return {detached: false, record, ...printed};
  } catch (error) {
    if (detached) {
      io.stderr(`dffs-ctl: detached; job ${jobId} runs on. Follow it with: dffs-ctl jobs logs -f ${jobId}\n`);
      return {detached: true, jobId};
    }
    throw error;
  } finally {
    stopListening();
  }
}

/** A one-key question on the terminal (c: cancel; d: detach; Ctrl-C again: cancel); undefined without one. */
export function terminalQuestion(input: NodeJS.ReadStream = process.stdin, output: NodeJS.WriteStream = process.stderr): LiveIo['ask'] {
  if (!input.isTTY || typeof input.setRawMode !== 'function') return undefined;
  return (question) =>
    new Promise((resolve) => {
      output.write(question);
      input.setRawMode(true);
      input.resume();
      const onKey = (key: Buffer) => {
        const answer = key.toString('utf8').toLowerCase();
        if (answer !== 'c' && answer !== 'd' && answer !== '\u0003') return;
        input.off('data', onKey);
        input.setRawMode(false);
        input.pause();
        output.write(`${answer === 'd' ? 'detach' : 'cancel'}\n`);
        resolve(answer !== 'd');
      };
      input.on('data', onKey);
    });
}
