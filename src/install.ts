import {chmodSync, chownSync, closeSync, cpSync, existsSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync} from 'node:fs';
import {dirname, join, relative} from 'node:path';
import {DEFAULT_BIND, parseBindList} from './bind.js';
import {
  ConfigError,
  generateSecretKey,
  NUMERIC_SETTINGS,
  secretKeyProblem,
  SYSTEM_CONFIG_PATH,
  validateConfig,
  writeConfig,
  type StoredConfig,
} from './config.js';
import {readSnapshot, SERVICE_CONTROL_SOCKET} from './control.js';
import {probeBind} from './probe.js';
import {parseLegacyConfig} from './system/legacy-config.js';
import {BIN_DIR, CURRENT_LINK, LIB_DIR, RELEASES_DIR, SERVICE_NAME, SERVICE_USER, STATE_DIR, UNIT_PATH, WRAPPERS} from './system/paths.js';
import {run, SystemError, systemctl, systemdIsRunning, unitState} from './system/systemd.js';
import {renderUnit} from './system/unit.js';
import {UserError} from './user-error.js';
import {VERSION} from './version.js';

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
export function planConfig(previousText: string | undefined, flags: {bind?: string; secretKey?: string}, now = new Date()): ConfigPlan {
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
    const problem = secretKeyProblem(flags.secretKey);
    if (problem) throw new ConfigError(`--secret-key ${problem}`);
    if (flags.secretKey !== config.SECRET_KEY) {
      config.SECRET_KEY = flags.secretKey;
      config.SECRET_CREATED_AT = now.toISOString();
      delete config.OLD_SECRET_KEY;
      delete config.OLD_SECRET_EXPIRES_AT;
    }
  }
  config.BIND ??= DEFAULT_BIND;
  if (config.SECRET_KEY === undefined) {
    config.SECRET_KEY = generateSecretKey();
    config.SECRET_CREATED_AT = now.toISOString();
  }
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

/** Copies the program (bin, dist, manifest, a bundled runtime, production node_modules) into a new release directory. */
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
  mkdirSync(dirname(target), {recursive: true});
  cpSync(sourceRoot, target, {recursive: true, filter: wanted, verbatimSymlinks: true});
  for (const required of ['package.json', 'bin/run.js', 'dist/commands/serve.js']) {
    if (!existsSync(join(target, required))) throw new InstallError(`${sourceRoot} has no ${required}: run npm ci (it builds dist/) first`);
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
  return `#!/bin/sh\n# Written by dffs-ctl install: the sidecar with the Node.js it was installed with.\nexec '${nodePath}' ${NODE_FLAGS.join(' ')} '${CURRENT_LINK}/bin/run.js' "$@"\n`;
}

function readIfExists(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

async function userExists(name: string): Promise<boolean> {
  try {
    await run('getent', ['passwd', name]);
    return true;
  } catch {
    return false;
  }
}

async function ensureServiceUser(log: (line: string) => void): Promise<void> {
  if (await userExists(SERVICE_USER)) return;
  await run('useradd', ['--system', '--user-group', '--home-dir', STATE_DIR, '--no-create-home', '--shell', '/usr/sbin/nologin', '--comment', 'DataFlux Func Sidecar', SERVICE_USER]);
  log(`Created system user ${SERVICE_USER}`);
}

async function groupId(name: string): Promise<number> {
  return Number((await run('getent', ['group', name])).split(':')[2]);
}

/** Writes the system config atomically, readable by the service's group only. */
export async function writeSystemConfig(config: StoredConfig): Promise<void> {
  await writeConfig(SYSTEM_CONFIG_PATH, config);
  chownSync(SYSTEM_CONFIG_PATH, 0, await groupId(SERVICE_USER));
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
  while (Date.now() < deadline) {
    const state = await unitState();
    if (state.activeState === 'failed') {
      last = 'the service failed';
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

export interface InstallOptions {
  bind?: string;
  secretKey?: string;
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
  configChanged: boolean;
  importedLegacyConfig?: string;
  unit: string;
}

/** Seconds systemd waits for a stop: the drain timeout plus a margin. */
export function stopTimeoutSeconds(config: StoredConfig): number {
  return (config.DRAIN_TIMEOUT ?? NUMERIC_SETTINGS.DRAIN_TIMEOUT.default) + 30;
}

/**
 * Installs, or upgrades, the service. An upgrade that does not come up healthy is rolled back:
 * the previous release and config are put back and restarted.
 */
export async function install(options: InstallOptions): Promise<InstallResult> {
  const plan = planConfig(readSystemConfigText(), {bind: options.bind, secretKey: options.secretKey});
  const previousRelease = currentRelease();
  const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
  const release = join(RELEASES_DIR, `${VERSION}-${stamp}`);
  const unit = renderUnit({allowSetuid: options.allowSetuid, stopTimeoutSeconds: stopTimeoutSeconds(plan.config)});
  const result: InstallResult = {
    upgrade: previousRelease !== undefined,
    dryRun: options.dryRun,
    version: VERSION,
    release,
    ...(previousRelease ? {previousRelease} : {}),
    bind: plan.config.BIND ?? DEFAULT_BIND,
    secretKey: plan.config.SECRET_KEY ?? '',
    configChanged: plan.changed,
    unit,
  };
  if (options.dryRun) return result;

  await ensureServiceUser(options.log);
  copyRelease(options.sourceRoot, release);
  shareUnchangedRuntime(release, previousRelease);
  // An offline bundle brings its runtime, which the wrappers run through the current link.
  const bundled = existsSync(join(release, BUNDLED_NODE));
  const serviceNode = bundled ? join(release, BUNDLED_NODE) : options.nodePath;
  try {
    await run('runuser', ['-u', SERVICE_USER, '--', serviceNode, '--version']);
  } catch {
    rmSync(release, {recursive: true, force: true});
    throw new InstallError(`${serviceNode} cannot be run by user ${SERVICE_USER} (is it under /root or a home directory?): install Node.js system-wide, or use the offline bundle`);
  }
  options.log(`Copied the program${bundled ? ' and its Node.js runtime' : ''} to ${release}`);
  const previousWrappers = WRAPPERS.map((name) => [join(BIN_DIR, name), readIfExists(join(BIN_DIR, name))] as const);
  const wrapper = wrapperScript(bundled ? join(CURRENT_LINK, BUNDLED_NODE) : options.nodePath);
  for (const [path] of previousWrappers) writeAtomic(path, wrapper, 0o755);
  pointCurrentAt(release);

  if (plan.legacy) {
    // Conf cannot open a file that is not JSON: the original moves aside first, and back on failure.
    result.importedLegacyConfig = `${SYSTEM_CONFIG_PATH}.orig-${stamp}`;
    renameSync(SYSTEM_CONFIG_PATH, result.importedLegacyConfig);
    try {
      await writeSystemConfig(plan.config);
    } catch (error) {
      renameSync(result.importedLegacyConfig, SYSTEM_CONFIG_PATH);
      throw error;
    }
    options.log(`Imported the original Sidecar's config; the old file is kept as ${result.importedLegacyConfig}`);
  } else if (plan.changed || plan.previousText === undefined) {
    await writeSystemConfig(plan.config);
  }

  const previousUnit = readIfExists(UNIT_PATH);
  writeAtomic(UNIT_PATH, unit, 0o644);
  await systemctl('daemon-reload');
  await systemctl('enable', '--quiet', SERVICE_NAME);
  try {
    await systemctl('restart', SERVICE_NAME);
    await waitHealthy(VERSION, plan.config);
  } catch (error) {
    if (!previousRelease) throw error;
    pointCurrentAt(previousRelease);
    for (const [path, text] of previousWrappers) if (text !== undefined) writeAtomic(path, text, 0o755);
    if (plan.previousText !== undefined) {
      writeAtomic(SYSTEM_CONFIG_PATH, plan.previousText, 0o640);
      chownSync(SYSTEM_CONFIG_PATH, 0, await groupId(SERVICE_USER));
    }
    if (previousUnit !== undefined) writeAtomic(UNIT_PATH, previousUnit, 0o644);
    await systemctl('daemon-reload');
    await systemctl('restart', SERVICE_NAME);
    rmSync(release, {recursive: true, force: true});
    throw new InstallError(`the upgrade to ${VERSION} failed, so the previous release (${previousRelease}) was put back and restarted.\nCause: ${(error as Error).message}`);
  }
  for (const old of readdirSync(RELEASES_DIR).map((name) => join(RELEASES_DIR, name))) {
    if (old !== release && old !== previousRelease) rmSync(old, {recursive: true, force: true});
  }
  return result;
}

/** The block the manual shows after an install, with start and stop the right way round. */
export function installSummary(result: Pick<InstallResult, 'bind' | 'secretKey'>): string {
  const addresses = parseBindList(result.bind);
  const firstAddress = addresses.find((address) => address.host !== '127.0.0.1') ?? addresses[0];
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
with Host ${firstAddress.host}, Port ${firstAddress.port}, Protocol http, and the Secret Key above.
`;
}

export interface UninstallResult {
  removed: string[];
}

/** Stops and removes the service and the program; with purge, also the config, state and user. */
export async function uninstall(purge: boolean): Promise<UninstallResult> {
  const removed: string[] = [];
  if ((await unitState()).loaded) {
    await systemctl('disable', '--now', '--quiet', SERVICE_NAME);
    removed.push(`service ${SERVICE_NAME}`);
  }
  const paths = [UNIT_PATH, ...WRAPPERS.map((name) => join(BIN_DIR, name)), LIB_DIR];
  if (purge) {
    paths.push(STATE_DIR, SYSTEM_CONFIG_PATH, ...readdirSync(dirname(SYSTEM_CONFIG_PATH)).filter((name) => name.startsWith('dataflux-func-sidecar.orig-')).map((name) => join('/etc', name)));
  }
  for (const path of paths) {
    if (existsSync(path)) {
      rmSync(path, {recursive: true, force: true});
      removed.push(path);
    }
  }
  await systemctl('daemon-reload');
  if (purge && (await userExists(SERVICE_USER))) {
    try {
      await run('userdel', [SERVICE_USER]);
      removed.push(`user ${SERVICE_USER}`);
    } catch (error) {
      throw new SystemError(`could not remove user ${SERVICE_USER}: ${(error as Error).message}`);
    }
  }
  return {removed};
}
