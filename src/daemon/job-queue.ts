// Stage 5 of a request: its command runs. A verified request becomes a job, started at once or
// queued (MAX_RUNNING, MAX_QUEUED), recorded in the job store, answered (a waiting request with
// the result; one that does not wait at once), and called back. Cancels and the stop's drain and
// abandon are here too.
import type {ServerResponse} from 'node:http';
import type {Settings} from '../config/config.js';
import {crypto} from '../common/node-builtins.js';
import {isoTime} from '../common/iso-time.js';
import type {RunningJobStatus} from '../protocol/control-messages.js';
import {deliverCallback} from './callback.js';
import type {EventBus} from './events.js';
import {JsonBody} from './json-body.js';
import {JobStore, type JobRecord, type JobStoreLimits} from './jobs.js';
import {Refusal} from './refusal.js';
import {replyWithResult, sendJson} from './reply.js';
import type {RunningFile} from './running-file.js';
import {runCommand, type CommandResult, type RunningCommand} from './runner.js';
import type {ShellRequest} from './shell-request.js';
import type {SpawnHelper} from './spawn-helper.js';
import {JOB_ID_VARIABLE} from './process-group.js';
import {OutputBudget} from './output-budget.js';

const {randomUUID} = crypto;

interface Job {
  id: string;
  record: JobRecord;
  request: ShellRequest;
  /** The name of the key that signed it. */
  key: string;
  remote: string;
  /** Takes the result once, as soon as it is known: a waiting request is answered from here. */
  finished(result: CommandResult): void;
}

interface RunningJob {
  job: Job;
  command: RunningCommand;
  startedAt: number;
}

export type CancelOutcome = 'cancelling' | 'finished' | 'not-found';

export interface JobQueueOptions {
  settings(): Settings;
  bus: EventBus;
  /** The spawner to start the next command with. */
  spawner(): SpawnHelper | undefined;
  /** Commands start through the command runner only, each in a cgroup of its own. */
  commandRunner: boolean;
  /** The environment every command starts from, before the request's variables. */
  baseEnv: Record<string, string>;
  /** First callback retry delay in ms (tests shorten it). */
  callbackBackoffMs: number;
  reportInternalError(where: string, error: unknown): void;
}

function notRun(error: string): CommandResult {
  return {stdout: '', stderr: '', exitCode: null, signal: null, timedOut: false, truncated: false, durationMs: 0, stdoutBytes: 0, stderrBytes: 0, error};
}

/** A queued job's result when it is cancelled before it started. */
function cancelledInQueue(): CommandResult {
  return {stdout: '', stderr: 'sidecar: cancelled before it started\n', exitCode: null, signal: null, timedOut: false, truncated: false, durationMs: 0, stdoutBytes: 0, stderrBytes: 0, ended: 'cancelled'};
}

export function jobLimits(settings: Settings): JobStoreLimits {
  return {count: settings.JOB_HISTORY, seconds: settings.JOB_HISTORY_SECONDS, outputBytes: settings.JOB_OUTPUT_KEPT};
}

/** The headers a callback carries beside the output: Func reads only the body, as from the original Sidecar. */
function callbackHeaders(jobId: string, result: CommandResult): Record<string, string> {
  return {
    'X-Sidecar-Job-Id': jobId,
    'X-Sidecar-Exit-Code': result.exitCode === null ? '' : String(result.exitCode),
    'X-Sidecar-Signal': result.signal ?? '',
    'X-Sidecar-Timed-Out': String(result.timedOut),
    ...(result.ended ? {'X-Sidecar-Ended': result.ended} : {}),
    'X-Sidecar-Truncated': String(result.truncated),
    'X-Sidecar-Duration-Ms': String(result.durationMs),
  };
}

export class JobQueue {
  readonly jobs: JobStore;
  readonly outputBudget: OutputBudget;
  readonly #running = new Map<string, RunningJob>();
  readonly #queue: Job[] = [];
  readonly #callbacks = new Set<Promise<unknown>>();
  readonly #callbackAbort = new AbortController();
  readonly #idleWaiters = new Set<() => void>();
  /** Where running.json is kept: set by the daemon when it has a state directory. */
  runningFile: RunningFile | undefined;

  constructor(private readonly options: JobQueueOptions) {
    const settings = options.settings();
    this.jobs = new JobStore(jobLimits(settings), (error) => options.reportInternalError('job output follower', error));
    this.outputBudget = new OutputBudget(settings.OUTPUT_BUDGET);
  }

  get queued(): number {
    return this.#queue.length;
  }

  get runningCount(): number {
    return this.#running.size;
  }

  running(): RunningJobStatus[] {
    return [...this.#running.values()].map(({job, command, startedAt}) => ({
      jobId: job.id,
      command: job.request.command,
      pid: command.pid,
      startedAt: isoTime(startedAt),
      remote: job.remote,
      key: job.key,
    }));
  }

  /** Settings that changed on a reload. */
  applySettings(settings: Settings): void {
    this.outputBudget.total = settings.OUTPUT_BUDGET;
    this.jobs.limits = jobLimits(settings);
  }

  /**
   * Starts or queues a verified request's command, or refuses it when the queue is full. The
   * command starts before the job is logged as accepted: logging is not on the path of its latency.
   */
  accept(remote: string, res: ServerResponse, request: ShellRequest, key: string): void {
    const settings = this.options.settings();
    const startNow = this.#running.size < settings.MAX_RUNNING;
    // Refused before anything is recorded: a flood of 429s leaves no trace in memory.
    if (!startNow && this.#queue.length >= settings.MAX_QUEUED) {
      throw new Refusal(429, 'busy', `too many commands: ${this.#running.size} running and ${this.#queue.length} queued; try again later`);
    }
    const id = randomUUID();
    const timeoutSeconds = request.timeoutSeconds ?? settings.COMMAND_TIMEOUT;
    const callback = request.callbackURL ? {callback: request.callbackURL.origin} : {};
    const workdir = request.workdir ? {workdir: request.workdir} : {};
    const job: Job = {
      id,
      record: this.jobs.add({id, key, remote, command: request.command, wait: request.wait, ...workdir, ...callback, timeoutSeconds}),
      request,
      key,
      remote,
      finished: request.wait ? (result) => replyWithResult(res, id, result) : () => {},
    };
    // The answer to a request that does not wait goes out before the command starts.
    if (!request.wait) sendJson(res, 200, {ok: true, message: '', data: {stdout: '', stderr: '', jobId: id}});
    if (startNow) this.#start(job);
    const {command, wait, envs} = request;
    this.options.bus.emit({type: 'request-accepted', jobId: id, remote, key, command, wait, ...workdir, envKeys: Object.keys(envs), ...callback, timeoutSeconds});
    if (!startNow) {
      this.#queue.push(job);
      this.options.bus.emit({type: 'command-queued', jobId: id, queued: this.#queue.length});
    }
  }

  /**
   * Cancels a job: one still queued ends at once; a running one as a timeout would (SIGTERM to its
   * whole tree, SIGKILL after KILL_GRACE), its result and callback saying cancelled.
   */
  cancel(id: string, by: string): CancelOutcome {
    const record = this.jobs.get(id);
    if (!record) return 'not-found';
    if (record.finished) return 'finished';
    const index = this.#queue.findIndex((job) => job.id === id);
    if (index >= 0) {
      const [job] = this.#queue.splice(index, 1);
      this.options.bus.emit({type: 'job-cancel', jobId: id, by, state: 'queued'});
      this.#finish(job, cancelledInQueue(), false);
      return 'cancelling';
    }
    const running = this.#running.get(id);
    if (!running?.command.cancel()) return 'finished';
    this.options.bus.emit({type: 'job-cancel', jobId: id, by, state: 'running'});
    return 'cancelling';
  }

  #start(job: Job): void {
    const settings = this.options.settings();
    const {bus} = this.options;
    const command = runCommand(
      {
        command: job.request.command,
        workdir: job.request.workdir,
        // The mark goes last: a request cannot set it.
        env: {...this.options.baseEnv, ...job.request.envs, [JOB_ID_VARIABLE]: job.id},
        jobId: job.id,
        timeoutMs: (job.request.timeoutSeconds ?? settings.COMMAND_TIMEOUT) * 1000,
        killGraceMs: settings.KILL_GRACE * 1000,
        outputLimit: settings.OUTPUT_LIMIT,
        outputBudget: this.outputBudget,
        // Made below the runner's own cgroup, where it has one to give.
        ...(this.options.commandRunner ? {cgroup: `job-${job.id}`, fallback: false} : {}),
      },
      this.options.spawner(),
      {
        onStarted: (pid) => {
          job.record.pid = pid;
          bus.emit({type: 'command-started', jobId: job.id, pid});
          this.runningFile?.changed();
        },
        onOutput: (stream, chunk) => job.record.output(stream, chunk),
        onFinished: (result) => this.#finish(job, result),
        onHandlerError: (error) => this.options.reportInternalError('command event', error),
      },
    );
    const startedAt = Date.now();
    job.record.state = 'running';
    job.record.startedAt = startedAt;
    job.record.keptWhileRunning = (stream) => command.keptOutput(stream);
    this.#running.set(job.id, {job, command, startedAt});
    this.runningFile?.changed();
  }

  /** `ran`: false for a job cancelled in the queue, which frees no place among the running. */
  #finish(job: Job, result: CommandResult, ran = true): void {
    this.#running.delete(job.id);
    // The waiting reply goes out first, the bookkeeping after it.
    job.finished(result);
    this.jobs.finish(job.record, result);
    this.runningFile?.changed();
    // Everything but the output, which is never logged.
    const {stdout: _stdout, stderr: _stderr, ...outcome} = result;
    this.options.bus.emit({type: 'command-finished', jobId: job.id, ...outcome});
    if (job.request.callbackURL) this.#callBack(job, job.request.callbackURL, result);
    const next = ran ? this.#queue.shift() : undefined;
    if (next) this.#start(next);
    this.#notifyIfIdle();
  }

  #callBack(job: Job, url: URL, result: CommandResult): void {
    const settings = this.options.settings();
    const {bus} = this.options;
    const body = new JsonBody(['{"kwargs":{"stdout":', {string: result.stdout}, ',"stderr":', {string: result.stderr}, '}}']);
    const delivery = deliverCallback(url, body, callbackHeaders(job.id, result), {
      retries: settings.CALLBACK_RETRIES,
      timeoutMs: settings.CALLBACK_TIMEOUT * 1000,
      backoffMs: this.options.callbackBackoffMs,
      signal: this.#callbackAbort.signal,
      onAttempt: (attempt) => {
        const {attempt: number, ok, status, error, retryInMs, durationMs} = attempt;
        const record = job.record.callback;
        if (record) {
          record.attempts.push({attempt: number, ok, ...(status === undefined ? {} : {status}), ...(error ? {error} : {}), durationMs});
          if (ok) record.outcome = 'delivered';
          else if (retryInMs === undefined) record.outcome = 'failed';
        }
        if (ok) bus.emit({type: 'callback-delivered', jobId: job.id, attempt: number, status: status ?? 0, durationMs});
        else bus.emit({type: 'callback-failed', jobId: job.id, attempt: number, error: error ?? 'failed', ...(retryInMs === undefined ? {} : {retryInMs})});
      },
    });
    this.#callbacks.add(delivery);
    void delivery.finally(() => {
      this.#callbacks.delete(delivery);
      this.#notifyIfIdle();
    });
  }

  #idle(): boolean {
    return this.#running.size === 0 && this.#queue.length === 0 && this.#callbacks.size === 0;
  }

  #notifyIfIdle(): void {
    if (!this.#idle()) return;
    for (const wake of this.#idleWaiters) wake();
    this.#idleWaiters.clear();
  }

  /** Resolves when no command runs or waits and every callback is settled, or after `ms`; true if idle. */
  waitIdle(ms: number): Promise<boolean> {
    if (this.#idle()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#idleWaiters.delete(wake);
        resolve(false);
      }, ms);
      this.#idleWaiters.add(wake);
    });
  }

  /** Kills what runs, answers what waits, and gives up on callbacks: the stop's last resort. */
  abandonAll(): void {
    const abandoned = [...this.#running.values()].map(({job}) => job).concat(this.#queue.splice(0));
    if (abandoned.length > 0) {
      this.options.bus.emit({type: 'commands-abandoned', jobIds: abandoned.map((job) => job.id), commands: abandoned.map((job) => job.request.command)});
    }
    for (const {command} of this.#running.values()) command.kill('SIGKILL');
    for (const job of abandoned) {
      if (this.#running.has(job.id)) continue;
      const result = notRun('the sidecar stopped before the command could start');
      job.finished(result);
      this.jobs.finish(job.record, result);
    }
    this.#callbackAbort.abort();
    this.#notifyIfIdle();
  }
}
