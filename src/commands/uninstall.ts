import {Command, Flags} from '@oclif/core';
import {requireRoot, uninstall} from '../install.js';
import {exitCodeFor} from '../user-error.js';

export default class Uninstall extends Command {
  static override summary = 'Stop and remove the sidecar service and program.';
  static override description = 'Stops and disables dataflux-func-sidecar, removes its unit, /usr/local/lib/dataflux-func-sidecar and the two programs in /usr/local/bin. The config is kept unless --purge, which also removes /etc/dataflux-func-sidecar, /var/lib/dataflux-func-sidecar and the dffs user.';
  static override examples = [
    {description: 'Remove the service, keep the config and key', command: 'sudo <%= config.bin %> <%= command.id %>'},
    {description: 'Remove everything, the dffs user included', command: 'sudo <%= config.bin %> <%= command.id %> --purge'},
  ];

  static override flags = {
    purge: Flags.boolean({summary: 'Also remove the config, the state directory and the dffs user.', default: false}),
  };

  public async run(): Promise<void> {
    const {flags} = await this.parse(Uninstall);
    try {
      requireRoot('uninstall');
      const {removed} = await uninstall(flags.purge);
      this.log(removed.length > 0 ? `Removed:\n${removed.map((item) => `  ${item}`).join('\n')}` : 'Nothing to remove: the sidecar is not installed.');
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
