import {http, https} from '../common/node-builtins.js';
import type {JsonBody} from './json-body.js';

export interface CallbackAttempt {
  attempt: number;
  ok: boolean;
  status?: number;
  error?: string;
  durationMs: number;
  /** When a further attempt follows, after this delay. */
  retryInMs?: number;
}

export interface CallbackOptions {
  retries: number;
  timeoutMs: number;
  /** First retry delay; each following one doubles, up to 30 s. */
  backoffMs: number;
  signal?: AbortSignal;
  onAttempt(attempt: CallbackAttempt): void;
}

const MAX_BACKOFF_MS = 30_000;

function postOnce(url: URL, body: JsonBody, headers: Record<string, string>, timeoutMs: number, signal?: AbortSignal) {
  return new Promise<{status: number}>((resolve, reject) => {
    const send = url.protocol === 'https:' ? https().request : http.request;
    const req = send(
      url,
      {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'Content-Length': String(body.byteLength),
          'User-Agent': 'dataflux-func-sidecar',
          ...headers,
        },
        timeout: timeoutMs,
        signal,
      },
      (res) => {
        // The answer's body is not needed, only that it came.
        res.resume();
        res.on('end', () => resolve({status: res.statusCode ?? 0}));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    body.writeTo(req).then(() => req.end(), reject);
  });
}

function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, {once: true});
  });
}

/**
 * POSTs a callback, retrying network errors and 5xx answers with exponential backoff.
 * Redirects are not followed: the output goes only where the request said.
 */
export async function deliverCallback(
  url: URL,
  body: JsonBody,
  headers: Record<string, string>,
  options: CallbackOptions,
): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    const started = performance.now();
    let outcome: Omit<CallbackAttempt, 'attempt' | 'durationMs' | 'retryInMs'>;
    let retryable: boolean;
    try {
      const {status} = await postOnce(url, body, headers, options.timeoutMs, options.signal);
      const ok = status >= 200 && status < 300;
      outcome = ok ? {ok, status} : {ok, status, error: status >= 300 && status < 400 ? `HTTP ${status} (redirects are not followed)` : `HTTP ${status}`};
      retryable = status >= 500;
    } catch (error) {
      outcome = {ok: false, error: (error as Error).message};
      retryable = !options.signal?.aborted;
    }
    const durationMs = Math.round(performance.now() - started);
    const retryInMs = !outcome.ok && retryable && attempt <= options.retries
      ? Math.min(options.backoffMs * 2 ** (attempt - 1), MAX_BACKOFF_MS)
      : undefined;
    options.onAttempt({...outcome, attempt, durationMs, ...(retryInMs === undefined ? {} : {retryInMs})});
    if (outcome.ok) return true;
    if (retryInMs === undefined) return false;
    await abortableDelay(retryInMs, options.signal);
    if (options.signal?.aborted) {
      options.onAttempt({attempt: attempt + 1, ok: false, error: 'not sent: the sidecar stopped before the retry', durationMs: 0});
      return false;
    }
  }
}
