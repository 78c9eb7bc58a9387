import type {IncomingMessage, ServerResponse} from 'node:http';

/** What a refused request's client may still send, read and thrown away, before the connection is cut. */
const LINGER_BYTES = 64 * 1024 * 1024;
const LINGER_MS = 10_000;

export type BodyOutcome = Buffer | 'too-large' | 'over-budget';
type Settlement = BodyOutcome | 'end';

export interface PendingBody {
  held: number;
  /** Gives up the body: its bytes are released and the request is answered by its owner. */
  drop(): void;
}

/**
 * The bytes of request bodies held before their signature is checked, across every connection of
 * every listener. Past the budget, the bodies that began first give way: a slow trickle loses to a
 * request whose body comes at once, as a signed request from Func does.
 */
export class BodyBudget {
  #held = 0;
  readonly #pending = new Set<PendingBody>();

  constructor(public total: number) {}

  /** Makes room for `bytes` more of `body`; false when even dropping every older body cannot. */
  reserve(body: PendingBody, bytes: number): boolean {
    this.#pending.add(body);
    for (const oldest of this.#pending) {
      if (this.#held + bytes <= this.total) break;
      oldest.drop();
      // Those after it began later: they stay.
      if (oldest === body) break;
    }
    if (!this.#pending.has(body)) return false;
    body.held += bytes;
    this.#held += bytes;
    return true;
  }

  release(body: PendingBody): void {
    if (!this.#pending.delete(body)) return;
    this.#held -= body.held;
    body.held = 0;
  }
}

/**
 * Reads a request's raw body within `limit` bytes and the shared budget, and hands it on once, or
 * says why not; nothing when the client goes away. Callbacks, not a promise: the command starts in
 * the same turn as the body's end.
 */
export function readBody(req: IncomingMessage, limit: number, budget: BodyBudget, onBody: (body: BodyOutcome) => void): void {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    onBody('too-large');
    return;
  }
  let chunks: Buffer[] = [];
  let size = 0;
  let settled = false;
  /** The bytes leave the budget and this request together: a refused body is let go at once, not when its connection closes. */
  const letGo = () => {
    settled = true;
    budget.release(pending);
    chunks = [];
    req.removeListener('data', onData);
    req.removeListener('end', onEnd);
  };
  const settle = (outcome: Settlement) => {
    if (settled) return;
    const body = outcome === 'end' ? Buffer.concat(chunks, size) : outcome;
    letGo();
    onBody(body);
  };
  const pending: PendingBody = {held: 0, drop: () => settle('over-budget')};
  const onData = (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) settle('too-large');
    else if (budget.reserve(pending, chunk.length)) chunks.push(chunk);
  };
  const onEnd = () => settle('end');
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('close', () => {
    if (!settled) letGo();
  });
  // An aborted request has no one to answer; the listener keeps its error from being thrown.
  req.on('error', () => {});
}

/**
 * Answers a request whose body is not wanted, then reads and discards what the client still
 * sends, up to a bound, before closing (nginx's lingering close). Clients such as Python's
 * requests send the whole body before they read the answer: closing at once would reset the
 * connection under them, and they would see a network error instead of the answer.
 */
export function answerAndLinger(req: IncomingMessage, res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.shouldKeepAlive = false;
  res.writeHead(status, {'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers});
  if (req.complete || req.readableEnded) {
    res.end(text);
    return;
  }
  res.write(text);
  let discarded = 0;
  const finish = (cut: boolean) => {
    clearTimeout(timer);
    req.removeAllListeners('data');
    res.end();
    if (cut) res.once('finish', () => req.socket.destroy());
  };
  const timer = setTimeout(() => finish(true), LINGER_MS);
  req.removeAllListeners('data');
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > LINGER_BYTES) finish(true);
  });
  req.once('end', () => finish(false));
  req.once('close', () => clearTimeout(timer));
  req.on('error', () => {});
  req.resume();
}
