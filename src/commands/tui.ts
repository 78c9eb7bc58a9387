import {existsSync} from 'node:fs';
import {Command, Flags} from '@oclif/core';
import {defaultConfigPath} from '../config/config.js';
import {controlSocketFor, SERVICE_CONTROL_SOCKET} from '../config/runtime-paths.js';

export default class Tui extends Command {
  static override summary = 'Watch the running sidecar live: requests, commands, refusals, callbacks.';
  static override description = `Attaches to the daemon's control socket (the service's ${SERVICE_CONTROL_SOCKET}, readable by root and the dffs-daemon group, else your own serve's) and draws the dashboard. If the sidecar stops, it says so and reconnects when it is back.

Keys: ↑↓ or j/k select, Enter details, Esc back, / filter, p pause, c clear, ? help, q quit.`;

  static override examples = [
    {description: 'Watch the installed service', command: 'sudo <%= config.bin %> <%= command.id %>'},
    {description: 'Watch the serve started with this config', command: '<%= config.bin %> <%= command.id %> --config ./sidecar.json'},
    {description: 'Watch a serve run with another socket', command: '<%= config.bin %> <%= command.id %> --socket /tmp/sidecar.sock'},
  ];

  static override flags = {
    config: Flags.string({summary: 'Config file of the daemon to watch (its control socket follows from it).', env: 'DFFS_CONFIG'}),
    socket: Flags.string({summary: 'Control socket to attach to (instead of the one of --config).', env: 'DFFS_CONTROL_SOCKET'}),
  };

  public async run(): Promise<void> {
    const {flags} = await this.parse(Tui);
    if (!process.stdout.isTTY) this.error('tui needs a terminal: for a pipe, use dffs-ctl logs -f --json or dffs-ctl status --json', {exit: 2});
    const socket =
      flags.socket ??
      (flags.config === undefined && existsSync(SERVICE_CONTROL_SOCKET) ? SERVICE_CONTROL_SOCKET : controlSocketFor(flags.config ?? defaultConfigPath()));
    const {runDashboard, socketFeed} = await import('../ui/run.js');
    await runDashboard({feed: socketFeed(socket), colour: !process.env.NO_COLOR});
  }
}
