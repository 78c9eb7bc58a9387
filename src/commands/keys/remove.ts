import {Args, Command, Flags} from '@oclif/core';
import {configTarget} from '../../admin/config-target.js';
import {removeKey} from '../../admin/keys.js';
import {exitCodeFor} from '../../common/user-error.js';

export default class KeysRemove extends Command {
  static override summary = 'Remove a named key: requests signed with it are refused from the reload on.';
  static override examples = [{description: 'Remove the key "ops"', command: 'sudo <%= config.bin %> <%= command.id %> ops'}];

  static override args = {
    name: Args.string({description: 'The key to remove (dffs-ctl keys lists them).', required: true}),
  };

  static override flags = {
    config: Flags.string({summary: 'Config file of a serve run with --config (default: the installed service\'s).', env: 'DFFS_CONFIG'}),
  };

  public async run(): Promise<void> {
    const {args, flags} = await this.parse(KeysRemove);
    try {
      const target = configTarget('keys remove', flags.config);
      await target.write(removeKey(target.read(), args.name));
      const reload = await target.reload();
      this.log(`Removed key ${args.name}.`);
      if (!reload.applied && reload.refused) this.error(`saved, but the running daemon kept its previous config: ${reload.reason}. Fix that, then reload`, {exit: 1});
      if (!reload.applied) this.warn(`not applied yet: ${reload.reason}`);
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
