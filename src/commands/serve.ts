import {Command, Flags} from '@oclif/core';
import {ConfigError, defaultConfigPath} from '../config.js';
import {defaultControlSocketPath} from '../control.js';
import {ensurePersonalConfig, serve} from '../serve.js';

export default class Serve extends Command {
  static override summary = 'Run the sidecar daemon in the foreground.';
  static override description = `Listens on every BIND address for DataFlux Func's signed POST /shell requests and runs each command with /bin/sh as the current user (the service runs it as dffs). In a terminal it draws a live dashboard of the requests (q quits, ? lists the keys); otherwise, or with --no-dashboard, it logs one line per event to stdout: JSON when stdout is not a terminal.

The config is /etc/dataflux-func-sidecar for root, otherwise ~/.config/dataflux-func-sidecar/config.json; a personal config that does not exist yet is created with a random secret key. Flags override the file.

Signals: SIGHUP re-reads the config (keys, binds, limits) without dropping running commands; SIGTERM or Ctrl-C stops accepting, lets running commands and their callbacks finish (DRAIN_TIMEOUT), then exits; a second one stops at once.`;

  static override examples = [
    {description: 'Serve with the default config', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'Serve on loopback and IPv6 loopback', command: '<%= config.bin %> <%= command.id %> --bind 127.0.0.1:8099,[::1]:8099'},
    {description: 'Use a config file elsewhere', command: '<%= config.bin %> <%= command.id %> --config ./sidecar.json'},
    {description: 'Log lines in a terminal instead of the dashboard', command: '<%= config.bin %> <%= command.id %> --no-dashboard'},
  ];

  static override flags = {
    bind: Flags.string({summary: 'Comma-separated host:port list to listen on (IPv6 as [::1]:8099).', env: 'DFFS_BIND'}),
    'secret-key': Flags.string({summary: 'Secret key that requests must be signed with (prefer the config file: flags show in ps).', env: 'DFFS_SECRET_KEY'}),
    config: Flags.string({summary: 'Config file to read.', env: 'DFFS_CONFIG'}),
    dashboard: Flags.boolean({
      summary: 'Draw the live dashboard when stdout is a terminal (--no-dashboard: log lines instead).',
      default: true,
      allowNo: true,
    }),
    'control-socket': Flags.string({
      summary: 'Unix socket that publishes status and events to dffs-ctl status and tui.',
      description: 'Default: $RUNTIME_DIRECTORY/control.sock under systemd, /run/dataflux-func-sidecar/control.sock for root, else a per-user path under $XDG_RUNTIME_DIR.',
      env: 'DFFS_CONTROL_SOCKET',
    }),
  };

  public async run(): Promise<void> {
    const {flags} = await this.parse(Serve);
    const configPath = flags.config ?? defaultConfigPath();
    const overrides = {bind: flags.bind, secretKey: flags['secret-key']};
    // The key must not reach the commands this process starts, nor linger where they could read it.
    delete process.env.DFFS_SECRET_KEY;
    try {
      if (await ensurePersonalConfig(configPath, overrides)) {
        process.stderr.write(
          `Created ${configPath} with a new random secret key.\n` +
            `Read the key with: ${this.config.bin} secret show --config ${configPath}\n`,
        );
      }
      const controlSocket = flags['control-socket'] ?? defaultControlSocketPath();
      const dashboard = flags.dashboard && process.stdout.isTTY === true;
      await serve({configPath, controlSocket, overrides, dashboard, json: !process.stdout.isTTY, writeLine: (line) => process.stdout.write(`${line}\n`)});
    } catch (error) {
      if (error instanceof ConfigError) this.error(error.message, {exit: 78});
      this.error((error as Error).message, {exit: 1});
    }
  }
}
