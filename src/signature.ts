import {crypto} from './node-builtins.js';

const {createHmac, randomBytes, timingSafeEqual} = crypto;

/** The headers DataFlux Func's Sidecar client sends with every signed request. */
export const NONCE_HEADER = 'x-auth-nonce';
export const TIMESTAMP_HEADER = 'x-auth-timestamp';
export const SIGNATURE_HEADER = 'x-auth-signature';

const SIGNATURE_FORMAT = /^[0-9A-Fa-f]{40}$/;
// Func sends a uuid4 without dashes; other clients get some latitude, within bounds the replay cache can hold.
const NONCE_FORMAT = /^[0-9A-Za-z_-]{16,64}$/;
const TIMESTAMP_FORMAT = /^\d{1,12}$/;

function hmac(secret: string, method: string, path: string, nonce: string, timestamp: string, body: Uint8Array | string) {
  return createHmac('sha1', secret).update(`${method}\n${path}\n${nonce}\n${timestamp}\n`).update(body).digest();
}

/** The signature exactly as Func computes it: uppercase hex HMAC-SHA1 of METHOD\nPATH\nNONCE\nTIMESTAMP\nBODY. */
export function sign(secret: string, method: string, path: string, nonce: string, timestamp: string, body: Uint8Array | string): string {
  return hmac(secret, method, path, nonce, timestamp, body).toString('hex').toUpperCase();
}

export type SignedHeaders = {
  'X-Auth-Nonce': string;
  'X-Auth-Timestamp': string;
  'X-Auth-Signature': string;
};

/** Headers for a new request, signed as Func signs it (fresh uuid4-style nonce, whole-second timestamp). */
export function signRequest(secret: string, method: string, path: string, body: Uint8Array | string, now = Date.now()): SignedHeaders {
  const nonce = randomBytes(16).toString('hex');
  const timestamp = String(Math.floor(now / 1000));
  return {
    'X-Auth-Nonce': nonce,
    'X-Auth-Timestamp': timestamp,
    'X-Auth-Signature': sign(secret, method, path, nonce, timestamp, body),
  };
}

export type AuthHeaderCheck =
  | {ok: true; nonce: string; timestamp: string; signature: Buffer}
  | {ok: false; reason: 'missing-header' | 'malformed-header'; message: string};

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
}

/** The format check that comes before any HMAC work. */
export function checkAuthHeaders(headers: Record<string, string | string[] | undefined>): AuthHeaderCheck {
  const formats = {[NONCE_HEADER]: NONCE_FORMAT, [TIMESTAMP_HEADER]: TIMESTAMP_FORMAT, [SIGNATURE_HEADER]: SIGNATURE_FORMAT};
  const values: Record<string, string> = {};
  for (const [name, format] of Object.entries(formats)) {
    const raw = headers[name];
    const value = single(raw);
    if (raw === undefined || value === '') {
      return {ok: false, reason: 'missing-header', message: `missing header ${displayName(name)}: sign the request as DataFlux Func does`};
    }
    if (value === undefined) {
      return {ok: false, reason: 'malformed-header', message: `header ${displayName(name)} is given more than once`};
    }
    if (!format.test(value)) {
      return {ok: false, reason: 'malformed-header', message: `header ${displayName(name)} is malformed`};
    }
    values[name] = value;
  }
  return {
    ok: true,
    nonce: values[NONCE_HEADER],
    timestamp: values[TIMESTAMP_HEADER],
    signature: Buffer.from(values[SIGNATURE_HEADER], 'hex'),
  };
}

function displayName(header: string): string {
  return header.replace(/(^|-)([a-z])/g, (_, dash: string, letter: string) => dash + letter.toUpperCase());
}

/** Constant-time check of a signature (already format-checked and decoded) against each accepted key. */
export function signatureMatches(
  keys: readonly string[],
  signature: Buffer,
  method: string,
  path: string,
  nonce: string,
  timestamp: string,
  body: Uint8Array,
): boolean {
  let matched = false;
  for (const key of keys) {
    // Every key is tried, so the time taken does not tell which one matched.
    if (timingSafeEqual(hmac(key, method, path, nonce, timestamp, body), signature)) matched = true;
  }
  return matched;
}
