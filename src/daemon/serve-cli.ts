import {dirname} from 'node:path';
import {fs, util} from '../common/node-builtins.js';
import {ConfigError, defaultConfigPath} from '../config/config.js';
import {ensurePersonalConfig, serve} from './serve.js';
import {controlSocketFor, ensurePrivateDirectory, serveControlSocket, stateDirectoryFor} from '../config/runtime-paths.js';

const {parseArgs} = util;

export interface ServeFlags {
  bind?: string;
  secretKey?: string;
  config?: string;
  controlSocket?: string;
  dashboard: boolean;
}

/** The flags of `serve` with the variables they fall back to; the oclif command declares the same. */
export const SERVE_FLAG_ENV = {
  bind: 'DFFS_BIND',
  'secret-key': 'DFFS_SECRET_KEY',
  config: 'DFFS_CONFIG',
  'control-socket': 'DFFS_CONTROL_SOCKET',
} as const;

/** `serve` as the command line asked for it: the body of the oclif command, and of the lean start. */
export async function runServe(flags: ServeFlags, bin: string): Promise<void> {
  const configPath = flags.config ?? defaultConfigPath();
  const overrides = {bind: flags.bind, secretKey: flags.secretKey};
  // The key must not reach the commands this process starts, nor linger where they could read it.
  delete process.env.DFFS_SECRET_KEY;
  if (await ensurePersonalConfig(configPath, overrides)) {
    process.stderr.write(`Created ${configPath} with a new random secret key.\nRead the key with: ${bin} secret show --config ${configPath}\n`);
  }
  const controlSocket = flags.controlSocket ?? serveControlSocket(configPath);
  // A personal daemon's socket and state live in directories only this user can use.
  if (controlSocket === controlSocketFor(configPath) && !process.env.RUNTIME_DIRECTORY) ensurePrivateDirectory(dirname(controlSocket));
  const stateDirectory = stateDirectoryFor(configPath);
  if (process.env.STATE_DIRECTORY) fs.mkdirSync(stateDirectory, {recursive: true, mode: 0o700});
  else ensurePrivateDirectory(stateDirectory);
  const dashboard = flags.dashboard && process.stdout.isTTY === true;
  await serve({configPath, controlSocket, stateDirectory, overrides, dashboard, json: !process.stdout.isTTY, write: (text) => process.stdout.write(text)});
}

/**
 * The flags of `serve` when they are only its own long flags; undefined for anything else (--help,
 * an unknown or malformed flag), which oclif then handles with its messages.
 */
export function parseLeanServeArgs(args: string[], env: NodeJS.ProcessEnv = process.env): ServeFlags | undefined {
  let values;
  try {
    ({values} = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        bind: {type: 'string'},
        'secret-key': {type: 'string'},
        config: {type: 'string'},
        'control-socket': {type: 'string'},
        dashboard: {type: 'boolean'},
        'no-dashboard': {type: 'boolean'},
      },
    }));
  } catch {
    return undefined;
  }
  if (values.dashboard && values['no-dashboard']) return undefined;
  const valueOf = (name: keyof typeof SERVE_FLAG_ENV) => values[name] ?? (env[SERVE_FLAG_ENV[name]] || undefined);
  return {
    bind: valueOf('bind'),
    secretKey: valueOf('secret-key'),
    config: valueOf('config'),
    controlSocket: valueOf('control-socket'),
    dashboard: !values['no-dashboard'],
  };
}

/**
 * Starts the daemon without loading oclif (14 MB less resident, and sooner) when the arguments
 * allow it. Returns false when they do not, for oclif to handle them.
 */
export async function leanServe(args: string[]): Promise<boolean> {
  const flags = parseLeanServeArgs(args);
  if (!flags) return false;
  try {
    await runServe(flags, 'dffs-ctl');
  } catch (error) {
    process.stderr.write(`Error: ${(error as Error).message}\n`);
    process.exitCode = error instanceof ConfigError ? 78 : 1;
  }
  return true;
}
