/*
 * The daemon's side of systemd's notify protocol (sd_notify(3)), for the installed unit
 * (Type=notify, WatchdogSec=): READY=1 once it serves, STATUS= with what it serves and runs,
 * RELOADING=1 and READY=1 around a reload, STOPPING=1, and WATCHDOG=1 from the event loop itself,
 * so that systemd restarts a daemon whose loop stands still (stopped, or stuck).
 *
 * Node has no AF_UNIX datagram sockets, so the messages go through `dffs-spawn --notify`, a child
 * that sends each one as a datagram to $NOTIFY_SOCKET; the unit's NotifyAccess=all lets systemd
 * take them from a process other than the main one. It only relays: the pings come from here, so
 * they stop when this loop stops. Without NOTIFY_SOCKET (a personal serve) nothing is started.
 */
import {spawn, type ChildProcessByStdio} from 'node:child_process';
import type {Readable, Writable} from 'node:stream';
import type {Daemon} from './daemon.js';
import {findSpawnHelper} from './spawn-helper.js';
import type {DaemonStatus} from '../protocol/control-messages.js';

/** STATUS= is for people reading `systemctl status`: a datagram a second at most, whatever the traffic. */
const STATUS_EVERY_MS = 1000;
/**
 * A notifier that ends sooner than this after its start cannot send (no socket there): it is not
 * started again, and the watchdog restarts the daemon. One that ran longer was killed or crashed:
 * another is started at once, or the watchdog would restart a daemon that serves well.
 */
const NOTIFIER_QUICK_EXIT_MS = 1000;

/** How often to send WATCHDOG=1: at half the time systemd allows; undefined when it expects none from this process. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isSafeInteger(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

/** The STATUS= text: `serving 127.0.0.1:8099; 2 running, 0 queued`. */
export function statusText(status: DaemonStatus, stopping: boolean): string {
  const addresses = (state: string) => status.bind.filter((bind) => bind.state === state).map((bind) => bind.address).join(', ');
  const serving = addresses('listening');
  const waiting = addresses('waiting');
  const binds = stopping ? 'stopping' : `serving ${serving || 'no address'}${waiting ? `, waiting for ${waiting}` : ''}`;
  return `${binds}; ${status.running.length} running, ${status.queued} queued`;
}

export interface NotifyOptions {
  /** Where NOTIFY_SOCKET and WATCHDOG_* are read from; they are removed from it. */
  env?: NodeJS.ProcessEnv;
  /** The dffs-spawn program, if it is there; default, the one beside the program. */
  helper?: string;
}

/**
 * Starts telling systemd about `daemon`, which serves already: sends READY=1 at once. Returns
 * undefined when systemd listens for none of it (no NOTIFY_SOCKET), or when there is no helper
 * to send it with (which the daemon's log then says).
 */
export function notifySystemd(daemon: Daemon, options: NotifyOptions = {}): SystemdNotifier | undefined {
  const env = options.env ?? process.env;
  const socket = env.NOTIFY_SOCKET;
  const watchdogMs = watchdogIntervalMs(env);
  // As sd_notify(3) with unset_environment: nothing the daemon starts later is taken for it.
  delete env.NOTIFY_SOCKET;
  delete env.WATCHDOG_USEC;
  delete env.WATCHDOG_PID;
  if (!socket) return undefined;
  const helper = findSpawnHelper(options.helper);
  if (helper === undefined) {
    daemon.bus.emit({type: 'systemd-notify', error: 'no dffs-spawn helper beside the program (no C compiler at build time?), so systemd cannot be told that the daemon is ready: a Type=notify unit times out its start'});
    return undefined;
  }
  return new SystemdNotifier(daemon, helper, socket, watchdogMs);
}

/** The daemon's messages to systemd, through one `dffs-spawn --notify` child, until the daemon has stopped. */
export class SystemdNotifier {
  #child!: ChildProcessByStdio<Writable, null, Readable>;
  readonly #unsubscribe: () => void;
  readonly #watchdog: NodeJS.Timeout | undefined;
  #statusTimer: NodeJS.Timeout | undefined;
  #lastStatus = '';
  #lastStatusAt = 0;
  #stopping = false;
  #closed = false;

  constructor(
    private readonly daemon: Daemon,
    private readonly helper: string,
    private readonly socket: string,
    private readonly watchdogMs: number | undefined,
  ) {
    this.#start();
    this.#unsubscribe = daemon.bus.subscribe((event) => {
      if (event.type === 'stopping') {
        this.#stopping = true;
        this.#send(`STOPPING=1\n${this.#status()}`);
      } else if (event.type === 'stopped') {
        this.close();
      } else {
        // Any event may change what STATUS= says; it goes only when it did.
        this.#statusMayHaveChanged();
      }
    });
    this.#watchdog = watchdogMs === undefined ? undefined : setInterval(() => this.#send('WATCHDOG=1'), watchdogMs).unref();
    this.ready();
  }

  /** READY=1: serving (at start, and again once a reload is done). */
  ready(): void {
    this.#send(`READY=1\n${this.#status()}`);
  }

  /** RELOADING=1: the config is being read again; ready() follows. */
  reloading(): void {
    this.#send('RELOADING=1');
  }

  /** Stops sending; the helper exits when its stdin closes. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    clearInterval(this.#watchdog);
    clearTimeout(this.#statusTimer);
    this.#child.stdin.end();
  }

  #status(text = statusText(this.daemon.status(), this.#stopping)): string {
    this.#lastStatus = text;
    this.#lastStatusAt = performance.now();
    return `STATUS=${text}`;
  }

  #statusMayHaveChanged(): void {
    if (this.#statusTimer || this.#closed) return;
    // Later, not now: the event may come before the change it tells of (a command counted as running).
    const wait = Math.max(0, this.#lastStatusAt + STATUS_EVERY_MS - performance.now());
    this.#statusTimer = setTimeout(() => {
      this.#statusTimer = undefined;
      const text = statusText(this.daemon.status(), this.#stopping);
      if (text !== this.#lastStatus) this.#send(this.#status(text));
    }, wait).unref();
  }

  #send(message: string): void {
    if (!this.#closed) this.#child.stdin.write(`${message}\0`);
  }

  #start(): void {
    const {helper, watchdogMs} = this;
    const startedAt = performance.now();
    // A session of its own, as the spawn helper: a terminal's Ctrl-C is the daemon's to handle.
    const child = spawn(helper, ['--notify'], {env: {NOTIFY_SOCKET: this.socket}, stdio: ['pipe', 'ignore', 'pipe'], detached: true});
    this.#child = child;
    child.stderr.setEncoding('utf8');
    let stderr = '';
    child.stderr.on('data', (text: string) => (stderr = (stderr + text).slice(-2000)));
    // Its end is reported by 'error' or 'close'.
    child.stdin.on('error', () => {});
    child.on('error', (error) => this.#gone(child, `cannot run ${helper} --notify: ${error.message}`, true));
    child.on('close', (code, signal) => {
      this.#gone(child, `${helper} --notify exited (${signal ?? `code ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`, performance.now() - startedAt < NOTIFIER_QUICK_EXIT_MS);
    });
    this.daemon.bus.emit({type: 'systemd-notify', helper, pid: child.pid, ...(watchdogMs === undefined ? {} : {watchdogMs})});
  }

  #gone(child: ChildProcessByStdio<Writable, null, Readable>, reason: string, quick: boolean): void {
    if (this.#closed || child !== this.#child) return;
    if (quick) {
      this.close();
      this.daemon.bus.emit({type: 'systemd-notify', error: `${reason}; systemd hears nothing more from the daemon (its watchdog restarts it)`});
      return;
    }
    this.daemon.bus.emit({type: 'systemd-notify', error: `${reason}; starting another`});
    this.#start();
    // What the lost one may not have sent: where the daemon stands, and what it serves.
    this.#send(`${this.#stopping ? 'STOPPING=1' : 'READY=1'}\n${this.#status()}`);
  }
}
