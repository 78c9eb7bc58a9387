import {chmodSync, chownSync, closeSync, cpSync, existsSync, lchownSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync} from 'node:fs';
import {networkInterfaces} from 'node:os';
import {basename, dirname, join, relative, resolve} from 'node:path';
import {DEFAULT_BIND, defaultAllowFrom, parseBindList} from '../config/bind.js';
import {ConfigError, NUMERIC_SETTINGS, SYSTEM_CONFIG_PATH, validateConfig, writeConfig, type StoredConfig} from '../config/config.js';
import {readSnapshot} from '../client/control-client.js';
import {probeBind} from '../client/probe.js';
import {parseLegacyConfig} from './legacy-config.js';
import {BIN_DIR, COMMANDS_HOME, CURRENT_LINK, DAEMON_USER, LIB_DIR, ORIGINAL_BACKUP_DIR, RELEASES_DIR, RUNNER_NAME, RUNNER_SERVICE_PATH, RUNNER_SOCKET_PATH, RUNNER_SOCKET_UNIT, SERVICE_NAME, SERVICE_USER, STATE_DIR, UNIT_PATH, WRAPPERS} from './paths.js';
import {shellQuote, untrustedRuntimeReason} from './runtime.js';
import {loadSnapshots, restoreSnapshot, saveSnapshots, takeSnapshot, type PathSnapshot} from './snapshot.js';
import {run, SystemError, systemctl, systemdIsRunning, unitState} from './systemd.js';
import {INSTALL_MARK, renderUnits, type Units} from './unit.js';
import {UserError} from '../common/user-error.js';
import {VERSION} from '../protocol/version.js';
import {SERVICE_CONTROL_SOCKET} from '../config/runtime-paths.js';
import {generateSecretKey, newSecretKeyProblem} from '../config/keys.js';

export class InstallError extends UserError {}

export function requireRoot(command: string): void {
  if (process.getuid?.() !== 0) throw new InstallError(`must run as root: try sudo dffs-ctl ${command}`, 77);
}

export function requireSystemd(): void {
  if (!systemdIsRunning()) throw new InstallError('systemd is not running on this host: the sidecar is installed as a systemd service', 69);
}

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

/** The dependencies to copy: production packages from the lock file; all of node_modules without one. */
function productionPackages(root: string): Set<string> | undefined {
  const lockPath = join(root, 'package-lock.json');
  if (!existsSync(lockPath)) return undefined;
  const lock = JSON.parse(readFileSync(lockPath, 'utf8')) as {packages: Record<string, {dev?: boolean; optional?: boolean}>};
  return new Set(Object.entries(lock.packages).filter(([path, info]) => path.startsWith('node_modules/') && !info.dev).map(([path]) => path));
}

/** Where an offline bundle's application keeps its own Node.js runtime. */
export const BUNDLED_NODE = 'runtime/bin/node';

/**
 * Copies the program (bin, dist, manifest, a bundled runtime, production node_modules) into a new
 * release directory, which stays root's alone until sealRelease: no one can open a file in it
 * while its mode is still the source's. Symlinks are copied as what they lead to: a link out of
 * the release would let its owner change what root runs.
 */
export function copyRelease(sourceRoot: string, target: string): void {
  const packages = productionPackages(sourceRoot);
  const wanted = (path: string): boolean => {
    const rel = relative(sourceRoot, path);
    if (rel === '' || rel === 'package.json' || rel === 'oclif.manifest.json') return true;
    if (/^(bin|dist|runtime)(\/|$)/.test(rel)) return true;
    if (!/^node_modules(\/|$)/.test(rel) || /(^|\/)\.bin(\/|$)/.test(rel)) return false;
    if (!packages || rel === 'node_modules') return true;
    for (const pkg of packages) {
      if (rel === pkg || rel.startsWith(`${pkg}/`) || pkg.startsWith(`${rel}/`)) return true;
    }
    return false;
  };
  for (const directory of [LIB_DIR, RELEASES_DIR]) {
    mkdirSync(directory, {recursive: true});
    chmodSync(directory, 0o755);
  }
  mkdirSync(target, {mode: 0o700});
  chmodSync(target, 0o700);
  cpSync(sourceRoot, target, {recursive: true, filter: wanted, dereference: true});
  for (const required of ['package.json', 'bin/run.js', 'dist/commands/serve.js']) {
    if (!existsSync(join(target, required))) throw new InstallError(`${sourceRoot} has no ${required}: run npm ci (it builds dist/) first`);
  }
}

/**
 * Makes every file of a release root's, 0644 or 0755 (0755 when it was executable at all), with
 * no set-id bit, whatever the source's modes and root's umask were; then opens the release to all.
 */
function sealRelease(release: string): void {
  const seal = (path: string) => {
    const info = lstatSync(path);
    if (info.isDirectory()) for (const name of readdirSync(path)) seal(join(path, name));
    lchownSync(path, 0, 0);
    if (!info.isSymbolicLink()) chmodSync(path, info.isDirectory() || (info.mode & 0o111) !== 0 ? 0o755 : 0o644);
  };
  for (const name of readdirSync(release)) seal(join(release, name));
  lchownSync(release, 0, 0);
  chmodSync(release, 0o755);
}

/**
 * Copies a file into a release that is still root's alone. The source is read from an open
 * descriptor: a Node.js being run is read through /proc/self/exe, the very file running, which a
 * rename over its path does not change.
 */
function copyInto(source: string, target: string): void {
  mkdirSync(dirname(target), {recursive: true});
  const from = openSync(source, 'r');
  const to = openSync(target, 'wx', 0o700);
  const chunk = Buffer.allocUnsafe(1 << 20);
  try {
    for (let read = readSync(from, chunk); read > 0; read = readSync(from, chunk)) writeSync(to, chunk, 0, read);
  } finally {
    closeSync(from);
    closeSync(to);
  }
}

/** Compares two files a megabyte at a time: a runtime is 120 MB, too much to hold twice on a small host. */
function sameContent(a: string, b: string): boolean {
  if (statSync(a).size !== statSync(b).size) return false;
  const [fileA, fileB] = [openSync(a, 'r'), openSync(b, 'r')];
  const [chunkA, chunkB] = [Buffer.alloc(1 << 20), Buffer.alloc(1 << 20)];
  try {
    for (;;) {
      const read = readSync(fileA, chunkA);
      if (readSync(fileB, chunkB) !== read || !chunkA.subarray(0, read).equals(chunkB.subarray(0, read))) return false;
      if (read === 0) return true;
    }
  } finally {
    closeSync(fileA);
    closeSync(fileB);
  }
}

/** An upgrade with the same bundled Node.js links the previous release's copy: 120 MB less on disk. */
function shareUnchangedRuntime(release: string, previousRelease: string | undefined): void {
  const runtime = join(release, BUNDLED_NODE);
  const previous = previousRelease && join(previousRelease, BUNDLED_NODE);
  if (!previous || !existsSync(runtime) || !existsSync(previous) || !sameContent(runtime, previous)) return;
  rmSync(runtime);
  linkSync(previous, runtime);
}

/** Replaces a file by writing a temporary one beside it and renaming it over. */
function writeAtomic(path: string, content: string, mode: number): void {
  const temporary = `${path}.dffs-new`;
  writeFileSync(temporary, content, {mode});
  chmodSync(temporary, mode);
  renameSync(temporary, path);
}

function pointCurrentAt(release: string): void {
  const temporary = `${CURRENT_LINK}.dffs-new`;
  rmSync(temporary, {force: true});
  symlinkSync(release, temporary);
  renameSync(temporary, CURRENT_LINK);
}

function currentRelease(): string | undefined {
  try {
    return readlinkSync(CURRENT_LINK);
  } catch {
    return undefined;
  }
}

/**
 * Node.js flags of the installed program. A young generation of 2 MB semi-spaces keeps the daemon
 * at about 103 MiB under a burst of 32 concurrent commands on Node 24 (192 MiB with V8's default),
 * at the same rate (README, Performance).
 */
export const NODE_FLAGS = ['--max-semi-space-size=2'];

function wrapperScript(nodePath: string): string {
  return `#!/bin/sh\n${INSTALL_MARK}: the sidecar with the Node.js it was installed with.\nexec ${shellQuote(nodePath)} ${NODE_FLAGS.join(' ')} ${shellQuote(`${CURRENT_LINK}/bin/run.js`)} "$@"\n`;
}

async function userExists(name: string): Promise<boolean> {
  try {
    await run('getent', ['passwd', name]);
    return true;
  } catch {
    return false;
  }
}

/** The user commands run as (the manual's dffs, kept if it exists) and the daemon's own. */
async function ensureServiceUsers(log: (line: string) => void): Promise<void> {
  for (const [user, home, comment] of [
    [SERVICE_USER, COMMANDS_HOME, 'DataFlux Func Sidecar commands'],
    [DAEMON_USER, STATE_DIR, 'DataFlux Func Sidecar'],
  ] as const) {
    if (await userExists(user)) continue;
    await run('useradd', ['--system', '--user-group', '--home-dir', home, '--no-create-home', '--shell', '/usr/sbin/nologin', '--comment', comment, user]);
    log(`Created system user ${user}`);
  }
}

async function groupId(name: string): Promise<number> {
  return Number((await run('getent', ['group', name])).split(':')[2]);
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

/** How an earlier version of install kept the original's config: beside it, as `<config>.orig-<time>`. */
const LEGACY_BACKUP_PREFIX = `${basename(SYSTEM_CONFIG_PATH)}.orig-`;

/** What the original Sidecar's service was doing when we took its place, to leave it so again. */
interface OriginalState {
  enabled: boolean;
  active: boolean;
  savedAt: string;
}

/** Paths an install writes over, whose previous content a rollback or restore puts back. */
const REPLACED_PATHS = [...WRAPPERS.map((name) => join(BIN_DIR, name)), UNIT_PATH, SYSTEM_CONFIG_PATH, RUNNER_SOCKET_PATH, RUNNER_SERVICE_PATH];

/** True when a snapshot is a file of the original Sidecar's rather than one we wrote. */
function isOriginalFile(snapshot: PathSnapshot): boolean {
  return snapshot.kind === 'file' && !snapshot.content.includes(INSTALL_MARK) && !(snapshot.path === SYSTEM_CONFIG_PATH && isJson(snapshot.content));
}

function isJson(content: Buffer): boolean {
  try {
    JSON.parse(content.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

/** The Node.js the installed program runs on: the one given if only root can change it, else a copy in the release. */
function serviceRuntime(release: string, nodePath: string, log: (line: string) => void): string {
  if (existsSync(join(release, BUNDLED_NODE))) return join(CURRENT_LINK, BUNDLED_NODE);
  const running = nodePath === process.execPath;
  // Linux names the file running as "PATH (deleted)" once another file has been renamed over PATH.
  const reason = running && !existsSync(nodePath) ? `${nodePath} was replaced while install ran` : untrustedRuntimeReason(nodePath);
  if (reason === undefined) return realpathSync(nodePath);
  copyInto(running ? '/proc/self/exe' : nodePath, join(release, BUNDLED_NODE));
  log(`Copied ${nodePath} into the release, as root runs it and ${reason}. (This install itself ran it as root: install Node.js system-wide, or use the offline bundle, to run nothing a user can change.)`);
  return join(CURRENT_LINK, BUNDLED_NODE);
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

/** Stops the command runner: its socket, and every runner with what it still runs (stopped ones too). */
async function stopRunner(): Promise<void> {
  await systemctl('disable', '--now', '--quiet', RUNNER_SOCKET_UNIT).catch(() => undefined);
  await systemctl('kill', '--signal=SIGKILL', `${RUNNER_NAME}@*.service`).catch(() => undefined);
  await systemctl('stop', `${RUNNER_NAME}@*.service`).catch(() => undefined);
}

/**
 * Puts back files and units as they were, the command runner's socket included: stopped and
 * disabled first (systemctl cannot once its file is gone), and started again if it was there.
 */
async function restoreUnits(replaced: PathSnapshot[]): Promise<void> {
  await stopRunner();
  for (const snapshot of replaced) restoreSnapshot(snapshot);
  await systemctl('daemon-reload');
  if (existsSync(RUNNER_SOCKET_PATH)) await systemctl('enable', '--now', '--quiet', RUNNER_SOCKET_UNIT);
}

/** Stops our service and puts back the files it replaced; the original's service is left as it was found. */
async function putBack(replaced: PathSnapshot[], original: OriginalState | undefined): Promise<void> {
  await systemctl('disable', '--now', '--quiet', SERVICE_NAME).catch(() => undefined);
  await restoreUnits(replaced);
  if (original?.enabled) await systemctl('enable', '--quiet', SERVICE_NAME);
  if (original?.active) await systemctl('restart', SERVICE_NAME);
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

export interface UninstallResult {
  removed: string[];
  /** The original Sidecar's files put back, with --restore-original. */
  restored: string[];
}

/**
 * Stops and removes the service and the program; with purge, also the config, state, user and
 * the backup of the original Sidecar; with restoreOriginal, puts the original back as it was.
 */
export async function uninstall(options: {purge: boolean; restoreOriginal: boolean}): Promise<UninstallResult> {
  let original: {details: OriginalState; snapshots: PathSnapshot[]} | undefined;
  if (options.restoreOriginal) {
    if (!existsSync(ORIGINAL_BACKUP_DIR)) throw new InstallError(`there is no backup of the original Sidecar in ${ORIGINAL_BACKUP_DIR}: it is kept only when install replaced one`, 66);
    original = loadSnapshots<OriginalState>(ORIGINAL_BACKUP_DIR);
  }
  const removed: string[] = [];
  if ((await unitState()).loaded) {
    await systemctl('disable', '--now', '--quiet', SERVICE_NAME);
    removed.push(`service ${SERVICE_NAME}`);
  }
  await stopRunner();
  const paths = [UNIT_PATH, RUNNER_SOCKET_PATH, RUNNER_SERVICE_PATH, ...WRAPPERS.map((name) => join(BIN_DIR, name)), LIB_DIR];
  if (options.purge) {
    const etc = dirname(SYSTEM_CONFIG_PATH);
    paths.push(STATE_DIR, COMMANDS_HOME, SYSTEM_CONFIG_PATH, ORIGINAL_BACKUP_DIR, ...readdirSync(etc).filter((name) => name.startsWith(LEGACY_BACKUP_PREFIX)).map((name) => join(etc, name)));
  }
  for (const path of paths) {
    if (existsSync(path)) {
      rmSync(path, {recursive: true, force: true});
      removed.push(path);
    }
  }
  const restored: string[] = [];
  if (original) {
    for (const snapshot of original.snapshots) {
      restoreSnapshot(snapshot);
      if (snapshot.kind !== 'absent') restored.push(snapshot.path);
    }
    await systemctl('daemon-reload');
    if (original.details.enabled) await systemctl('enable', '--quiet', SERVICE_NAME);
    if (original.details.active) await systemctl('restart', SERVICE_NAME);
    rmSync(ORIGINAL_BACKUP_DIR, {recursive: true, force: true});
    return {removed, restored};
  }
  await systemctl('daemon-reload');
  for (const user of options.purge ? [SERVICE_USER, DAEMON_USER] : []) {
    if (!(await userExists(user))) continue;
    try {
      await run('userdel', [user]);
      removed.push(`user ${user}`);
    } catch (error) {
      throw new SystemError(`could not remove user ${user}: ${(error as Error).message}`);
    }
  }
  return {removed, restored};
}
