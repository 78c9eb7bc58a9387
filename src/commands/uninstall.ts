import {Command, Flags} from '@oclif/core';
import {exitCodeFor} from '../common/user-error.js';
import {requireRoot} from '../admin/preconditions.js';
import {uninstall} from '../admin/uninstall.js';

export default class Uninstall extends Command {
  static override summary = 'Stop and remove the sidecar service and program.';
  static override description = 'Stops and disables dataflux-func-sidecar, removes its unit, /usr/local/lib/dataflux-func-sidecar and the two programs in /usr/local/bin. The config is kept unless --purge, which also removes /etc/dataflux-func-sidecar, /var/lib/dataflux-func-sidecar, the backup of the original Sidecar and the users dffs and dffs-daemon. --restore-original puts back the original Sidecar that install replaced (program, unit, config) and its service as it was.';
  static override examples = [
    {description: 'Remove the service, keep the config and key', command: 'sudo <%= config.bin %> <%= command.id %>'},
    {description: 'Remove everything, the users dffs and dffs-daemon included', command: 'sudo <%= config.bin %> <%= command.id %> --purge'},
    {description: 'Go back to the original Sidecar this one replaced', command: 'sudo <%= config.bin %> <%= command.id %> --restore-original'},
  ];

  static override flags = {
    purge: Flags.boolean({summary: 'Also remove the config, the state directory, the backup of the original Sidecar and the users dffs and dffs-daemon.', default: false, exclusive: ['restore-original']}),
    'restore-original': Flags.boolean({summary: 'Put back the original Sidecar that install replaced, and its service as it was.', default: false}),
  };

  public async run(): Promise<void> {
    const {flags} = await this.parse(Uninstall);
    try {
      requireRoot('uninstall');
      const {removed, restored} = await uninstall({purge: flags.purge, restoreOriginal: flags['restore-original']});
      this.log(removed.length > 0 ? `Removed:\n${removed.map((item) => `  ${item}`).join('\n')}` : 'Nothing to remove: the sidecar is not installed.');
      if (restored.length > 0) this.log(`Put back the original Sidecar:\n${restored.map((item) => `  ${item}`).join('\n')}`);
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
