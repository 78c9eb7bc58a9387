import {fs} from '../common/node-builtins.js';
import {SYSTEM_CONFIG_PATH, writeConfig, type ConfigOverrides} from '../config/config.js';
import {startControlServer} from './control-server.js';
import {Daemon} from './daemon.js';
import {isoTime} from '../common/iso-time.js';
import {EventLog} from './log.js';
import {MetricsEndpoint} from './metrics.js';
import {notifySystemd} from './notify.js';
import {generateSecretKey} from '../config/keys.js';

const {existsSync} = fs;

/** What `npm start` binds when it creates a personal config: loopback only. */
export const PERSONAL_BIND = '127.0.0.1:8099';

/**
 * A personal config (anywhere but /etc, which `install` owns) that does not exist yet is created
 * with a random key, so that a first run serves at once. Returns whether it was created.
 */
export async function ensurePersonalConfig(path: string, overrides: ConfigOverrides): Promise<boolean> {
  if (path === SYSTEM_CONFIG_PATH || existsSync(path)) return false;
  await writeConfig(path, {
    BIND: overrides.bind ?? PERSONAL_BIND,
    SECRET_KEY: overrides.secretKey ?? generateSecretKey(),
    SECRET_CREATED_AT: isoTime(Date.now()),
  });
  return true;
}

export interface ServeOptions {
  configPath: string;
  controlSocket: string;
  /** The replay journal and the running commands, kept across restarts. */
  stateDirectory: string;
  overrides: ConfigOverrides;
  /** Writes log lines (each with its newline). */
  write(text: string): void;
  json: boolean;
  /** Draw the live dashboard instead of writing log lines (a terminal). */
  dashboard: boolean;
}

/**
 * Runs the daemon until SIGTERM or SIGINT (a second one stops at once), re-reading the config on
 * SIGHUP. Resolves when it has stopped.
 */
export async function serve(options: ServeOptions): Promise<void> {
  const log = new EventLog(options.json, options.write);
  let daemon: Daemon;
  // Made with the daemon, before it listens, so that its counters miss no request.
  let metrics!: MetricsEndpoint;
  try {
    daemon = await Daemon.start({configPath: options.configPath, overrides: options.overrides, stateDirectory: options.stateDirectory}, (created) => {
      if (!options.dashboard) created.bus.subscribe(log.add);
      metrics = new MetricsEndpoint(created);
    });
  } finally {
    // Why the start failed (bind-failed, say) is in these lines.
    log.flush();
  }
  let control: {close(): Promise<void>} | undefined;
  try {
    control = await startControlServer(daemon, options.controlSocket);
    daemon.bus.emit({type: 'control-socket', path: options.controlSocket});
  } catch (error) {
    daemon.bus.emit({type: 'control-socket', path: options.controlSocket, error: (error as Error).message});
  }
  // /metrics where METRICS_BIND says, if anywhere; reloads start, move or stop it.
  await metrics.apply();
  // Ready for systemd only now: every bind that can be is listening, and the control socket too.
  const systemd = notifySystemd(daemon);
  let stopRequested = false;
  const onStop = () => {
    if (stopRequested) void daemon.stopNow();
    stopRequested = true;
    void daemon.stop();
  };
  const onReload = () => {
    systemd?.reloading();
    daemon.reload();
    systemd?.ready();
  };
  // serve owns these signals. Libraries' exit hooks re-raise them (conf's atomically -> when-exit
  // kills the process again with the same signal), which would turn one SIGTERM into two.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.removeAllListeners(signal);
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', onReload);
  const stopped = new Promise<void>((resolve) => {
    daemon.bus.subscribe((event) => {
      if (event.type === 'stopped') resolve();
    });
  });
  try {
    if (options.dashboard) {
      // Ink and React are loaded only here: a plain serve stays lean.
      const {daemonFeed, runDashboard} = await import('../ui/run.js');
      await runDashboard({feed: daemonFeed(daemon), colour: !process.env.NO_COLOR, onQuit: onStop, exitWhenStopped: true});
    }
    await stopped;
  } finally {
    // First, so that the log has its last line.
    await metrics.close();
    log.flush();
    systemd?.close();
    await control?.close();
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
    process.off('SIGHUP', onReload);
  }
}
