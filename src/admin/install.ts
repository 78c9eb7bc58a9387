// `dffs-ctl install` (and `run-sidecar.sh`): the config planned from the flags, the existing
// config or the original Sidecar's; a release (release.ts) for the users (users.ts) and units
// (unit.ts); the service restarted and checked healthy, or everything it replaced put back
// (rollback.ts).
import {chmodSync, chownSync, existsSync, lstatSync, readdirSync, readFileSync, rmSync} from 'node:fs';
import {networkInterfaces} from 'node:os';
import {dirname, join, resolve} from 'node:path';
import {DEFAULT_BIND, defaultAllowFrom, parseBindList} from '../config/bind.js';
import {ConfigError, NUMERIC_SETTINGS, SYSTEM_CONFIG_PATH, validateConfig, writeConfig, type StoredConfig} from '../config/config.js';
import {readSnapshot} from '../client/control-client.js';
import {probeBind} from '../client/probe.js';
import {parseLegacyConfig} from './legacy-config.js';
import {BIN_DIR, CURRENT_LINK, DAEMON_USER, LIB_DIR, ORIGINAL_BACKUP_DIR, RELEASES_DIR, RUNNER_SERVICE_PATH, RUNNER_SOCKET_PATH, RUNNER_SOCKET_UNIT, SERVICE_NAME, UNIT_PATH, WRAPPERS} from './paths.js';
import {saveSnapshots, takeSnapshot} from './snapshot.js';
import {run, systemctl, unitState} from './systemd.js';
import {renderUnits, type Units} from './unit.js';
import {InstallError} from './preconditions.js';
import {VERSION} from '../protocol/version.js';
import {SERVICE_CONTROL_SOCKET} from '../config/runtime-paths.js';
import {generateSecretKey, newSecretKeyProblem} from '../config/keys.js';

import {copyRelease, currentRelease, pointCurrentAt, sealRelease, serviceRuntime, shareUnchangedRuntime, wrapperScript, writeAtomic} from './release.js';
import {isOriginalFile, LEGACY_BACKUP_PREFIX, putBack, REPLACED_PATHS, restoreUnits, type OriginalState} from './rollback.js';
import {ensureServiceUsers, groupId} from './users.js';
export interface ConfigPlan {
  config: StoredConfig;
  /** The file as it was, to restore if the install fails; undefined when there was none. */
  previousText: string | undefined;
  /** Set when the file was in the original Sidecar's KEY: value form. */
  legacy: boolean;
  changed: boolean;
}

/**
 * The config after an install or upgrade: the existing one (imported from the original Sidecar's
 * `KEY: value` form if need be), with just the keys given as flags changed, and defaults for what
 * is missing. A JSON config that fails validation is an error: it is never replaced.
 */
export interface ConfigFlags {
  bind?: string;
  secretKey?: string;
  tlsCert?: string;
  tlsKey?: string;
  allowFrom?: string;
  /** Serve Prometheus metrics on DEFAULT_METRICS_BIND, unless the config already says where. */
  metrics?: boolean;
}

/** Where `install --metrics` serves /metrics: loopback only, since /metrics takes no signature. */
export const DEFAULT_METRICS_BIND = '127.0.0.1:9464';

export function planConfig(previousText: string | undefined, flags: ConfigFlags, now = new Date(), interfaces = networkInterfaces()): ConfigPlan {
  let config: StoredConfig = {};
  let legacy = false;
  if (previousText !== undefined && previousText.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(previousText);
    } catch {
      const imported = parseLegacyConfig(previousText);
      if (!imported) {
        throw new ConfigError(`${SYSTEM_CONFIG_PATH} is neither JSON nor the original Sidecar's KEY: value form; fix or move it, then install again`);
      }
      parsed = imported;
      legacy = true;
    }
    config = {...validateConfig(parsed, SYSTEM_CONFIG_PATH)};
  }
  const before = JSON.stringify(config);
  if (flags.bind !== undefined) {
    parseBindList(flags.bind);
    config.BIND = flags.bind;
  }
  if (flags.secretKey !== undefined) {
    const problem = newSecretKeyProblem(flags.secretKey);
    if (problem) throw new ConfigError(`--secret-key ${problem}`);
    if (flags.secretKey !== config.SECRET_KEY) {
      config.SECRET_KEY = flags.secretKey;
      config.SECRET_CREATED_AT = now.toISOString();
      delete config.OLD_SECRET_KEY;
      delete config.OLD_SECRET_EXPIRES_AT;
    }
  }
  if (flags.tlsCert !== undefined) config.TLS_CERT = resolve(flags.tlsCert);
  if (flags.tlsKey !== undefined) config.TLS_KEY = resolve(flags.tlsKey);
  if (flags.allowFrom !== undefined) config.ALLOW_FROM = flags.allowFrom;
  if (flags.metrics) config.METRICS_BIND ??= DEFAULT_METRICS_BIND;
  // A new config only: one already in use, the original's among them, keeps answering whom it answered.
  if (previousText === undefined || previousText.trim() === '') config.ALLOW_FROM ??= defaultAllowFrom(interfaces);
  config.BIND ??= DEFAULT_BIND;
  if (config.SECRET_KEY === undefined) {
    config.SECRET_KEY = generateSecretKey();
    config.SECRET_CREATED_AT = now.toISOString();
  }
  config = validateConfig(config, 'the flags given');
  return {config, previousText, legacy, changed: legacy || JSON.stringify(config) !== before};
}

/** Writes the system config atomically, readable by the service's group only. */
export async function writeSystemConfig(config: StoredConfig): Promise<void> {
  await writeConfig(SYSTEM_CONFIG_PATH, config);
  chownSync(SYSTEM_CONFIG_PATH, 0, await groupId(DAEMON_USER));
  chmodSync(SYSTEM_CONFIG_PATH, 0o640);
}

export function readSystemConfigText(): string | undefined {
  try {
    return readFileSync(SYSTEM_CONFIG_PATH, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Waits until the service runs this version and answers on at least one bind address. */
export async function waitHealthy(version: string, config: StoredConfig, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'not started';
  // Counted from just after the restart: a daemon that exits is started again by Restart=, and
  // would only come back to fail again.
  const restartsBefore = (await unitState()).restarts;
  while (Date.now() < deadline) {
    const state = await unitState();
    if (state.activeState === 'failed' || state.restarts > restartsBefore) {
      last = state.activeState === 'failed' ? 'the service failed' : 'the service exited, and systemd started it again';
      break;
    }
    if (state.activeState === 'active') {
      try {
        const {status} = await readSnapshot(SERVICE_CONTROL_SOCKET, 1000);
        const probes = await Promise.all(parseBindList(config.BIND ?? DEFAULT_BIND).map((address) => probeBind(address, 1000)));
        if (status.version === version && status.pid === state.mainPid && probes.some((probe) => probe.answers && probe.version === version)) return;
        last = `version ${status.version}, answering on: ${probes.filter((probe) => probe.answers).map((probe) => probe.address).join(', ') || 'no address'}`;
      } catch (error) {
        last = (error as Error).message;
      }
    } else {
      last = `${state.activeState} (${state.subState})`;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const journal = await run('journalctl', ['-u', SERVICE_NAME, '-n', '15', '--no-pager', '-o', 'cat']).catch(() => '');
  throw new InstallError(`the service did not become healthy: ${last}${journal ? `\nLast log lines:\n${journal}` : ''}`);
}

export interface InstallOptions extends ConfigFlags {
  allowSetuid: boolean;
  dryRun: boolean;
  sourceRoot: string;
  nodePath: string;
  log(line: string): void;
}

export interface InstallResult {
  upgrade: boolean;
  dryRun: boolean;
  version: string;
  release: string;
  previousRelease?: string;
  bind: string;
  secretKey: string;
  /** The networks requests may come from; unset: any. */
  allowFrom?: string;
  configChanged: boolean;
  /** Where the original Sidecar's files were saved, when this install replaced them. */
  originalBackup?: string;
  /** The daemon's unit. */
  unit: string;
  units: Units;
}

/** Seconds systemd waits for a stop: the drain timeout plus a margin. */
export function stopTimeoutSeconds(config: StoredConfig): number {
  return (config.DRAIN_TIMEOUT ?? NUMERIC_SETTINGS.DRAIN_TIMEOUT.default) + 30;
}

/**
 * Installs, or upgrades, the service. Whatever it replaces is kept first: an install that does
 * not come up healthy puts back the previous release, or the original Sidecar and its service
 * state, or, on a first install, leaves nothing enabled or running.
 */
export async function install(options: InstallOptions): Promise<InstallResult> {
  if (lstatSync(SYSTEM_CONFIG_PATH, {throwIfNoEntry: false})?.isSymbolicLink()) {
    throw new InstallError(`${SYSTEM_CONFIG_PATH} is a symlink: install writes and restores this file in place. Replace the link with the file it points to, then install again`, 78);
  }
  const plan = planConfig(readSystemConfigText(), options);
  const previousRelease = currentRelease();
  const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
  const release = join(RELEASES_DIR, `${VERSION}-${stamp}`);
  const units = renderUnits({allowSetuid: options.allowSetuid, stopTimeoutSeconds: stopTimeoutSeconds(plan.config)});
  const unit = units.daemon;
  const result: InstallResult = {
    upgrade: previousRelease !== undefined,
    dryRun: options.dryRun,
    version: VERSION,
    release,
    ...(previousRelease ? {previousRelease} : {}),
    bind: plan.config.BIND ?? DEFAULT_BIND,
    secretKey: plan.config.SECRET_KEY ?? '',
    ...(plan.config.ALLOW_FROM === undefined ? {} : {allowFrom: plan.config.ALLOW_FROM}),
    configChanged: plan.changed,
    unit,
    units,
  };
  if (options.dryRun) return result;
  return shieldedFromSignals(options.log, () => installRelease(options, plan, result, previousRelease));
}

/**
 * Runs an install to its end: Ctrl-C, a closed ssh session or a TERM would otherwise stop it
 * half-way, with neither the new service healthy nor the old one back. A terminal gone meanwhile
 * makes writes to it fail, which must not end the install either.
 */
async function shieldedFromSignals<T>(log: (line: string) => void, work: () => Promise<T>): Promise<T> {
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const onSignal = (signal: NodeJS.Signals) => log(`${signal}: install finishes first, and puts back what it replaced if it fails`);
  const ignore = () => undefined;
  for (const signal of signals) process.on(signal, onSignal);
  process.stdout.on('error', ignore);
  process.stderr.on('error', ignore);
  try {
    return await work();
  } finally {
    for (const signal of signals) process.off(signal, onSignal);
  }
}

async function installRelease(options: InstallOptions, plan: ConfigPlan, result: InstallResult, previousRelease: string | undefined): Promise<InstallResult> {
  const {release, units} = result;
  const replaced = REPLACED_PATHS.map((path) => takeSnapshot(path));
  let original: OriginalState | undefined;
  let backupSavedNow = false;
  if (!previousRelease && replaced.some((snapshot) => isOriginalFile(snapshot))) {
    const state = await unitState();
    original = {enabled: state.enabled === 'enabled', active: state.activeState === 'active', savedAt: new Date().toISOString()};
    result.originalBackup = ORIGINAL_BACKUP_DIR;
    if (existsSync(ORIGINAL_BACKUP_DIR)) {
      // One left by an install that never finished (killed with SIGKILL, a power cut): the files
      // there now may be partly ours, the backup is whole.
      options.log(`Kept the backup of the original Sidecar already in ${ORIGINAL_BACKUP_DIR}`);
    } else {
      saveSnapshots(ORIGINAL_BACKUP_DIR, replaced, original);
      backupSavedNow = true;
      options.log(`Saved the original Sidecar's program, unit and config in ${ORIGINAL_BACKUP_DIR} (uninstall --restore-original puts them back)`);
    }
  }
  for (const name of readdirSync(dirname(SYSTEM_CONFIG_PATH)).filter((entry) => entry.startsWith(LEGACY_BACKUP_PREFIX))) {
    // Left by an earlier version of install, with the original's mode: the key is root's only.
    chmodSync(join(dirname(SYSTEM_CONFIG_PATH), name), 0o600);
  }

  await ensureServiceUsers(options.log);
  for (const [key, path] of [['TLS_CERT', plan.config.TLS_CERT], ['TLS_KEY', plan.config.TLS_KEY]] as const) {
    if (path !== undefined && !(await run('runuser', ['-u', DAEMON_USER, '--', 'test', '-r', path]).then(() => true, () => false))) {
      throw new InstallError(`user ${DAEMON_USER} cannot read ${key} ${path}, which the daemon reads at start and on reload: chgrp ${DAEMON_USER} ${path} && chmod 640 ${path} (and make its directory reachable), then install again`, 78);
    }
  }
  let runtime: string;
  try {
    copyRelease(options.sourceRoot, release);
    shareUnchangedRuntime(release, previousRelease);
    runtime = serviceRuntime(release, options.nodePath, options.log);
    sealRelease(release);
  } catch (error) {
    rmSync(release, {recursive: true, force: true});
    throw error;
  }
  try {
    await run('runuser', ['-u', DAEMON_USER, '--', runtime.replace(CURRENT_LINK, release), '--version']);
  } catch {
    rmSync(release, {recursive: true, force: true});
    throw new InstallError(`${runtime} cannot be run by user ${DAEMON_USER}: install Node.js system-wide, or use the offline bundle`);
  }
  options.log(`Copied the program to ${release}`);

  try {
    const wrapper = wrapperScript(runtime);
    for (const name of WRAPPERS) writeAtomic(join(BIN_DIR, name), wrapper, 0o755);
    pointCurrentAt(release);
    if (plan.legacy) {
      // Conf cannot open a file that is not JSON; the original is in the backup.
      rmSync(SYSTEM_CONFIG_PATH);
      await writeSystemConfig(plan.config);
      options.log('Imported the original Sidecar\'s config');
    } else if (plan.changed || plan.previousText === undefined) {
      await writeSystemConfig(plan.config);
    }
    writeAtomic(RUNNER_SERVICE_PATH, units.runner, 0o644);
    writeAtomic(RUNNER_SOCKET_PATH, units.runnerSocket, 0o644);
    writeAtomic(UNIT_PATH, units.daemon, 0o644);
    await systemctl('daemon-reload');
    await systemctl('enable', '--quiet', SERVICE_NAME, RUNNER_SOCKET_UNIT);
    await systemctl('restart', RUNNER_SOCKET_UNIT);
    await systemctl('restart', SERVICE_NAME);
    await waitHealthy(VERSION, plan.config);
  } catch (error) {
    const cause = (error as Error).message;
    if (previousRelease) {
      pointCurrentAt(previousRelease);
      await restoreUnits(replaced);
      await systemctl('restart', SERVICE_NAME);
      rmSync(release, {recursive: true, force: true});
      throw new InstallError(`the upgrade to ${VERSION} failed, so the previous release (${previousRelease}) was put back and restarted.\nCause: ${cause}`);
    }
    await putBack(replaced, original);
    rmSync(LIB_DIR, {recursive: true, force: true});
    if (original) {
      if (backupSavedNow) rmSync(ORIGINAL_BACKUP_DIR, {recursive: true, force: true});
      throw new InstallError(`the install failed, so the original Sidecar's program, unit and config were put back${original.active ? ' and its service restarted' : ''}.\nCause: ${cause}`);
    }
    throw new InstallError(`the install failed: nothing is left installed, enabled or running.\nCause: ${cause}`);
  }
  for (const old of readdirSync(RELEASES_DIR).map((name) => join(RELEASES_DIR, name))) {
    if (old !== release && old !== previousRelease) rmSync(old, {recursive: true, force: true});
  }
  return result;
}

/** The block the manual shows after an install, with start and stop the right way round. */
export function installSummary(result: Pick<InstallResult, 'bind' | 'secretKey' | 'allowFrom'>): string {
  const addresses = parseBindList(result.bind);
  const firstAddress = addresses.find((address) => address.host !== '127.0.0.1') ?? addresses[0];
  const sources = result.allowFrom === undefined ? '' : `\nRequests are accepted from (ALLOW_FROM): ${result.allowFrom}\n`;
  return `Bind:
    ${result.bind}
Secret Key:
    ${result.secretKey}
To start:
    sudo systemctl start ${SERVICE_NAME}
To shutdown:
    sudo systemctl stop ${SERVICE_NAME}

Now open ${result.bind} and have fun!

Create the connector in DataFlux Func: Connector / Add Connector / DataFlux Func Sidecar (HTTP),
with Host ${firstAddress.host}, Port ${firstAddress.port}, Protocol ${firstAddress.tls ? 'https' : 'http'}, and the Secret Key above.
${sources}`;
}
