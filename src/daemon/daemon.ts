// The daemon, wired together. A request goes through one file per stage: listeners.ts, routes.ts,
// authenticate.ts (over the body request-body.ts reads), shell-request.ts and key-policy.ts,
// job-queue.ts (runner.ts, spawner.ts), reply.ts or callback.ts; jobs: job-routes.ts, jobs.ts.
import type {IncomingMessage, ServerResponse} from 'node:http';
import {userInfo} from 'node:os';
import {isoTime} from '../common/iso-time.js';
import {sourceMatcher} from '../config/bind.js';
import {readConfig, resolveSettings, type AcceptedKey, type ConfigOverrides, type Settings} from '../config/config.js';
import type {DaemonStatus, Snapshot} from '../protocol/control-messages.js';
import {VERSION} from '../protocol/version.js';
import {acceptedKeys, authenticate, checkBeforeBody, tooLarge, weakKeyWarnings} from './authenticate.js';
import {countEvent, emptyCounters, EventBus, type Counters} from './events.js';
import {answerJob, FollowerSlots, type JobRoute} from './job-routes.js';
import {JobQueue, type CancelOutcome} from './job-queue.js';
import type {JobStore} from './jobs.js';
import {requestToRun} from './key-policy.js';
import {applyBinds, Listener, type ListenerHandlers, type ListenerStatus, type TlsMaterial} from './listeners.js';
import {Refusal} from './refusal.js';
import {settingsChanged} from './reload.js';
import {ReplayCache} from './replay-cache.js';
import {ReplayJournal} from './replay-journal.js';
import {sendJson} from './reply.js';
import {answerAndLinger, BodyBudget, readBody} from './request-body.js';
import {answerGreeting, refusalBeforeBody, route, SHELL_PATH, sourceRefusal} from './routes.js';
import {RunningFile} from './running-file.js';
import {checkWorkdir} from './shell-request.js';
import {SpawnerSupervisor} from './spawner.js';
import {lockStateDirectory} from './state-lock.js';
import {readTlsMaterial} from './tls-material.js';

export interface DaemonOptions {
  configPath: string;
  overrides?: ConfigOverrides;
  /** First callback retry delay in ms (tests shorten it). */
  callbackBackoffMs?: number;
  historySize?: number;
  /** The dffs-spawn helper: default, the one beside the program; null, none (Node's child_process). */
  spawnHelper?: string | null;
  /**
   * The command runner's socket (DFFS_COMMAND_RUNNER, which the unit sets): a dffs-spawn that systemd
   * starts as the commands' user. Commands then start no other way: they must not reach the daemon.
   */
  commandRunner?: string;
  /** Where running.json is kept (systemd's $STATE_DIRECTORY): commands lost to a crash are logged at the next start. */
  stateDirectory?: string;
}

const SAFE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** The sidecar daemon: listeners on every bind address, signed `POST /shell` and the job endpoints, the command queue. */
export class Daemon {
  readonly bus: EventBus;
  readonly counters: Counters = emptyCounters();
  readonly startedAt = Date.now();
  readonly queue: JobQueue;
  #settings: Settings;
  readonly #listeners = new Map<string, Listener>();
  readonly #replay = new ReplayCache();
  readonly #replayJournal: ReplayJournal | undefined;
  readonly #bodyBudget: BodyBudget;
  readonly #followers = new FollowerSlots();
  #spawner: SpawnerSupervisor | undefined;
  readonly #commandRunner: string | undefined;
  #tls: TlsMaterial | undefined;
  /** Whether ALLOW_FROM covers an address; undefined when it is not set (any address). */
  #allowsSource: ((address: string) => boolean) | undefined;
  readonly #runningFile: RunningFile | undefined;
  #stateLock: {release(): void} | undefined;
  #stopping: Promise<void> | undefined;

  private constructor(
    readonly options: DaemonOptions,
    settings: Settings,
  ) {
    this.#settings = settings;
    this.#allowsSource = settings.allowFrom && sourceMatcher(settings.allowFrom);
    this.#bodyBudget = new BodyBudget(settings.BODY_BUDGET);
    this.#commandRunner = options.commandRunner ?? (process.env.DFFS_COMMAND_RUNNER || undefined);
    this.bus = new EventBus(options.historySize);
    this.bus.subscribe((event) => countEvent(this.counters, event));
    // Commands run as the daemon's user, or, through the command runner, as the one the unit names.
    const user = this.#commandRunner && process.env.DFFS_COMMAND_USER
      ? {username: process.env.DFFS_COMMAND_USER, homedir: process.env.DFFS_COMMAND_HOME ?? '/'}
      : userInfo();
    this.queue = new JobQueue({
      settings: () => this.#settings,
      bus: this.bus,
      spawner: () => this.#spawner?.current,
      commandRunner: this.#commandRunner !== undefined,
      baseEnv: {PATH: SAFE_PATH, HOME: user.homedir, LANG: 'C.UTF-8', USER: user.username, LOGNAME: user.username},
      callbackBackoffMs: options.callbackBackoffMs ?? 1000,
      reportInternalError: (where, error) => this.#reportInternalError(where, error),
    });
    if (options.stateDirectory) {
      this.#runningFile = new RunningFile(options.stateDirectory, () =>
        this.queue.running().map(({jobId, command, pid, startedAt}) => ({jobId, command, ...(pid === undefined ? {} : {pid}), startedAt})),
      );
      this.queue.runningFile = this.#runningFile;
      this.#replayJournal = new ReplayJournal(options.stateDirectory, (error) => this.bus.emit({type: 'replay-journal-failed', error}));
    }
  }

  /**
   * Starts listening on every bind address. Settles once each address is listening, waiting for
   * its network address to appear, or failed; throws only when none can ever serve.
   */
  static async start(options: DaemonOptions, onCreated?: (daemon: Daemon) => void): Promise<Daemon> {
    const settings = resolveSettings(readConfig(options.configPath), options.overrides, options.configPath);
    const tlsMaterial = readTlsMaterial(settings);
    // Before anything of the state directory is read or written.
    const stateLock = options.stateDirectory === undefined ? undefined : await lockStateDirectory(options.stateDirectory);
    const daemon = new Daemon(options, settings);
    daemon.#stateLock = stateLock;
    daemon.#tls = tlsMaterial;
    onCreated?.(daemon);
    daemon.bus.emit({type: 'started', version: VERSION, pid: process.pid, config: options.configPath, bind: settings.bindText});
    for (const warning of weakKeyWarnings(settings)) daemon.bus.emit(warning);
    const lost = daemon.#runningFile?.takePrevious() ?? [];
    if (lost.length > 0) {
      daemon.bus.emit({type: 'commands-lost', jobIds: lost.map((entry) => entry.jobId), commands: lost.map((entry) => entry.command), pids: lost.flatMap((entry) => entry.pid ?? [])});
    }
    const now = Math.floor(Date.now() / 1000);
    daemon.#replayJournal?.load(daemon.#replay, now - settings.TIMESTAMP_TOLERANCE, now);
    daemon.#spawner = new SpawnerSupervisor({
      commandRunner: daemon.#commandRunner,
      spawnHelper: options.spawnHelper,
      bus: daemon.bus,
      reportInternalError: (where, error) => daemon.#reportInternalError(where, error),
    });
    daemon.#applyBinds();
    await Promise.all([...daemon.#listeners.values()].map((listener) => listener.ready));
    const statuses = daemon.listenerStatus();
    if (statuses.every((status) => status.state === 'failed')) {
      await daemon.stop();
      throw new Error(`no bind address could be used:\n${statuses.map((s) => `  ${s.address}: ${s.error}`).join('\n')}`);
    }
    return daemon;
  }

  get settings(): Settings {
    return this.#settings;
  }

  get jobs(): JobStore {
    return this.queue.jobs;
  }

  /** Nonces remembered against replays now: a gauge of /metrics. */
  get replayCacheSize(): number {
    return this.#replay.size;
  }

  listenerStatus(): ListenerStatus[] {
    return [...this.#listeners.values()].map((listener) => listener.status());
  }

  status(): DaemonStatus {
    const settings = this.#settings;
    return {
      version: VERSION,
      pid: process.pid,
      startedAt: isoTime(this.startedAt),
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      configPath: this.options.configPath,
      bind: this.listenerStatus(),
      secret: {
        configured: settings.secretKey !== undefined,
        ...(settings.secretCreatedAt ? {createdAt: settings.secretCreatedAt} : {}),
        ...(acceptedKeys(settings).some((key) => key.expiresAt !== undefined) ? {oldKeyAcceptedUntil: settings.oldSecret?.expiresAt} : {}),
      },
      counters: structuredClone(this.counters),
      running: this.queue.running(),
      queued: this.queue.queued,
    };
  }

  /** What a control-socket client or the dashboard starts from. */
  snapshot(): Snapshot {
    return {type: 'snapshot', status: this.status(), history: this.bus.history()};
  }

  /** Re-reads the config file (SIGHUP): new keys and limits apply at once, binds are opened and closed as needed. */
  reload(): void {
    let next: Settings;
    let tlsMaterial: TlsMaterial | undefined;
    try {
      next = resolveSettings(readConfig(this.options.configPath), this.options.overrides, this.options.configPath);
      tlsMaterial = readTlsMaterial(next);
    } catch (error) {
      this.bus.emit({type: 'reload-failed', error: `${(error as Error).message}; keeping the running configuration`});
      return;
    }
    const changed = settingsChanged(this.#settings, next);
    this.#settings = next;
    this.#tls = tlsMaterial;
    this.#allowsSource = next.allowFrom && sourceMatcher(next.allowFrom);
    for (const listener of this.#listeners.values()) if (tlsMaterial) listener.updateTls(tlsMaterial);
    this.#bodyBudget.total = next.BODY_BUDGET;
    this.queue.applySettings(next);
    if (!this.#stopping) this.#applyBinds();
    this.bus.emit({type: 'config-reloaded', changed});
    for (const warning of weakKeyWarnings(next)) this.bus.emit(warning);
  }

  /** Opens the bind addresses that failed again: one the metrics listener has just let go of. */
  retryFailedBinds(): void {
    if (!this.#stopping && this.listenerStatus().some((status) => status.state === 'failed')) this.#applyBinds();
  }

  /** Cancels a job (DELETE /jobs/{id}, the dashboard, the control socket). */
  cancelJob(id: string, by: string): CancelOutcome {
    return this.queue.cancel(id, by);
  }

  #applyBinds(): void {
    applyBinds(this.#listeners, this.#settings.binds, (address) => new Listener(address, this.#listenerHandlers(address.label), this.bus, this.#tls));
  }

  #listenerHandlers(label: string): ListenerHandlers {
    return {
      request: (req, res) => this.#handle(req, res),
      checkContinue: (req, res) => this.#handleExpectContinue(req, res),
      maxConnections: () => this.#settings.MAX_CONNECTIONS,
      allowsSource: (remote) => !this.#allowsSource || this.#allowsSource(remote),
      sourceRefused: (remote) =>
        this.bus.emit({type: 'request-refused', remote, status: 403, reason: 'source-not-allowed', message: `a TLS connection from ${remote} was closed: ALLOW_FROM does not cover it`}),
      tooManyConnections: (req, res) =>
        this.#refuse(req, res, sourceRefusal(this.#allowsSource, req) ?? new Refusal(503, 'too-many-connections', `too many connections to ${label} (MAX_CONNECTIONS ${this.#settings.MAX_CONNECTIONS}); try again later`)),
    };
  }

  #reportInternalError(where: string, error: unknown): void {
    this.bus.emit({type: 'internal-error', where, error: (error as Error)?.stack ?? String(error)});
  }

  #refuse(req: IncomingMessage, res: ServerResponse, refusal: Refusal, headers: Record<string, string> = {}): void {
    const {status, reason, message, key} = refusal;
    this.bus.emit({type: 'request-refused', remote: req.socket.remoteAddress ?? '', status, reason, message, ...(key ? {key} : {})});
    // A client still sending its body reads the answer once it is done; the connection then closes.
    answerAndLinger(req, res, status, JSON.stringify({ok: false, message, reason}), headers);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const notAllowed = sourceRefusal(this.#allowsSource, req);
    if (notAllowed) {
      this.#refuse(req, res, notAllowed);
      return;
    }
    const routed = route(req);
    try {
      if (routed.kind === 'greeting') answerGreeting(req, res);
      else if (routed.kind === 'refused') this.#refuse(req, res, routed.refusal, routed.headers);
      else if (routed.kind === 'shell') this.#shell(req, res);
      else this.#job(req, res, routed.job, routed.path, routed.query);
    } catch (error) {
      this.#answerError(req, res, error);
    }
  }

  /** `Expect: 100-continue` (curl's way with large bodies): a request that would be refused is refused before its body is sent. */
  #handleExpectContinue(req: IncomingMessage, res: ServerResponse): void {
    const refused = refusalBeforeBody(req, this.#allowsSource, () => checkBeforeBody(req, this.#settings, this.options.configPath, this.#stopping !== undefined));
    if (!refused) {
      res.writeContinue();
      this.#handle(req, res);
      return;
    }
    const {status, reason, message} = refused.refusal;
    this.bus.emit({type: 'request-refused', remote: req.socket.remoteAddress ?? '', status, reason, message});
    res.shouldKeepAlive = false;
    sendJson(res, status, {ok: false, message, reason}, refused.headers);
  }

  /** A refusal, or an internal error, thrown on the way from a request to its command. */
  #answerError(req: IncomingMessage, res: ServerResponse, error: unknown): void {
    if (error instanceof Refusal) this.#refuse(req, res, error);
    else {
      this.#reportInternalError(`${req.method} ${(req.url ?? '/').split('?', 1)[0].slice(0, 100)}`, error);
      sendJson(res, 500, {ok: false, message: `internal error: ${(error as Error).message}`});
    }
  }

  /**
   * From the headers to the command's start in as few turns of the event loop as the request
   * allows: one for a body that came with the headers, with no promise on the way (a workdir
   * is checked asynchronously). What is only bookkeeping happens after the command has started.
   */
  #shell(req: IncomingMessage, res: ServerResponse): void {
    const settings = this.#settings;
    this.#readSigned(req, res, 'POST', SHELL_PATH, (key, body) => {
      const request = requestToRun(body, key, settings);
      const remote = req.socket.remoteAddress ?? '';
      // Through the command runner, the daemon is not the user who must enter the workdir: the
      // runner says so if it cannot.
      if (request.workdir === undefined || this.#commandRunner) this.queue.accept(remote, res, request, key.name);
      else {
        checkWorkdir(request.workdir)
          .then(() => this.queue.accept(remote, res, request, key.name))
          .catch((error: unknown) => this.#answerError(req, res, error));
      }
    });
  }

  /** The body of a signed request, once its signature, timestamp and nonce are checked; a Refusal, thrown in `onVerified` or here, is answered. */
  #readSigned(req: IncomingMessage, res: ServerResponse, method: string, path: string, onVerified: (key: AcceptedKey, body: Buffer) => void): void {
    const settings = this.#settings;
    const {configPath} = this.options;
    const auth = checkBeforeBody(req, settings, configPath, this.#stopping !== undefined);
    readBody(req, settings.BODY_LIMIT, this.#bodyBudget, (body) => {
      try {
        if (body === 'too-large') throw tooLarge(settings, configPath);
        if (body === 'over-budget') {
          throw new Refusal(503, 'body-budget', `too many request bodies are being received at once (BODY_BUDGET ${this.#bodyBudget.total} bytes); try again later`);
        }
        onVerified(authenticate(settings, this.#replay, this.#replayJournal, auth, method, path, body), body);
      } catch (error) {
        this.#answerError(req, res, error);
      }
    });
  }

  /** A signed request under /jobs (job-routes.ts). */
  #job(req: IncomingMessage, res: ServerResponse, job: JobRoute, path: string, query: URLSearchParams): void {
    const context = {jobs: this.jobs, followers: this.#followers, cancel: (id: string, by: string) => this.cancelJob(id, by), reportInternalError: (where: string, error: unknown) => this.#reportInternalError(where, error)};
    this.#readSigned(req, res, req.method ?? 'GET', path, (key, body) => answerJob(res, `${req.method} ${path}`, job, key, body, query, context));
  }

  /**
   * Graceful stop: refuse new work, let commands and their callbacks finish within DRAIN_TIMEOUT,
   * then kill what is left (and log it), and close every connection.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#drainAndClose();
    return this.#stopping;
  }

  /** Stops at once: what is still running is killed and logged as abandoned. */
  async stopNow(): Promise<void> {
    this.queue.abandonAll();
    await this.stop();
  }

  async #drainAndClose(): Promise<void> {
    const {DRAIN_TIMEOUT} = this.#settings;
    this.bus.emit({type: 'stopping', running: this.queue.runningCount, queued: this.queue.queued, drainSeconds: DRAIN_TIMEOUT});
    const listeners = [...this.#listeners.values()];
    const closed = Promise.all(listeners.map((listener) => listener.close()));
    if (!(await this.queue.waitIdle(DRAIN_TIMEOUT * 1000))) {
      this.queue.abandonAll();
      // Killed commands report back at once; a second is plenty.
      await this.queue.waitIdle(1000);
    }
    for (const listener of listeners) listener.server.closeAllConnections();
    await closed;
    this.#spawner?.close();
    this.#runningFile?.writeNow();
    this.#replayJournal?.close();
    this.#stateLock?.release();
    this.bus.emit({type: 'stopped'});
  }
}
