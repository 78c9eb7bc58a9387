import type {IncomingMessage, Server, ServerResponse} from 'node:http';
import type {AddressInfo, Socket} from 'node:net';
import {http, https} from '../common/node-builtins.js';
import type {BindAddress} from '../config/bind.js';
import type {EventBus} from './events.js';

export type ListenerState = 'starting' | 'listening' | 'waiting' | 'failed' | 'closed';

export interface ListenerStatus {
  address: string;
  state: ListenerState;
  /** The port actually bound (differs from the configured one for port 0). */
  port?: number;
  error?: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** The PEM certificate chain and private key an HTTPS listener serves with. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
}

export interface ListenerHandlers {
  request: Handler;
  /** A request that sent `Expect: 100-continue`: answer it, or call writeContinue() and handle it. */
  checkContinue: Handler;
  /** Connections past this many on the listener are answered 503 and closed. */
  maxConnections(): number;
  /** A request on a connection past the limit. */
  tooManyConnections: Handler;
  /** Whether ALLOW_FROM covers the address a connection comes from. */
  allowsSource(address: string): boolean;
  /** A TLS connection from outside ALLOW_FROM, closed before its handshake. */
  sourceRefused(address: string): void;
}

/** How long a connection past the limit may take to send the request its 503 answers. */
const OVER_LIMIT_GRACE_MS = 2_000;
/** A connection idle this long (no request in progress) gives way to a new one at the limit. */
const IDLE_EVICTION_MS = 1_000;

/** Errors that mean the address may appear later (an interface not up yet): worth retrying. */
const RETRYABLE = new Set(['EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH']);
const FIRST_RETRY_MS = 500;
const LISTEN_BACKLOG = 4096;
// A bind attempt costs next to nothing: retry often, so docker0 is served soon after it appears.
const MAX_RETRY_MS = 5_000;

/** A TLS handshake not done within this is dropped: a connection cannot wait in it for long. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** One bind address: an HTTP or HTTPS server that keeps trying while its address does not exist yet. */
export class Listener {
  readonly server: Server;
  #state: ListenerState = 'starting';
  #error: string | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryMs = FIRST_RETRY_MS;
  #firstOutcome: () => void = () => {};
  /** Settles when the address is listening, waiting for its address, or failed. */
  readonly ready: Promise<void>;
  #connections = 0;
  readonly #overLimit = new WeakSet<object>();
  readonly #outsiders = new WeakSet<object>();
  /** Connections with no request in progress, oldest first, and since when. */
  readonly #idleSince = new Map<Socket, number>();

  constructor(
    readonly address: BindAddress,
    handlers: ListenerHandlers,
    private readonly bus: EventBus,
    tls?: TlsMaterial,
  ) {
    const options = {
      // Slow clients cannot hold a connection open for long before the request is in. The
      // timeouts are checked every second (Node's default is every 30 s, which let a
      // trickling client hold its connection for up to 40 s).
      headersTimeout: 10_000,
      requestTimeout: 30_000,
      connectionsCheckingInterval: 1_000,
      keepAliveTimeout: 5_000,
      maxHeaderSize: 16 * 1024,
    };
    const onRequest: Handler = (req, res) => (this.#overLimit.has(req.socket) ? handlers.tooManyConnections(req, res) : handlers.request(req, res));
    if (address.tls && !tls) throw new Error(`${address.label} needs TLS_CERT and TLS_KEY`);
    this.server = address.tls && tls ? https().createServer({...options, ...tls, handshakeTimeout: HANDSHAKE_TIMEOUT_MS}, onRequest) : http.createServer(options, onRequest);
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) =>
      this.#overLimit.has(req.socket) ? handlers.tooManyConnections(req, res) : handlers.checkContinue(req, res),
    );
    // A connection from outside ALLOW_FROM takes no place among MAX_CONNECTIONS, and gets no TLS
    // handshake; over plain HTTP it stays just long enough for its request to be answered 403.
    this.server.prependListener('connection', (socket: Socket) => {
      if (handlers.allowsSource(socket.remoteAddress ?? '')) return;
      this.#outsiders.add(socket);
      if (address.tls) {
        handlers.sourceRefused(socket.remoteAddress ?? '');
        socket.destroy();
        return;
      }
      const timer = setTimeout(() => socket.destroy(), OVER_LIMIT_GRACE_MS);
      socket.once('close', () => clearTimeout(timer));
    });
    // Requests arrive on the TLS socket, which exists once the handshake is done.
    this.server.on(address.tls ? 'secureConnection' : 'connection', (socket: Socket) => {
      if (this.#outsiders.has(socket)) return;
      if (this.#connections >= handlers.maxConnections() && !this.#evictIdle()) {
        // Still parsed, so that a request on it gets a 503 that says why, but only for a moment.
        this.#overLimit.add(socket);
        const timer = setTimeout(() => socket.destroy(), OVER_LIMIT_GRACE_MS);
        socket.once('close', () => clearTimeout(timer));
        return;
      }
      this.#connections++;
      this.#idleSince.set(socket, Date.now());
      socket.once('close', () => {
        this.#connections--;
        this.#idleSince.delete(socket);
      });
    });
    const busy = (req: IncomingMessage, res: ServerResponse) => {
      this.#idleSince.delete(req.socket);
      res.once('finish', () => {
        if (!req.socket.destroyed && !this.#overLimit.has(req.socket) && !this.#outsiders.has(req.socket)) this.#idleSince.set(req.socket, Date.now());
      });
    };
    this.server.on('request', busy);
    this.server.on('checkContinue', busy);
    this.ready = new Promise((resolve) => {
      this.#firstOutcome = resolve;
    });
    this.server.on('error', (error: NodeJS.ErrnoException) => this.#onError(error));
    this.server.on('listening', () => {
      this.#state = 'listening';
      this.#error = undefined;
      this.#retryMs = FIRST_RETRY_MS;
      this.bus.emit({type: 'listening', address: address.label, port: this.port ?? address.port});
      this.#firstOutcome();
    });
    this.#listen();
  }

  /** Serves new connections with a renewed certificate; those open keep theirs. */
  updateTls(tls: TlsMaterial): void {
    if (this.address.tls) (this.server as import('node:https').Server).setSecureContext(tls);
  }

  get state(): ListenerState {
    return this.#state;
  }

  get port(): number | undefined {
    const info = this.server.address() as AddressInfo | null;
    return info?.port;
  }

  /**
   * At the limit, the connection idle the longest goes, if it has been idle for a while: holding
   * connections open takes a request in progress, which the body budget and the request timeout
   * bound, not just an open socket or one trickling its headers.
   */
  #evictIdle(): boolean {
    const [oldest] = this.#idleSince;
    if (!oldest || Date.now() - oldest[1] < IDLE_EVICTION_MS) return false;
    this.#idleSince.delete(oldest[0]);
    oldest[0].destroy();
    return true;
  }

  status(): ListenerStatus {
    return {
      address: this.address.label,
      state: this.#state,
      ...(this.port === undefined ? {} : {port: this.port}),
      ...(this.#error ? {error: this.#error} : {}),
    };
  }

  #listen(): void {
    // A burst of connections (thousands of containers on docker0) waits in the kernel's queue
    // instead of being reset; the kernel caps it at net.core.somaxconn.
    this.server.listen({host: this.address.host, port: this.address.port, exclusive: true, backlog: LISTEN_BACKLOG});
  }

  #onError(error: NodeJS.ErrnoException): void {
    if (this.#state === 'closed') return;
    if (error.code && RETRYABLE.has(error.code)) {
      this.#state = 'waiting';
      this.#error = `${error.code}: the address does not exist yet`;
      this.bus.emit({type: 'bind-waiting', address: this.address.label, error: this.#error, retryInMs: this.#retryMs});
      this.#retryTimer = setTimeout(() => this.#listen(), this.#retryMs);
      this.#retryMs = Math.min(this.#retryMs * 2, MAX_RETRY_MS);
    } else {
      this.#state = 'failed';
      this.#error =
        error.code === 'EADDRINUSE'
          ? `port ${this.address.port} is already in use on ${this.address.host}: stop the other program or choose another BIND`
          : error.code === 'EACCES'
            ? `not allowed to bind ${this.address.label} (ports below 1024 need privileges): choose a higher port`
            : `${error.code ?? 'error'}: ${error.message}`;
      this.bus.emit({type: 'bind-failed', address: this.address.label, error: this.#error});
    }
    this.#firstOutcome();
  }

  /** Stops accepting; open connections finish their current request. */
  close(): Promise<void> {
    clearTimeout(this.#retryTimer);
    const wasListening = this.#state === 'listening';
    this.#state = 'closed';
    if (!wasListening) return Promise.resolve();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      this.bus.emit({type: 'bind-closed', address: this.address.label});
    });
  }
}

/** Opens a listener for each bind address that has none (or a failed one), and closes those no bind wants any more. */
export function applyBinds(listeners: Map<string, Listener>, binds: BindAddress[], open: (address: BindAddress) => Listener): void {
  const wanted = new Map(binds.map((address) => [address.label, address]));
  for (const [label, listener] of listeners) {
    if (wanted.has(label)) continue;
    void listener.close();
    listeners.delete(label);
  }
  for (const [label, address] of wanted) {
    const existing = listeners.get(label);
    if (existing && existing.state !== 'failed') continue;
    if (existing) void existing.close();
    listeners.set(label, open(address));
  }
}
