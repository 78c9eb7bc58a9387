import {existsSync} from 'node:fs';
import {networkInterfaces} from 'node:os';
import {allowFromAdditions, DEFAULT_BIND, parseBindList} from '../config/bind.js';
import {ConfigError, readConfig, SYSTEM_CONFIG_PATH, type StoredConfig} from '../config/config.js';
import {reloadService, type ConfigTarget, type ReloadOutcome} from './config-target.js';
import {rotateKey} from './keys.js';
import {readSnapshot} from '../client/control-client.js';
import type {Counters} from '../daemon/events.js';
import type {ListenerState} from '../daemon/listeners.js';
import {writeSystemConfig} from './install.js';
import {probeBind} from '../client/probe.js';
import {SERVICE_NAME, UNIT_PATH} from './paths.js';
import {unitState, type UnitState} from './systemd.js';
import {UserError} from '../common/user-error.js';
import {controlSocketFor, SERVICE_CONTROL_SOCKET} from '../config/runtime-paths.js';
import type {Snapshot} from '../protocol/control-messages.js';
import {DEFAULT_KEY_NAME, generateSecretKey, newSecretKeyProblem} from '../config/keys.js';

export class AdminError extends UserError {}

export function readSystemConfig(): StoredConfig {
  return readConfig(SYSTEM_CONFIG_PATH);
}

export interface BindReport {
  address: string;
  state: ListenerState | 'unknown';
  answers: boolean;
  port?: number;
  error?: string;
}

/** Each configured bind address, its listener's state in the daemon, and whether it answers. */
export async function bindReport(config: StoredConfig, snapshot: Snapshot | undefined): Promise<BindReport[]> {
  const addresses = parseBindList(config.BIND ?? DEFAULT_BIND);
  return Promise.all(
    addresses.map(async (address) => {
      const listener = snapshot?.status.bind.find((status) => status.address === address.label);
      const probe = await probeBind(address, 1500, listener?.port ?? address.port);
      return {
        address: address.label,
        state: listener?.state ?? 'unknown',
        answers: probe.answers,
        ...(listener?.port === undefined ? {} : {port: listener.port}),
        ...(listener?.error ? {error: listener.error} : probe.error && listener?.state !== 'waiting' ? {error: probe.error} : {}),
      };
    }),
  );
}

async function trySnapshot(socket = SERVICE_CONTROL_SOCKET): Promise<Snapshot | undefined> {
  try {
    return await readSnapshot(socket);
  } catch {
    return undefined;
  }
}

/** Saves a new BIND list and applies it to the running service with a reload. */
export async function setBind(list: string): Promise<{bind: string; reload: ReloadOutcome; addresses: BindReport[]; allowFromAdded: string[]}> {
  let binds;
  try {
    binds = parseBindList(list);
  } catch (error) {
    throw new AdminError(`invalid bind list: ${(error as Error).message}`, 2);
  }
  const config = {...readSystemConfig(), BIND: list};
  // A new address on a network ALLOW_FROM leaves out would answer no one there.
  const allowFromAdded = config.ALLOW_FROM === undefined ? [] : allowFromAdditions(config.ALLOW_FROM, binds, networkInterfaces());
  if (allowFromAdded.length > 0) config.ALLOW_FROM = [config.ALLOW_FROM, ...allowFromAdded].join(',');
  await writeSystemConfig(config);
  const reload = await reloadService();
  if (reload.applied) {
    // New listeners settle within a moment: wait for them before reporting.
    const wanted = parseBindList(list).map((address) => address.label);
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const listeners = (await readSnapshot(SERVICE_CONTROL_SOCKET)).status.bind;
      if (wanted.every((label) => listeners.some((listener) => listener.address === label && listener.state !== 'starting'))) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {bind: list, reload, addresses: await bindReport(config, await trySnapshot()), allowFromAdded};
}

export interface RotateResult {
  secretKey: string;
  createdAt: string;
  oldKeyAcceptedUntil?: string;
  reload: ReloadOutcome;
}

/**
 * Saves a new key (random unless given) in the target's config and has its daemon re-read it. For
 * SECRET_KEY the old one stays valid for `graceSeconds` if given; a named key is replaced at once.
 */
export async function rotateSecret(options: {secretKey?: string; graceSeconds?: number; name?: string; target: ConfigTarget}, now = new Date()): Promise<RotateResult> {
  const {target} = options;
  if (options.name !== undefined && options.name !== DEFAULT_KEY_NAME) {
    if (options.graceSeconds) throw new AdminError('--grace applies to SECRET_KEY only: a named key is replaced at once (add a second key for a gradual change)', 2);
    const rotated = rotateKey(target.read(), options.name, options.secretKey, now);
    await target.write(rotated.config);
    return {secretKey: rotated.secret, createdAt: now.toISOString(), reload: await target.reload()};
  }
  if (options.secretKey !== undefined) {
    const problem = newSecretKeyProblem(options.secretKey);
    if (problem) throw new AdminError(`--secret-key ${problem}`, 2);
  }
  const config = {...target.read()};
  const secretKey = options.secretKey ?? generateSecretKey();
  const previous = config.SECRET_KEY;
  if (previous === secretKey) throw new AdminError('the new key is the same as the current one', 2);
  config.SECRET_KEY = secretKey;
  config.SECRET_CREATED_AT = now.toISOString();
  delete config.OLD_SECRET_KEY;
  delete config.OLD_SECRET_EXPIRES_AT;
  let oldKeyAcceptedUntil: string | undefined;
  if (options.graceSeconds && previous) {
    oldKeyAcceptedUntil = new Date(now.getTime() + options.graceSeconds * 1000).toISOString();
    config.OLD_SECRET_KEY = previous;
    config.OLD_SECRET_EXPIRES_AT = oldKeyAcceptedUntil;
  }
  await target.write(config);
  return {secretKey, createdAt: config.SECRET_CREATED_AT, ...(oldKeyAcceptedUntil ? {oldKeyAcceptedUntil} : {}), reload: await target.reload()};
}

export interface ServiceStatus {
  /** The installed systemd service, or a daemon run with `serve --config` (no unit). */
  kind: 'service' | 'serve';
  installed: boolean;
  healthy: boolean;
  problems: string[];
  unit?: UnitState;
  version?: string;
  config: string;
  bind: BindReport[];
  secret?: {configured: boolean; createdAt?: string; ageSeconds?: number; oldKeyAcceptedUntil?: string};
  counters?: Counters;
  running?: Snapshot['status']['running'];
  queued?: number;
}

/** Everything `status` shows. Healthy: active, at least one address answers, none failed. */
export async function serviceStatus(): Promise<ServiceStatus> {
  const unit = await unitState();
  const base = {kind: 'service' as const, config: SYSTEM_CONFIG_PATH, bind: [] as BindReport[]};
  if (!unit.loaded && !existsSync(UNIT_PATH)) {
    return {...base, installed: false, healthy: false, problems: [`${SERVICE_NAME} is not installed: run sudo dffs-ctl install`]};
  }
  const problems: string[] = [];
  if (unit.activeState !== 'active') problems.push(`the service is ${unit.activeState} (${unit.subState}): see dffs-ctl logs`);
  let config: StoredConfig = {};
  try {
    config = readSystemConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(error.message);
  }
  const snapshot = unit.activeState === 'active' ? await trySnapshot() : undefined;
  if (unit.activeState === 'active' && !snapshot) problems.push(`no answer on ${SERVICE_CONTROL_SOCKET}`);
  const bind = await bindReport(config, snapshot);
  if (unit.activeState === 'active' && !bind.some((address) => address.answers)) problems.push('no bind address answers');
  for (const address of bind.filter((entry) => entry.state === 'failed')) problems.push(`${address.address}: ${address.error}`);
  return {...daemonReport(config, snapshot, bind, problems), kind: 'service', config: SYSTEM_CONFIG_PATH, unit};
}

/** What the daemon and its config say, beside the problems found. */
function daemonReport(config: StoredConfig, snapshot: Snapshot | undefined, bind: BindReport[], problems: string[]) {
  const daemonSecret = snapshot?.status.secret;
  const createdAt = daemonSecret?.createdAt ?? config.SECRET_CREATED_AT;
  return {
    installed: true,
    healthy: problems.length === 0,
    problems,
    ...(snapshot ? {version: snapshot.status.version} : {}),
    bind,
    secret: {
      configured: daemonSecret?.configured ?? config.SECRET_KEY !== undefined,
      ...(createdAt ? {createdAt, ageSeconds: Math.round((Date.now() - Date.parse(createdAt)) / 1000)} : {}),
      ...(daemonSecret?.oldKeyAcceptedUntil ? {oldKeyAcceptedUntil: daemonSecret.oldKeyAcceptedUntil} : {}),
    },
    ...(snapshot ? {counters: snapshot.status.counters, running: snapshot.status.running, queued: snapshot.status.queued} : {}),
  };
}

/** The status of the daemon run with `serve --config PATH`: found through the control socket that follows from its config. */
export async function serveStatus(configPath: string): Promise<ServiceStatus> {
  const problems: string[] = [];
  let config: StoredConfig = {};
  try {
    config = readConfig(configPath);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(error.message);
  }
  const socket = controlSocketFor(configPath);
  let snapshot: Snapshot | undefined;
  try {
    snapshot = await readSnapshot(socket);
  } catch (error) {
    problems.push(`no sidecar runs with ${configPath} (${(error as Error).message}): start it with dffs-ctl serve --config ${configPath}`);
  }
  const bind = await bindReport(config, snapshot);
  if (snapshot && !bind.some((address) => address.answers)) problems.push('no bind address answers');
  for (const address of bind.filter((entry) => entry.state === 'failed')) problems.push(`${address.address}: ${address.error}`);
  return {...daemonReport(config, snapshot, bind, problems), kind: 'serve', config: configPath};
}
