import {Args, Flags} from '@oclif/core';
import {JsonCommand} from '../../client/json-command.js';
import {configTarget} from '../../admin/config-target.js';
import {addKey} from '../../admin/keys.js';
import {exitCodeFor} from '../../common/user-error.js';

export default class KeysAdd extends JsonCommand {
  static override summary = 'Add a named key, limited to the commands it may run, and apply it without a restart.';
  static override description = `Each --allow is a regular expression the whole command must match (it is anchored at both ends whatever is written), so "systemctl restart nginx; rm -rf /" does not match "systemctl restart [a-z]+". Without --allow the key may run anything. A key limited by --allow may set no variables unless --env names them. The new secret is printed once: give it to the Func connector that is to use the key.`;
  static override examples = [
    {description: 'A key that may only restart or query services', command: 'sudo <%= config.bin %> <%= command.id %> ops --allow "systemctl (restart|status) [a-z0-9@.-]+"'},
    {description: 'A key for one script, in its directory, with one variable, for 5 minutes at most', command: 'sudo <%= config.bin %> <%= command.id %> backup --allow "./backup\\.sh( --full)?" --workdir /srv/backup --env TARGET --max-timeout 300'},
  ];

  static override enableJsonFlag = true;

  static override args = {
    name: Args.string({description: 'Lower-case letters, digits, _ . - (shown in the log and the dashboard).', required: true}),
  };

  static override flags = {
    allow: Flags.string({summary: 'A pattern the whole command may match (repeatable).', multiple: true}),
    workdir: Flags.string({summary: 'The directory its commands run in.'}),
    env: Flags.string({summary: 'A variable its requests may set (repeatable).', multiple: true}),
    'max-timeout': Flags.integer({summary: 'The longest timeout its commands may have, in seconds.', min: 1}),
    'secret-key': Flags.string({summary: 'The secret (default: 32 random characters).', env: 'DFFS_NEW_SECRET_KEY'}),
    config: Flags.string({summary: 'Config file of a serve run with --config (default: the installed service\'s).', env: 'DFFS_CONFIG'}),
  };

  public async run(): Promise<{name: string; secretKey: string; reloaded: boolean}> {
    const {args, flags} = await this.parse(KeysAdd);
    try {
      const target = configTarget('keys add', flags.config);
      const {config, secret} = addKey(target.read(), args.name, {
        ...(flags.allow ? {allow: flags.allow} : {}),
        ...(flags.workdir ? {workdir: flags.workdir} : {}),
        ...(flags.env ? {env: flags.env} : {}),
        ...(flags['max-timeout'] ? {maxTimeout: flags['max-timeout']} : {}),
      }, flags['secret-key']);
      await target.write(config);
      const reload = await target.reload();
      this.log(`Key ${args.name}:\n    ${secret}\n`);
      this.log('Give it to the Func connector that is to use this key (Connector / DataFlux Func Sidecar (HTTP) / Secret Key).');
      if (!reload.applied && reload.refused) this.error(`saved, but the running daemon kept its previous config: ${reload.reason}. Fix that, then reload`, {exit: 1});
      if (!reload.applied) this.warn(`not applied yet: ${reload.reason}`);
      return {name: args.name, secretKey: secret, reloaded: reload.applied};
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
