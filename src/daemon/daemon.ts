import type {IncomingMessage, ServerResponse} from 'node:http';
import {userInfo} from 'node:os';
import {crypto, fs} from '../common/node-builtins.js';
import {DEFAULT_KEY_NAME, MIN_SECRET_LENGTH, readConfig, resolveSettings, type AcceptedKey, type ConfigOverrides, type Settings} from '../config/config.js';
import {checkAuthHeaders, matchingKey, type AuthHeaderCheck} from '../protocol/signature.js';
import {applyKeyPolicy, NotAllowed} from './key-policy.js';
import {greeting, VERSION} from '../protocol/version.js';
import {deliverCallback} from './callback.js';
import {isoTime} from '../common/iso-time.js';
import {JsonBody} from './json-body.js';
import {JobStore, type JobRecord, type JobStoreLimits} from './jobs.js';
import {FollowerSlots, jobRoute, keySees, listJobs, RouteMismatch, streamOutput, type JobRoute} from './job-routes.js';
import {replyWithResult, sendJson} from './reply.js';
import {countEvent, emptyCounters, EventBus, type Counters, type RefusalReason} from './events.js';
import {Listener, type ListenerStatus, type TlsMaterial} from './listeners.js';
import {ReplayCache} from './replay-cache.js';
import {ReplayJournal} from './replay-journal.js';
import {answerAndLinger, BodyBudget, readBody} from './request-body.js';
import {readTlsMaterial} from './tls-material.js';
import {sourceMatcher} from '../config/bind.js';
import {JOB_ID_VARIABLE, OutputBudget, runCommand, type CommandResult, type RunningCommand} from './runner.js';
import {RunningFile} from './running-file.js';
import {findSpawnHelper, SpawnHelper} from './spawn-helper.js';
import {lockStateDirectory} from './state-lock.js';
import {BadRequest, parseShellRequest, type ShellRequest} from './shell-request.js';
import type {DaemonStatus, Snapshot} from '../protocol/control-messages.js';

const {randomUUID} = crypto;

export interface DaemonOptions {
  configPath: string;
  overrides?: ConfigOverrides;
  /** First callback retry delay in ms (tests shorten it). */
  callbackBackoffMs?: number;
  historySize?: number;
  /** The dffs-spawn helper: default, the one beside the program; null, none (Node's child_process). */
  spawnHelper?: string | null;
  /**
   * The socket of the command runner (DFFS_COMMAND_RUNNER, which the unit sets): a dffs-spawn that
   * systemd starts for the connection, as the commands' user. Commands then never start any other
   * way: the daemon runs as another user, whose keys they must not reach.
   */
  commandRunner?: string;
  /** Where running.json is kept (systemd's $STATE_DIRECTORY): commands lost to a crash are logged at the next start. */
  stateDirectory?: string;
}


/** Helpers that stop this soon after their start, this many times in a row, are given up for Node's child_process. */
const HELPER_QUICK_EXIT_MS = 1000;
const HELPER_QUICK_EXITS = 3;
const HELPER_RETRY_MS = 60_000;
/** How soon an unreachable command runner is tried again: without it no command can start. */
const RUNNER_RETRY_MS = 1_000;

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

class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly reason: RefusalReason,
    message: string,
    /** The name of the key that signed the request, once known. */
    readonly key?: string,
  ) {
    super(message);
  }
}

const SHELL_PATH = '/shell';

/** The keys a request may be signed with now: the previous SECRET_KEY only while its grace lasts. */
function acceptedKeys(settings: Settings): AcceptedKey[] {
  const now = Date.now();
  return settings.keys.filter((key) => key.expiresAt === undefined || key.expiresAt > now);
}

/** The named keys and their policies as text, to tell whether a reload changed them. */
function namedKeysText(settings: Settings): string {
  return JSON.stringify(
    settings.keys
      .filter((key) => key.name !== DEFAULT_KEY_NAME)
      .map(({name, secret, policy}) => [name, secret, policy && {...policy, allow: policy.allow?.map((pattern) => pattern.source), env: policy.env && [...policy.env]}]),
  );
}

function notRun(error: string): CommandResult {
  return {stdout: '', stderr: '', exitCode: null, signal: null, timedOut: false, truncated: false, durationMs: 0, stdoutBytes: 0, stderrBytes: 0, error};
}

/** A queued job's result when it is cancelled before it started. */
function cancelledInQueue(): CommandResult {
  return {stdout: '', stderr: 'sidecar: cancelled before it started\n', exitCode: null, signal: null, timedOut: false, truncated: false, durationMs: 0, stdoutBytes: 0, stderrBytes: 0, ended: 'cancelled'};
}

function jobLimits(settings: Settings): JobStoreLimits {
  return {count: settings.JOB_HISTORY, seconds: settings.JOB_HISTORY_SECONDS, outputBytes: settings.JOB_OUTPUT_KEPT};
}

export type CancelOutcome = 'cancelling' | 'finished' | 'not-found';
const SAFE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

async function checkWorkdir(workdir: string): Promise<void> {
  // fs.promises loads on the first request with a workdir, not at start.
  const {stat, access} = fs.promises;
  let info;
  try {
    info = await stat(workdir);
  } catch {
    throw new Refusal(400, 'bad-request', `workdir ${workdir} does not exist`);
  }
  if (!info.isDirectory()) throw new Refusal(400, 'bad-request', `workdir ${workdir} is not a directory`);
  try {
    await access(workdir, fs.constants.X_OK);
  } catch {
    throw new Refusal(400, 'bad-request', `workdir ${workdir} cannot be entered by user ${userInfo().username}`);
  }
}

/** The sidecar daemon: listeners on every bind address, signed `POST /shell`, the command queue. */
export class Daemon {
  readonly bus: EventBus;
  readonly counters: Counters = emptyCounters();
  readonly startedAt = Date.now();
  #settings: Settings;
  readonly #listeners = new Map<string, Listener>();
  readonly #replay = new ReplayCache();
  readonly #replayJournal: ReplayJournal | undefined;
  readonly #bodyBudget: BodyBudget;
  readonly #running = new Map<string, RunningJob>();
  readonly jobs: JobStore;
  readonly #followers = new FollowerSlots();
  readonly #queue: Job[] = [];
  readonly #callbacks = new Set<Promise<unknown>>();
  readonly #callbackAbort = new AbortController();
  readonly #idleWaiters = new Set<() => void>();
  readonly #baseEnv: Record<string, string>;
  #helper: SpawnHelper | undefined;
  #helperQuickExits = 0;
  #helperRetry: NodeJS.Timeout | undefined;
  readonly #outputBudget: OutputBudget;
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
    this.#outputBudget = new OutputBudget(settings.OUTPUT_BUDGET);
    this.jobs = new JobStore(jobLimits(settings), (error) => this.#reportInternalError('job output follower', error));
    this.#commandRunner = options.commandRunner ?? (process.env.DFFS_COMMAND_RUNNER || undefined);
    this.bus = new EventBus(options.historySize);
    this.bus.subscribe((event) => countEvent(this.counters, event));
    // Commands run as the daemon's user, or, through the command runner, as the one the unit names.
    const user = this.#commandRunner && process.env.DFFS_COMMAND_USER
      ? {username: process.env.DFFS_COMMAND_USER, homedir: process.env.DFFS_COMMAND_HOME ?? '/'}
      : userInfo();
    this.#baseEnv = {PATH: SAFE_PATH, HOME: user.homedir, LANG: 'C.UTF-8', USER: user.username, LOGNAME: user.username};
    if (options.stateDirectory) {
      this.#runningFile = new RunningFile(options.stateDirectory, () =>
        [...this.#running.values()].map(({job, command, startedAt}) => ({
          jobId: job.id,
          command: job.request.command,
          ...(command.pid === undefined ? {} : {pid: command.pid}),
          startedAt: isoTime(startedAt),
        })),
      );
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
    daemon.#warnOfWeakKeys();
    const lost = daemon.#runningFile?.takePrevious() ?? [];
    if (lost.length > 0) {
      daemon.bus.emit({type: 'commands-lost', jobIds: lost.map((entry) => entry.jobId), commands: lost.map((entry) => entry.command), pids: lost.flatMap((entry) => entry.pid ?? [])});
    }
    const now = Math.floor(Date.now() / 1000);
    daemon.#replayJournal?.load(daemon.#replay, now - settings.TIMESTAMP_TOLERANCE, now);
    daemon.#startHelper();
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

  /** Nonces remembered against replays now: a gauge of /metrics. */
  get replayCacheSize(): number {
    return this.#replay.size;
  }

  listenerStatus(): ListenerStatus[] {
    return [...this.#listeners.values()].map((listener) => listener.status());
  }

  status(): DaemonStatus {
    return {
      version: VERSION,
      pid: process.pid,
      startedAt: isoTime(this.startedAt),
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      configPath: this.options.configPath,
      bind: this.listenerStatus(),
      secret: {
        configured: this.#settings.secretKey !== undefined,
        ...(this.#settings.secretCreatedAt ? {createdAt: this.#settings.secretCreatedAt} : {}),
        ...(acceptedKeys(this.#settings).some((key) => key.expiresAt !== undefined) ? {oldKeyAcceptedUntil: this.#settings.oldSecret?.expiresAt} : {}),
      },
      counters: structuredClone(this.counters),
      running: [...this.#running.values()].map(({job, command, startedAt}) => ({
        jobId: job.id,
        command: job.request.command,
        pid: command.pid,
        startedAt: isoTime(startedAt),
        remote: job.remote,
        key: job.key,
      })),
      queued: this.#queue.length,
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
    const previous = this.#settings;
    const changed = (Object.keys(next) as (keyof Settings)[]).filter(
      (key) => key !== 'binds' && key !== 'keys' && JSON.stringify(next[key]) !== JSON.stringify(previous[key]),
    );
    if (namedKeysText(next) !== namedKeysText(previous)) changed.push('keys');
    this.#settings = next;
    this.#tls = tlsMaterial;
    this.#allowsSource = next.allowFrom && sourceMatcher(next.allowFrom);
    for (const listener of this.#listeners.values()) if (tlsMaterial) listener.updateTls(tlsMaterial);
    this.#bodyBudget.total = next.BODY_BUDGET;
    this.#outputBudget.total = next.OUTPUT_BUDGET;
    this.jobs.limits = jobLimits(next);
    if (!this.#stopping) this.#applyBinds();
    const names: Partial<Record<keyof Settings, string>> = {secretKey: 'SECRET_KEY', bindText: 'BIND', oldSecret: 'OLD_SECRET_KEY', secretCreatedAt: 'SECRET_CREATED_AT', tls: 'TLS_CERT', allowFrom: 'ALLOW_FROM', keys: 'KEYS', metricsBind: 'METRICS_BIND'};
    this.bus.emit({type: 'config-reloaded', changed: changed.map((key) => names[key] ?? key)});
    this.#warnOfWeakKeys();
  }

  #applyBinds(): void {
    const wanted = new Map(this.#settings.binds.map((address) => [address.label, address]));
    for (const [label, listener] of this.#listeners) {
      if (!wanted.has(label)) {
        void listener.close();
        this.#listeners.delete(label);
      }
    }
    for (const [label, address] of wanted) {
      const existing = this.#listeners.get(label);
      if (existing && existing.state !== 'failed') continue;
      if (existing) void existing.close();
      this.#listeners.set(
        label,
        new Listener(
          address,
          {
            request: (req, res) => this.#handle(req, res),
            checkContinue: (req, res) => this.#handleExpectContinue(req, res),
            maxConnections: () => this.#settings.MAX_CONNECTIONS,
            allowsSource: (address) => !this.#allowsSource || this.#allowsSource(address),
            sourceRefused: (address) =>
              this.bus.emit({type: 'request-refused', remote: address, status: 403, reason: 'source-not-allowed', message: `a TLS connection from ${address} was closed: ALLOW_FROM does not cover it`}),
            tooManyConnections: (req, res) =>
              this.#refuse(req, res, this.#sourceRefusal(req) ?? new Refusal(503, 'too-many-connections', `too many connections to ${label} (MAX_CONNECTIONS ${this.#settings.MAX_CONNECTIONS}); try again later`)),
          },
          this.bus,
          this.#tls,
        ),
      );
    }
  }

  /**
   * The dffs-spawn helper, started again at once when it stops; Node's child_process where it
   * cannot run (missing, or stopping as soon as it starts), which the log says at warn level.
   */
  #startHelper(reason?: string): void {
    if (this.#commandRunner) {
      const runner: SpawnHelper = new SpawnHelper(this.#commandRunner, {
        onExit: (exitReason) => this.#helperExited(runner, exitReason),
        onHandlerError: (error) => this.#reportInternalError('spawner event', error),
      }, 'socket');
      this.#helper = runner;
      this.bus.emit({type: 'spawner', spawner: 'command-runner', path: this.#commandRunner, ...(reason ? {reason} : {})});
      return;
    }
    const path = this.options.spawnHelper === null ? undefined : (this.options.spawnHelper ?? findSpawnHelper());
    if (path === undefined) {
      this.bus.emit({type: 'spawner', spawner: 'node', reason: reason ?? 'no dffs-spawn helper beside the program (no C compiler at build time?): commands fork the daemon'});
      return;
    }
    const helper: SpawnHelper = new SpawnHelper(path, {
      onExit: (exitReason) => this.#helperExited(helper, exitReason),
      onHandlerError: (error) => this.#reportInternalError('spawner event', error),
    });
    this.#helper = helper;
    this.bus.emit({type: 'spawner', spawner: 'dffs-spawn', path, pid: helper.pid, ...(reason ? {reason} : {})});
  }

  #reportInternalError(where: string, error: unknown): void {
    this.bus.emit({type: 'internal-error', where, error: (error as Error)?.stack ?? String(error)});
  }

  #helperExited(helper: SpawnHelper, reason: string): void {
    if (this.#helper === helper) this.#helper = undefined;
    if (this.#stopping) return;
    this.#helperQuickExits = Date.now() - helper.startedAt < HELPER_QUICK_EXIT_MS ? this.#helperQuickExits + 1 : 0;
    if (this.#commandRunner && this.#helperQuickExits >= HELPER_QUICK_EXITS) {
      // No other way to start commands: they fail, saying why, until the runner answers again.
      this.bus.emit({type: 'spawner', spawner: 'none', reason: `the command runner stopped ${HELPER_QUICK_EXITS} times within ${HELPER_QUICK_EXIT_MS} ms (${reason}): commands cannot start; trying again in ${RUNNER_RETRY_MS / 1000} s`});
      this.#helperRetry = setTimeout(() => this.#startHelper('trying the command runner again'), RUNNER_RETRY_MS);
      return;
    }
    if (this.#helperQuickExits >= HELPER_QUICK_EXITS) {
      this.bus.emit({
        type: 'spawner',
        spawner: 'node',
        reason: `${helper.path} stopped ${HELPER_QUICK_EXITS} times within ${HELPER_QUICK_EXIT_MS} ms of its start (${reason}): commands fork the daemon; trying the helper again in ${HELPER_RETRY_MS / 1000} s`,
      });
      this.#helperRetry = setTimeout(() => {
        this.#helperQuickExits = 0;
        this.#startHelper('trying the helper again');
      }, HELPER_RETRY_MS);
      return;
    }
    this.#startHelper(`the previous helper stopped: ${reason}`);
  }

  #refuse(req: IncomingMessage, res: ServerResponse, refusal: Refusal, headers: Record<string, string> = {}): void {
    this.bus.emit({
      type: 'request-refused',
      remote: req.socket.remoteAddress ?? '',
      status: refusal.status,
      reason: refusal.reason,
      message: refusal.message,
      ...(refusal.key ? {key: refusal.key} : {}),
    });
    const text = JSON.stringify({ok: false, message: refusal.message, reason: refusal.reason});
    // A client still sending its body reads the answer once it is done; the connection then closes.
    answerAndLinger(req, res, refusal.status, text, headers);
  }

  /** Why a request other than the greeting (GET or HEAD /) is refused by its method and path; undefined for POST /shell and the job routes. */
  #routeRefusal(req: IncomingMessage): {refusal: Refusal; headers?: Record<string, string>} | undefined {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path === '/') {
      return {refusal: new Refusal(405, 'method-not-allowed', `${req.method} is not allowed on /: use GET`), headers: {Allow: 'GET, HEAD'}};
    }
    const route = jobRoute(req.method ?? '', path);
    if (route instanceof RouteMismatch) {
      return {refusal: new Refusal(route.status, route.status === 404 ? 'not-found' : 'method-not-allowed', route.message), ...(route.allow ? {headers: {Allow: route.allow}} : {})};
    }
    if (route) return undefined;
    if (path !== SHELL_PATH) return {refusal: new Refusal(404, 'not-found', `no such path ${path.slice(0, 200)}: commands go to POST /shell, jobs are under /jobs`)};
    if (req.method !== 'POST') return {refusal: new Refusal(405, 'method-not-allowed', `${req.method} is not allowed on /shell: use POST`), headers: {Allow: 'POST'}};
    return undefined;
  }

  #isGreeting(req: IncomingMessage): boolean {
    return (req.url ?? '/').split('?', 1)[0] === '/' && (req.method === 'GET' || req.method === 'HEAD');
  }

  /** A key kept from the original Sidecar's config may be shorter than new keys may be: said at each start and reload. */
  #warnOfWeakKeys(): void {
    for (const key of this.#settings.keys) {
      if (key.expiresAt !== undefined || key.secret.length >= MIN_SECRET_LENGTH) continue;
      const name = key.name === DEFAULT_KEY_NAME ? 'SECRET_KEY' : `key ${key.name}`;
      const rotate = key.name === DEFAULT_KEY_NAME ? 'sudo dffs-ctl secret rotate' : `sudo dffs-ctl secret rotate --name ${key.name}`;
      this.bus.emit({type: 'secret-weak', key: key.name, message: `${name} has ${key.secret.length} characters, fewer than ${MIN_SECRET_LENGTH}: replace it with "${rotate}" and give the new key to the Func connector that uses it`});
    }
  }

  /** A request from an address outside ALLOW_FROM, refused before anything else is looked at. */
  #sourceRefusal(req: IncomingMessage): Refusal | undefined {
    const remote = req.socket.remoteAddress ?? '';
    if (!this.#allowsSource || this.#allowsSource(remote)) return undefined;
    // The config's path is for the log, not for a client from outside.
    return new Refusal(403, 'source-not-allowed', `requests from ${remote} are not allowed: the sidecar's ALLOW_FROM does not cover it`);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const notAllowed = this.#sourceRefusal(req);
    if (notAllowed) {
      this.#refuse(req, res, notAllowed);
      return;
    }
    if (this.#isGreeting(req)) {
      const text = greeting();
      res.writeHead(200, {'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text)});
      res.end(req.method === 'HEAD' ? undefined : text);
      return;
    }
    const routing = this.#routeRefusal(req);
    if (routing) {
      this.#refuse(req, res, routing.refusal, routing.headers);
      return;
    }
    try {
      const [path, query] = (req.url ?? '/').split('?', 2);
      if (path === SHELL_PATH) this.#shell(req, res);
      else this.#job(req, res, jobRoute(req.method ?? '', path) as JobRoute, path, new URLSearchParams(query));
    } catch (error) {
      this.#answerError(req, res, error);
    }
  }

  /**
   * `Expect: 100-continue` (curl's way with large bodies): a request that would be refused is
   * refused before its body is sent; any other is told to go on, and handled as usual.
   */
  #handleExpectContinue(req: IncomingMessage, res: ServerResponse): void {
    const routing = this.#isGreeting(req) ? undefined : this.#routeRefusal(req);
    let refusal = this.#sourceRefusal(req) ?? routing?.refusal;
    if (!refusal && !this.#isGreeting(req)) {
      try {
        this.#checkBeforeBody(req);
      } catch (error) {
        if (!(error instanceof Refusal)) throw error;
        refusal = error;
      }
    }
    if (!refusal) {
      res.writeContinue();
      this.#handle(req, res);
      return;
    }
    this.bus.emit({type: 'request-refused', remote: req.socket.remoteAddress ?? '', status: refusal.status, reason: refusal.reason, message: refusal.message});
    res.shouldKeepAlive = false;
    sendJson(res, refusal.status, {ok: false, message: refusal.message, reason: refusal.reason}, routing?.headers);
  }

  /** A refusal, or an internal error, thrown on the way from a request to its command. */
  #answerError(req: IncomingMessage, res: ServerResponse, error: unknown): void {
    if (error instanceof Refusal) this.#refuse(req, res, error);
    else {
      this.#reportInternalError(`${req.method} ${(req.url ?? '/').split('?', 1)[0].slice(0, 100)}`, error);
      sendJson(res, 500, {ok: false, message: `internal error: ${(error as Error).message}`});
    }
  }

  /** What can be refused from the headers alone; returns the auth headers, checked for format. */
  #checkBeforeBody(req: IncomingMessage): Extract<AuthHeaderCheck, {ok: true}> {
    const settings = this.#settings;
    if (this.#stopping) throw new Refusal(503, 'shutting-down', 'the sidecar is shutting down; try again when it is back');
    if (settings.keys.length === 0) {
      throw new Refusal(
        503,
        'no-secret',
        `no secret key is configured: set SECRET_KEY in ${this.options.configPath} (or run "sudo dffs-ctl secret rotate"), then reload the service`,
      );
    }
    const auth = checkAuthHeaders(req.headers);
    if (!auth.ok) throw new Refusal(401, auth.reason, auth.message);
    const declared = Number(req.headers['content-length']);
    if (declared > settings.BODY_LIMIT) throw this.#tooLarge();
    return auth;
  }

  #tooLarge(): Refusal {
    const limit = this.#settings.BODY_LIMIT;
    return new Refusal(413, 'body-too-large', `the body is larger than BODY_LIMIT (${limit} bytes): send a shorter command or raise BODY_LIMIT in ${this.options.configPath}`);
  }

  /**
   * From the headers to the command's start in as few turns of the event loop as the request
   * allows: one for a body that came with the headers, with no promise on the way (a workdir
   * is checked asynchronously). What is only bookkeeping happens after the command has started.
   */
  #shell(req: IncomingMessage, res: ServerResponse): void {
    const settings = this.#settings;
    this.#readSigned(req, res, 'POST', SHELL_PATH, (key, body) => {
      const request = this.#parse(settings, key, body);
      // Through the command runner, the daemon is not the user who must enter the workdir: the
      // runner says so if it cannot.
      if (request.workdir === undefined || this.#commandRunner) this.#accept(req, res, request, key.name);
      else {
        checkWorkdir(request.workdir)
          .then(() => this.#accept(req, res, request, key.name))
          .catch((error: unknown) => this.#answerError(req, res, error));
      }
    });
  }

  /** The body of a signed request, once its signature, timestamp and nonce are checked; a Refusal, thrown in `onVerified` or here, is answered. */
  #readSigned(req: IncomingMessage, res: ServerResponse, method: string, path: string, onVerified: (key: AcceptedKey, body: Buffer) => void): void {
    const settings = this.#settings;
    const auth = this.#checkBeforeBody(req);
    readBody(req, settings.BODY_LIMIT, this.#bodyBudget, (body) => {
      try {
        if (body === 'too-large') throw this.#tooLarge();
        if (body === 'over-budget') {
          throw new Refusal(
            503,
            'body-budget',
            `too many request bodies are being received at once (BODY_BUDGET ${this.#bodyBudget.total} bytes); try again later`,
          );
        }
        onVerified(this.#authenticate(settings, auth, method, path, body), body);
      } catch (error) {
        this.#answerError(req, res, error);
      }
    });
  }

  /** A signed request under /jobs: the body must be empty; a job the key may not see is not found. */
  #job(req: IncomingMessage, res: ServerResponse, route: JobRoute, path: string, query: URLSearchParams): void {
    this.#readSigned(req, res, req.method ?? 'GET', path, (key, body) => {
      if (body.length > 0) throw new Refusal(400, 'bad-request', `${req.method} ${path} takes no body: sign it with an empty one`, key.name);
      if (route.kind === 'list') {
        listJobs(res, this.jobs, key, query);
        return;
      }
      const record = this.jobs.get(route.id);
      if (!record || !keySees(key, record)) throw new Refusal(404, 'job-not-found', `no job ${route.id}: it is unknown, another key's, or older than the records kept (JOB_HISTORY)`, key.name);
      if (route.kind === 'show') sendJson(res, 200, {ok: true, message: '', data: record.view()});
      else if (route.kind === 'output') {
        const follow = query.get('follow') === '1' || query.get('follow') === 'true';
        const full = follow && !record.finished ? this.#followers.refusal(key.name) : undefined;
        if (full) throw new Refusal(429, 'too-many-followers', full, key.name);
        streamOutput(res, record, follow, follow ? this.#followers.take(key.name) : undefined);
      }
      else if (this.cancelJob(route.id, key.name) === 'finished') {
        throw new Refusal(409, 'job-finished', `job ${route.id} has already ended or is ending (${record.state}): there is nothing to cancel`, key.name);
      } else sendJson(res, 202, {ok: true, message: `job ${route.id} is being cancelled`, data: record.view()});
    });
  }

  /**
   * Cancels a job: one still queued ends at once; a running one as a timeout would (SIGTERM to its
   * whole tree, SIGKILL after KILL_GRACE), its result and callback saying cancelled.
   */
  cancelJob(id: string, by: string): CancelOutcome {
    const record = this.jobs.get(id);
    if (!record) return 'not-found';
    if (record.finished) return 'finished';
    const index = this.#queue.findIndex((job) => job.id === id);
    if (index >= 0) {
      const [job] = this.#queue.splice(index, 1);
      this.bus.emit({type: 'job-cancel', jobId: id, by, state: 'queued'});
      this.#finish(job, cancelledInQueue(), false);
      return 'cancelling';
    }
    const running = this.#running.get(id);
    if (!running) return 'finished';
    if (!running.command.cancel()) return 'finished';
    this.bus.emit({type: 'job-cancel', jobId: id, by, state: 'running'});
    return 'cancelling';
  }

  /** The signature, the timestamp and the nonce: the key that signed, or a Refusal. */
  #authenticate(settings: Settings, auth: Extract<AuthHeaderCheck, {ok: true}>, method: string, path: string, body: Buffer): AcceptedKey {
    const key = matchingKey(acceptedKeys(settings), auth.signature, method, path, auth.nonce, auth.timestamp, body);
    if (!key) {
      throw new Refusal(401, 'bad-signature', 'bad signature: check that the Func connector uses the secret key of this sidecar');
    }
    const timestamp = Number(auth.timestamp);
    const now = Math.floor(Date.now() / 1000);
    if (Math.abs(now - timestamp) > settings.TIMESTAMP_TOLERANCE || this.#replay.belowFloor(timestamp)) {
      throw new Refusal(
        401,
        'stale-timestamp',
        `stale timestamp: ${timestamp} is more than ${settings.TIMESTAMP_TOLERANCE} s from the sidecar's clock (${now}); check both clocks`,
      );
    }
    if (this.#replay.has(auth.nonce)) throw new Refusal(401, 'replayed-nonce', 'replayed nonce: every request needs a new X-Auth-Nonce');
    if (!this.#replay.add(auth.nonce, timestamp, now - settings.TIMESTAMP_TOLERANCE, now)) {
      throw new Refusal(503, 'replay-cache-full', `more than ${this.#replay.capacity} requests signed for this second or later are remembered; try again in a second`);
    }
    this.#replayJournal?.record(auth.nonce, timestamp, this.#replay);
    return key;
  }

  /** A verified body as the request to run, within what its key may run; or a Refusal. */
  #parse(settings: Settings, key: AcceptedKey, body: Buffer): ShellRequest {
    let request: ShellRequest;
    try {
      request = parseShellRequest(body, settings.COMMAND_TIMEOUT);
    } catch (error) {
      if (error instanceof BadRequest) throw new Refusal(400, 'bad-request', error.message);
      throw error;
    }
    try {
      return applyKeyPolicy(key, request, settings.COMMAND_TIMEOUT);
    } catch (error) {
      if (error instanceof NotAllowed) throw new Refusal(403, 'command-not-allowed', error.message, key.name);
      throw error;
    }
  }

  /** Starts or queues a verified request's command, or refuses it when the queue is full. */
  #accept(req: IncomingMessage, res: ServerResponse, request: ShellRequest, key: string): void {
    const startNow = this.#running.size < this.#settings.MAX_RUNNING;
    // Refused before anything is recorded: a flood of 429s leaves no trace in memory.
    if (!startNow && this.#queue.length >= this.#settings.MAX_QUEUED) {
      throw new Refusal(429, 'busy', `too many commands: ${this.#running.size} running and ${this.#queue.length} queued; try again later`);
    }
    const id = randomUUID();
    const remote = req.socket.remoteAddress ?? '';
    const job: Job = {
      id,
      record: this.jobs.add({
        id,
        key,
        remote,
        command: request.command,
        wait: request.wait,
        ...(request.workdir ? {workdir: request.workdir} : {}),
        ...(request.callbackURL ? {callback: request.callbackURL.origin} : {}),
        timeoutSeconds: request.timeoutSeconds ?? this.#settings.COMMAND_TIMEOUT,
      }),
      request,
      key,
      remote,
      finished: request.wait ? (result) => replyWithResult(res, id, result) : () => {},
    };
    // The answer to a request that does not wait goes out before the command starts.
    if (!request.wait) sendJson(res, 200, {ok: true, message: '', data: {stdout: '', stderr: '', jobId: job.id}});
    this.#submit(job, startNow);
  }

  /**
   * Starts the job, or queues it. The command starts before the job is logged as accepted:
   * logging is not on the path of its latency.
   */
  #submit(job: Job, startNow: boolean): void {
    if (startNow) this.#start(job);
    const {request} = job;
    this.bus.emit({
      type: 'request-accepted',
      jobId: job.id,
      remote: job.remote,
      key: job.key,
      command: request.command,
      wait: request.wait,
      ...(request.workdir ? {workdir: request.workdir} : {}),
      envKeys: Object.keys(request.envs),
      ...(request.callbackURL ? {callback: request.callbackURL.origin} : {}),
      timeoutSeconds: request.timeoutSeconds ?? this.#settings.COMMAND_TIMEOUT,
    });
    if (!startNow) {
      this.#queue.push(job);
      this.bus.emit({type: 'command-queued', jobId: job.id, queued: this.#queue.length});
    }
  }

  #start(job: Job): void {
    const settings = this.#settings;
    const command = runCommand(
      {
        command: job.request.command,
        workdir: job.request.workdir,
        // The mark goes last: a request cannot set it.
        env: {...this.#baseEnv, ...job.request.envs, [JOB_ID_VARIABLE]: job.id},
        jobId: job.id,
        timeoutMs: (job.request.timeoutSeconds ?? settings.COMMAND_TIMEOUT) * 1000,
        killGraceMs: settings.KILL_GRACE * 1000,
        outputLimit: settings.OUTPUT_LIMIT,
        outputBudget: this.#outputBudget,
        // Made below the runner's own cgroup, where it has one to give.
        ...(this.#commandRunner ? {cgroup: `job-${job.id}`, fallback: false} : {}),
        },
      this.#helper,
      {
        onStarted: (pid) => {
          job.record.pid = pid;
          this.bus.emit({type: 'command-started', jobId: job.id, pid});
          this.#runningFile?.changed();
        },
        onOutput: (stream, chunk) => job.record.output(stream, chunk),
        onFinished: (result) => this.#finish(job, result),
        onHandlerError: (error) => this.#reportInternalError('command event', error),
      },
    );
    const startedAt = Date.now();
    job.record.state = 'running';
    job.record.startedAt = startedAt;
    job.record.keptWhileRunning = (stream) => command.keptOutput(stream);
    this.#running.set(job.id, {job, command, startedAt});
    this.#runningFile?.changed();
  }

  /** `ran`: false for a job cancelled in the queue, which frees no place among the running. */
  #finish(job: Job, result: CommandResult, ran = true): void {
    this.#running.delete(job.id);
    // The waiting reply goes out first, the bookkeeping after it.
    job.finished(result);
    this.jobs.finish(job.record, result);
    this.#runningFile?.changed();
    // Everything but the output, which is never logged.
    const {stdout: _stdout, stderr: _stderr, ...outcome} = result;
    this.bus.emit({type: 'command-finished', jobId: job.id, ...outcome});
    if (job.request.callbackURL) this.#sendCallback(job, job.request.callbackURL, result);
    const next = ran ? this.#queue.shift() : undefined;
    if (next) this.#start(next);
    this.#notifyIfIdle();
  }

  #sendCallback(job: Job, url: URL, result: CommandResult): void {
    const body = new JsonBody(['{"kwargs":{"stdout":', {string: result.stdout}, ',"stderr":', {string: result.stderr}, '}}']);
    const headers = {
      'X-Sidecar-Job-Id': job.id,
      'X-Sidecar-Exit-Code': result.exitCode === null ? '' : String(result.exitCode),
      'X-Sidecar-Signal': result.signal ?? '',
      'X-Sidecar-Timed-Out': String(result.timedOut),
      ...(result.ended ? {'X-Sidecar-Ended': result.ended} : {}),
      'X-Sidecar-Truncated': String(result.truncated),
      'X-Sidecar-Duration-Ms': String(result.durationMs),
    };
    const delivery = deliverCallback(url, body, headers, {
      retries: this.#settings.CALLBACK_RETRIES,
      timeoutMs: this.#settings.CALLBACK_TIMEOUT * 1000,
      backoffMs: this.options.callbackBackoffMs ?? 1000,
      signal: this.#callbackAbort.signal,
      onAttempt: (attempt) => {
        const delivery = job.record.callback;
        if (delivery) {
          delivery.attempts.push({attempt: attempt.attempt, ok: attempt.ok, ...(attempt.status === undefined ? {} : {status: attempt.status}), ...(attempt.error ? {error: attempt.error} : {}), durationMs: attempt.durationMs});
          if (attempt.ok) delivery.outcome = 'delivered';
          else if (attempt.retryInMs === undefined) delivery.outcome = 'failed';
        }
        if (attempt.ok) {
          this.bus.emit({type: 'callback-delivered', jobId: job.id, attempt: attempt.attempt, status: attempt.status ?? 0, durationMs: attempt.durationMs});
        } else {
          this.bus.emit({
            type: 'callback-failed',
            jobId: job.id,
            attempt: attempt.attempt,
            error: attempt.error ?? 'failed',
            ...(attempt.retryInMs === undefined ? {} : {retryInMs: attempt.retryInMs}),
          });
        }
      },
    });
    this.#callbacks.add(delivery);
    void delivery.finally(() => {
      this.#callbacks.delete(delivery);
      this.#notifyIfIdle();
    });
  }

  #notifyIfIdle(): void {
    if (this.#running.size > 0 || this.#queue.length > 0 || this.#callbacks.size > 0) return;
    for (const wake of this.#idleWaiters) wake();
    this.#idleWaiters.clear();
  }

  /** Resolves when no command runs or waits and every callback is settled, or after `ms`; true if idle. */
  #waitIdle(ms: number): Promise<boolean> {
    if (this.#running.size === 0 && this.#queue.length === 0 && this.#callbacks.size === 0) return Promise.resolve(true);
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
    this.#abandonAll();
    await this.stop();
  }

  #abandonAll(): void {
    const abandoned = [...this.#running.values()].map(({job}) => job).concat(this.#queue.splice(0));
    if (abandoned.length > 0) {
      this.bus.emit({type: 'commands-abandoned', jobIds: abandoned.map((job) => job.id), commands: abandoned.map((job) => job.request.command)});
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

  async #drainAndClose(): Promise<void> {
    const drainMs = this.#settings.DRAIN_TIMEOUT * 1000;
    this.bus.emit({type: 'stopping', running: this.#running.size, queued: this.#queue.length, drainSeconds: this.#settings.DRAIN_TIMEOUT});
    const listeners = [...this.#listeners.values()];
    const closed = Promise.all(listeners.map((listener) => listener.close()));
    if (!(await this.#waitIdle(drainMs))) {
      this.#abandonAll();
      // Killed commands report back at once; a second is plenty.
      await this.#waitIdle(1000);
    }
    for (const listener of listeners) listener.server.closeAllConnections();
    await closed;
    clearTimeout(this.#helperRetry);
    this.#helper?.close();
    this.#runningFile?.writeNow();
    this.#replayJournal?.close();
    this.#stateLock?.release();
    this.bus.emit({type: 'stopped'});
  }
}
