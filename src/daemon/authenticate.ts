// Stage 3 of a request (after listen and route): what can be refused from the headers alone,
// then, over the raw body bytes, the signature (constant time, every key tried), the timestamp
// and the nonce, whose replay cache is also journalled so that a restart forgets none.
import type {IncomingMessage} from 'node:http';
import {type AcceptedKey, type Settings} from '../config/config.js';
import {checkAuthHeaders, matchingKey, type AuthHeaderCheck} from '../protocol/signature.js';
import type {SidecarEventBody} from './events.js';
import {Refusal} from './refusal.js';
import type {ReplayCache} from './replay-cache.js';
import type {ReplayJournal} from './replay-journal.js';
import {DEFAULT_KEY_NAME, MIN_SECRET_LENGTH} from '../config/keys.js';

export type AuthHeaders = Extract<AuthHeaderCheck, {ok: true}>;

/** The keys a request may be signed with now: the previous SECRET_KEY only while its grace lasts. */
export function acceptedKeys(settings: Settings): AcceptedKey[] {
  const now = Date.now();
  return settings.keys.filter((key) => key.expiresAt === undefined || key.expiresAt > now);
}

export function tooLarge(settings: Settings, configPath: string): Refusal {
  return new Refusal(413, 'body-too-large', `the body is larger than BODY_LIMIT (${settings.BODY_LIMIT} bytes): send a shorter command or raise BODY_LIMIT in ${configPath}`);
}

/** What can be refused from the headers alone; returns the auth headers, checked for format. */
export function checkBeforeBody(req: IncomingMessage, settings: Settings, configPath: string, stopping: boolean): AuthHeaders {
  if (stopping) throw new Refusal(503, 'shutting-down', 'the sidecar is shutting down; try again when it is back');
  if (settings.keys.length === 0) {
    throw new Refusal(503, 'no-secret', `no secret key is configured: set SECRET_KEY in ${configPath} (or run "sudo dffs-ctl secret rotate"), then reload the service`);
  }
  const auth = checkAuthHeaders(req.headers);
  if (!auth.ok) throw new Refusal(401, auth.reason, auth.message);
  if (Number(req.headers['content-length']) > settings.BODY_LIMIT) throw tooLarge(settings, configPath);
  return auth;
}

/** The signature, the timestamp and the nonce of a request: the key that signed it, or a Refusal. */
export function authenticate(settings: Settings, replay: ReplayCache, journal: ReplayJournal | undefined, auth: AuthHeaders, method: string, path: string, body: Buffer): AcceptedKey {
  const key = matchingKey(acceptedKeys(settings), auth.signature, method, path, auth.nonce, auth.timestamp, body);
  if (!key) throw new Refusal(401, 'bad-signature', 'bad signature: check that the Func connector uses the secret key of this sidecar');
  const timestamp = Number(auth.timestamp);
  const now = Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > settings.TIMESTAMP_TOLERANCE || replay.belowFloor(timestamp)) {
    throw new Refusal(401, 'stale-timestamp', `stale timestamp: ${timestamp} is more than ${settings.TIMESTAMP_TOLERANCE} s from the sidecar's clock (${now}); check both clocks`);
  }
  if (replay.has(auth.nonce)) throw new Refusal(401, 'replayed-nonce', 'replayed nonce: every request needs a new X-Auth-Nonce');
  if (!replay.add(auth.nonce, timestamp, now - settings.TIMESTAMP_TOLERANCE, now)) {
    throw new Refusal(503, 'replay-cache-full', `more than ${replay.capacity} requests signed for this second or later are remembered; try again in a second`);
  }
  journal?.record(auth.nonce, timestamp, replay);
  return key;
}

/** A key kept from the original Sidecar's config may be shorter than new keys may be: said at each start and reload. */
export function weakKeyWarnings(settings: Settings): Extract<SidecarEventBody, {type: 'secret-weak'}>[] {
  return settings.keys
    .filter((key) => key.expiresAt === undefined && key.secret.length < MIN_SECRET_LENGTH)
    .map((key) => {
      const name = key.name === DEFAULT_KEY_NAME ? 'SECRET_KEY' : `key ${key.name}`;
      const rotate = key.name === DEFAULT_KEY_NAME ? 'sudo dffs-ctl secret rotate' : `sudo dffs-ctl secret rotate --name ${key.name}`;
      return {type: 'secret-weak', key: key.name, message: `${name} has ${key.secret.length} characters, fewer than ${MIN_SECRET_LENGTH}: replace it with "${rotate}" and give the new key to the Func connector that uses it`};
    });
}
