/**
 * Prometheus metrics on METRICS_BIND: GET /metrics in the text format, on a plain HTTP listener of
 * its own, so that a scraper needs no signature and takes no place among BIND's connections, and
 * nothing else is served there. prom-client is loaded only when METRICS_BIND is set (at start or
 * by a reload): a daemon without it loads none of it. The counters follow the daemon's event bus
 * from the moment the endpoint is made (before the first request when serve makes it), and the
 * gauges are read from the daemon at each scrape. No label value is ever a command, a working
 * directory, a remote address or a secret: only fixed words, refusal reasons and key names.
 */
import type {IncomingMessage, Server, ServerResponse} from 'node:http';
import type {AddressInfo} from 'node:net';
import type {Registry} from 'prom-client';
import type {BindAddress} from '../config/bind.js';
import {http} from '../common/node-builtins.js';
import {VERSION} from '../protocol/version.js';
import type {Daemon} from './daemon.js';
import type {SidecarEvent, SidecarEventBody} from './events.js';

type CommandFinished = Extract<SidecarEventBody, {type: 'command-finished'}>;

const COMMAND_RESULTS = ['succeeded', 'failed', 'timed_out', 'cancelled', 'spawner_stopped', 'not_started'] as const;
const CALLBACK_RESULTS = ['delivered', 'retry', 'failed'] as const;
/** From a quick `true` to the longest COMMAND_TIMEOUT's hours, in seconds. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14_400, 86_400];
/** prom-client's gauges of totals named `_total`, which Prometheus keeps for counters (promtool refuses them); each is the sum of its labelled twin. */
const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];
/** Enough for a few scrapers; more are closed at once rather than take the daemon's descriptors. */
const MAX_SCRAPE_CONNECTIONS = 16;
/** One collection serves every scrape within this time: a flood of scrapes costs one a second. */
const SCRAPE_REUSE_MS = 1000;

function commandResult(event: CommandFinished): (typeof COMMAND_RESULTS)[number] {
  if (event.ended === 'cancelled') return 'cancelled';
  if (event.ended === 'spawner-stopped') return 'spawner_stopped';
  if (event.error !== undefined) return 'not_started';
  if (event.timedOut) return 'timed_out';
  return event.exitCode === 0 ? 'succeeded' : 'failed';
}

interface Metrics {
  registry: Registry;
  record(event: SidecarEvent): void;
}

/** The registry with every metric of the daemon, and what folds one event into its counters. */
async function createMetrics(daemon: Daemon): Promise<Metrics> {
  // CommonJS: its exports are on `default`, in Node and in the esbuild bundle alike.
  const {default: prom} = await import('prom-client');
  const registry = new prom.Registry();
  const registers = [registry];
  prom.collectDefaultMetrics({register: registry});
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);

  new prom.Gauge({name: 'dffs_build_info', help: 'The sidecar\'s version and the Node.js it runs on; always 1.', labelNames: ['version', 'node_version'], registers}).set(
    {version: VERSION, node_version: process.version},
    1,
  );
  const requests = new prom.Counter({
    name: 'dffs_requests_total',
    help: 'Requests by outcome: accepted (a command taken to run or queue) or refused, with the reason the log gives.',
    labelNames: ['outcome', 'reason'],
    registers,
  });
  requests.inc({outcome: 'accepted'}, 0);
  const commands = new prom.Counter({name: 'dffs_commands_total', help: 'Finished commands by result.', labelNames: ['result'], registers});
  for (const result of COMMAND_RESULTS) commands.inc({result}, 0);
  const duration = new prom.Histogram({name: 'dffs_command_duration_seconds', help: 'How long started commands ran, whatever their result.', buckets: DURATION_BUCKETS, registers});
  const callbacks = new prom.Counter({
    name: 'dffs_callback_attempts_total',
    help: 'Callback attempts by result: delivered, failed with a retry to come (retry), or failed for good (failed).',
    labelNames: ['result'],
    registers,
  });
  for (const result of CALLBACK_RESULTS) callbacks.inc({result}, 0);
  new prom.Gauge({
    name: 'dffs_commands_running',
    help: 'Commands running now.',
    registers,
    collect() {
      this.set(daemon.status().running.length);
    },
  });
  new prom.Gauge({
    name: 'dffs_commands_queued',
    help: 'Commands waiting for a place among MAX_RUNNING now.',
    registers,
    collect() {
      this.set(daemon.status().queued);
    },
  });
  new prom.Gauge({
    name: 'dffs_replay_cache_entries',
    help: 'Nonces remembered against replays now.',
    registers,
    collect() {
      this.set(daemon.replayCacheSize);
    },
  });
  new prom.Gauge({
    name: 'dffs_key_age_seconds',
    help: 'Seconds since each key was set, for the keys whose creation time the config has (default is SECRET_KEY).',
    labelNames: ['key'],
    registers,
    collect() {
      this.reset();
      const now = Date.now();
      // A rotation's previous key (expiresAt) is on its way out: the age is the current one's.
      for (const key of daemon.settings.keys) {
        if (key.createdAt && key.expiresAt === undefined) this.set({key: key.name}, Math.max(0, Math.floor((now - Date.parse(key.createdAt)) / 1000)));
      }
    },
  });

  // Started commands only: one cancelled in the queue or never started has no run to time.
  const started = new Set<string>();
  const record = (event: SidecarEvent): void => {
    switch (event.type) {
      case 'request-accepted':
        requests.inc({outcome: 'accepted'});
        break;
      case 'request-refused':
        requests.inc({outcome: 'refused', reason: event.reason});
        break;
      case 'command-started':
        started.add(event.jobId);
        break;
      case 'command-finished':
        commands.inc({result: commandResult(event)});
        if (started.delete(event.jobId)) duration.observe(event.durationMs / 1000);
        break;
      case 'callback-delivered':
        callbacks.inc({result: 'delivered'});
        break;
      case 'callback-failed':
        callbacks.inc({result: event.retryInMs === undefined ? 'failed' : 'retry'});
        break;
      default:
        break;
    }
  };
  return {registry, record};
}

/** Serves /metrics where the daemon's METRICS_BIND says, following its reloads. */
export class MetricsEndpoint {
  #metrics: Promise<Metrics> | undefined;
  #record: ((event: SidecarEvent) => void) | undefined;
  /** Events that came while prom-client loaded: counted once it has. */
  #early: SidecarEvent[] = [];
  #server: Server | undefined;
  #address: string | undefined;
  #port: number | undefined;
  /** Starts, moves and stops, one at a time in the order asked. */
  #changes: Promise<void> = Promise.resolve();
  #closed = false;
  readonly #unsubscribe: () => void;

  /** Make it when the daemon is made, before it listens, so that its counters miss no request. */
  constructor(private readonly daemon: Daemon) {
    this.#unsubscribe = daemon.bus.subscribe((event) => {
      if (this.#record) this.#record(event);
      else if (this.#metrics) this.#early.push(event);
      if (event.type === 'config-reloaded') void this.apply();
    });
    // Loading overlaps the daemon's start; a failure is reported when apply() waits for it.
    if (daemon.settings.metricsBind) this.#load().catch(() => undefined);
  }

  /** The port /metrics is served on, while it is. */
  get port(): number | undefined {
    return this.#port;
  }

  /** Starts, moves or stops the listener as METRICS_BIND now says; serve calls it once the daemon is up, reloads after. */
  apply(): Promise<void> {
    // Whatever one change throws is reported, and the next still runs.
    this.#changes = this.#changes
      .then(() => this.#apply())
      // A bind address that METRICS_BIND held until now (the two swapped) can be taken only now.
      .then(() => this.daemon.retryFailedBinds())
      .catch((error: unknown) => void this.daemon.bus.emit({type: 'internal-error', where: 'metrics listener', error: (error as Error)?.stack ?? String(error)}));
    return this.#changes;
  }

  /** Stops serving for good: the daemon has stopped. */
  close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    return this.apply();
  }

  #load(): Promise<Metrics> {
    this.#metrics ??= createMetrics(this.daemon).then(
      (metrics) => {
        for (const event of this.#early.splice(0)) metrics.record(event);
        this.#record = metrics.record;
        return metrics;
      },
      (error: unknown) => {
        // The next apply() tries again; nothing piles up meanwhile.
        this.#metrics = undefined;
        this.#early = [];
        throw error;
      },
    );
    return this.#metrics;
  }

  async #apply(): Promise<void> {
    const wanted = this.#closed ? undefined : this.daemon.settings.metricsBind;
    if (this.#server && wanted?.label === this.#address) return;
    await this.#stop();
    if (!wanted) return;
    let metrics: Metrics;
    try {
      metrics = await this.#load();
    } catch (error) {
      this.daemon.bus.emit({type: 'metrics', address: wanted.label, state: 'failed', error: `cannot load prom-client: ${(error as Error).message}`});
      return;
    }
    await this.#listen(wanted, metrics.registry);
  }

  async #listen(address: BindAddress, registry: Registry): Promise<void> {
    // Timeouts checked every second (Node's default is 30 s): a slow client gives its place up soon.
    const server = http.createServer({headersTimeout: 10_000, requestTimeout: 10_000, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024, connectionsCheckingInterval: 1000}, (req, res) => {
      void this.#answer(registry, req, res);
    });
    server.maxConnections = MAX_SCRAPE_CONNECTIONS;
    const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      // Kept after listening too, where it does nothing: an error then is not thrown.
      server.on('error', resolve);
      server.once('listening', () => resolve(undefined));
      server.listen({host: address.host, port: address.port, exclusive: true});
    });
    if (error) {
      const why = error.code === 'EADDRINUSE' ? `port ${address.port} is already in use on ${address.host}: choose another METRICS_BIND` : `${error.code ?? 'error'}: ${error.message}`;
      this.daemon.bus.emit({type: 'metrics', address: address.label, state: 'failed', error: why});
      return;
    }
    this.#server = server;
    this.#address = address.label;
    this.#port = (server.address() as AddressInfo).port;
    this.daemon.bus.emit({type: 'metrics', address: address.label, state: 'listening', port: this.#port});
  }

  #collected: {at: number; text: Promise<string>} | undefined;

  async #stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    this.#port = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
    this.daemon.bus.emit({type: 'metrics', address: this.#address ?? '', state: 'closed'});
    this.#address = undefined;
  }

  #collect(registry: Registry): Promise<string> {
    const now = performance.now();
    if (!this.#collected || now - this.#collected.at > SCRAPE_REUSE_MS) this.#collected = {at: now, text: registry.metrics()};
    return this.#collected.text;
  }

  async #answer(registry: Registry, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, {'Content-Type': 'text/plain; charset=utf-8'}).end('Not found: this address serves GET /metrics only\n');
      return;
    }
    let text: string;
    try {
      text = await this.#collect(registry);
    } catch (error) {
      this.daemon.bus.emit({type: 'internal-error', where: 'metrics scrape', error: (error as Error)?.stack ?? String(error)});
      res.writeHead(500, {'Content-Type': 'text/plain; charset=utf-8'}).end('the metrics could not be collected; the log says why\n');
      return;
    }
    res.writeHead(200, {'Content-Type': registry.contentType, 'Cache-Control': 'no-store'}).end(req.method === 'HEAD' ? undefined : text);
  }
}
