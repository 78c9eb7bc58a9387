import {Command, Flags} from '@oclif/core';
import {ConfigError} from '../config/config.js';
import {runServe, SERVE_FLAG_ENV} from '../daemon/serve-cli.js';

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
    bind: Flags.string({summary: 'Comma-separated host:port list to listen on (IPv6 as [::1]:8099).', env: SERVE_FLAG_ENV.bind}),
    'secret-key': Flags.string({summary: 'Secret key that requests must be signed with (prefer the config file: flags show in ps).', env: SERVE_FLAG_ENV['secret-key']}),
    config: Flags.string({summary: 'Config file to read.', env: SERVE_FLAG_ENV.config}),
    dashboard: Flags.boolean({
      summary: 'Draw the live dashboard when stdout is a terminal (--no-dashboard: log lines instead).',
      default: true,
      allowNo: true,
    }),
    'control-socket': Flags.string({
      summary: 'Unix socket that publishes status and events to dffs-ctl status and tui.',
      description: 'Default: $RUNTIME_DIRECTORY/control.sock under systemd, /run/dataflux-func-sidecar/control.sock for root, else a per-user path under $XDG_RUNTIME_DIR.',
      env: SERVE_FLAG_ENV['control-socket'],
    }),
  };

  public async run(): Promise<void> {
    const {flags} = await this.parse(Serve);
    try {
      await runServe(
        {bind: flags.bind, secretKey: flags['secret-key'], config: flags.config, controlSocket: flags['control-socket'], dashboard: flags.dashboard},
        this.config.bin,
      );
    } catch (error) {
      if (error instanceof ConfigError) this.error(error.message, {exit: 78});
      this.error((error as Error).message, {exit: 1});
    }
  }
}
