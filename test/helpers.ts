import {execa, type ResultPromise} from 'execa';
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {createServer, type IncomingHttpHeaders} from 'node:http';
import {createServer as createNetServer, type AddressInfo} from 'node:net';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {after} from 'node:test';
import {fileURLToPath} from 'node:url';
import type {StoredConfig} from '../src/config/config.js';
import {Daemon} from '../src/daemon/daemon.js';
import type {SidecarEvent} from '../src/daemon/events.js';
import {signRequest} from '../src/protocol/signature.js';

export const TEST_SECRET = 'test-secret-0123456789abcdef-XYZ';

/** A temporary directory removed when the test file ends. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dffs-test-'));
  after(() => rmSync(dir, {recursive: true, force: true}));
  return dir;
}

export function writeTestConfig(dir: string, config: StoredConfig, name = 'config.json'): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(config), {mode: 0o600});
  return path;
}

export interface TestDaemon {
  daemon: Daemon;
  url: string;
  configPath: string;
  events: SidecarEvent[];
}

/** How a test daemon starts commands: by default as the daemon does, through the dffs-spawn helper. */
export interface TestSpawner {
  spawnHelper?: string | null;
  /** A command runner's socket, as the installed service has. */
  commandRunner?: string;
}

/** A real daemon on a loopback port chosen by the kernel, stopped when the test file ends. */
export async function startTestDaemon(config: StoredConfig = {}, callbackBackoffMs = 50, spawner: TestSpawner = {}): Promise<TestDaemon> {
  const configPath = writeTestConfig(tempDir(), {BIND: '127.0.0.1:0', SECRET_KEY: TEST_SECRET, DRAIN_TIMEOUT: 5, ...config});
  const events: SidecarEvent[] = [];
  const daemon = await Daemon.start({configPath, callbackBackoffMs, ...spawner}, (created) => created.bus.subscribe((event) => events.push(event)));
  after(() => daemon.stopNow());
  const port = daemon.listenerStatus()[0].port;
  return {daemon, url: `${daemon.settings.binds[0].tls ? 'https' : 'http'}://127.0.0.1:${port}`, configPath, events};
}

export interface SignedPostOptions {
  secret?: string;
  path?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** POSTs a body to /shell signed as DataFlux Func signs it. */
export async function signedPost(baseUrl: string, body: unknown, options: SignedPostOptions = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const path = options.path ?? '/shell';
  const res = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: {'Content-Type': 'application/json', ...signRequest(options.secret ?? TEST_SECRET, 'POST', path, text), ...options.headers},
    body: text,
    signal: options.signal,
  });
  const raw = await res.text();
  let json: any;
  try {
    json = JSON.parse(raw);
  } catch {
    json = undefined;
  }
  return {status: res.status, json, raw, headers: res.headers};
}

export interface ReceivedCallback {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A local HTTP receiver for callbacks; answers with the statuses given, then 200. */
export async function startCallbackReceiver(statuses: number[] = []) {
  const received: ReceivedCallback[] = [];
  const waiters: (() => void)[] = [];
  const queue = [...statuses];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({headers: req.headers, body: Buffer.concat(chunks).toString('utf8')});
      res.writeHead(queue.shift() ?? 200).end('{}');
      waiters.splice(0).forEach((wake) => wake());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const {port} = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api/v1/al/auln-sidecar-callback`,
    received,
    async waitFor(count: number, timeoutMs = 15_000): Promise<ReceivedCallback[]> {
      const deadline = Date.now() + timeoutMs;
      while (received.length < count) {
        if (Date.now() > deadline) throw new Error(`expected ${count} callbacks, got ${received.length}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
      return received;
    },
  };
}

/** Polls until `check` returns a value other than undefined, or fails after the timeout. */
export async function eventually<T>(check: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A loopback port that was free a moment ago: for a process that must be told its port in advance. */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const {port} = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const RUN_JS = fileURLToPath(new URL('../bin/run.js', import.meta.url));

export interface ServeProcess {
  daemon: ResultPromise;
  pid: number;
  url: string;
  /** Its JSON log lines so far, parsed. */
  events: {event: string; [key: string]: unknown}[];
}

/**
 * `serve` in a process of its own on a fixed loopback port (its memory measured apart from the
 * test's), killed when the test file ends. `shell` wraps its start, as in `exec "$@" 2>&-`;
 * `detached`, in a process group of its own, as in a terminal of its own.
 */
export async function startServeProcess(config: StoredConfig, port: number, shell = 'exec "$@"', detached = false): Promise<ServeProcess> {
  const directory = tempDir();
  const configPath = writeTestConfig(directory, {BIND: `127.0.0.1:${port}`, SECRET_KEY: TEST_SECRET, ...config});
  const events: ServeProcess['events'] = [];
  const daemon = execa('sh', ['-c', shell, 'sh', process.execPath, RUN_JS, 'serve', '--config', configPath, '--no-dashboard'], {
    env: {XDG_RUNTIME_DIR: directory, XDG_STATE_HOME: directory},
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'inherit',
    reject: false,
    buffer: false,
    detached,
  });
  let partial = '';
  daemon.stdout?.on('data', (data: Buffer) => {
    const lines = (partial + data.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) events.push(JSON.parse(line));
  });
  after(async () => {
    daemon.kill('SIGKILL');
    await daemon;
  });
  const tls = String(config.BIND ?? '').startsWith('https://');
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  await eventually(() => (events.some((event) => event.event === 'listening') ? true : undefined), 10_000, 'serve to listen');
  return {daemon, url, events, pid: Number(events.find((event) => event.event === 'started')?.pid)};
}

/** A process's resident memory now (VmRSS) or at its peak (VmHWM), in MiB. */
export function statusMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}
