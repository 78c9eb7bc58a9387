import {Command, Flags} from '@oclif/core';
import {rotateSecret} from '../../admin/service.js';
import {formatDuration, parseDuration} from '../../common/duration.js';
import {configTarget} from '../../admin/config-target.js';
import {exitCodeFor} from '../../common/user-error.js';

export default class SecretRotate extends Command {
  static override summary = 'Replace the secret key and apply it to the running service.';
  static override description = 'Saves a new key (random unless given) to /etc/dataflux-func-sidecar atomically and reloads the service. The new key is printed once: put it in the Func connector. Without --grace the old key is refused at once; with it, the old key keeps working until the grace ends (dffs-ctl status shows when).';
  static override examples = [
    {description: 'A new random key, the old one refused at once', command: 'sudo <%= config.bin %> <%= command.id %>'},
    {description: 'Keep the old key valid for 15 minutes while Func is updated', command: 'sudo <%= config.bin %> <%= command.id %> --grace 15m'},
    {description: 'Set a key of your own', command: 'sudo <%= config.bin %> <%= command.id %> --secret-key "$NEW_KEY"'},
    {description: 'Replace the named key "deploy" (dffs-ctl keys lists them)', command: 'sudo <%= config.bin %> <%= command.id %> --name deploy'},
    {description: 'The key of a serve run with its own config', command: '<%= config.bin %> <%= command.id %> --config ./sidecar.json'},
  ];

  static override flags = {
    'secret-key': Flags.string({summary: 'The new key (default: 32 random characters).', env: 'DFFS_NEW_SECRET_KEY'}),
    grace: Flags.string({summary: 'How long the old key stays valid: 90s, 15m, 2h, 1d (SECRET_KEY only).'}),
    name: Flags.string({summary: 'The named key to replace (default: SECRET_KEY, named "default").'}),
    config: Flags.string({summary: 'Config file of a serve run with --config (default: the installed service\'s).', env: 'DFFS_CONFIG'}),
  };

  public async run(): Promise<void> {
    const {flags} = await this.parse(SecretRotate);
    const graceSeconds = flags.grace === undefined ? undefined : parseDuration(flags.grace);
    if (flags.grace !== undefined && !graceSeconds) this.error(`--grace ${flags.grace} is not a duration such as 90s, 15m, 2h or 1d`, {exit: 2});
    try {
      const target = configTarget('secret rotate', flags.config);
      const result = await rotateSecret({secretKey: flags['secret-key'], graceSeconds, name: flags.name, target});
      this.log(`New secret key${flags.name ? ` of ${flags.name}` : ''}:\n    ${result.secretKey}\n`);
      this.log(`Update the DataFlux Func connector${flags.name ? ` that uses ${flags.name}` : ''} (Connector / DataFlux Func Sidecar (HTTP) / Secret Key) with it.`);
      if (flags.name === undefined) this.log(result.oldKeyAcceptedUntil
        ? `The old key is still accepted for ${formatDuration(graceSeconds ?? 0)}, until ${result.oldKeyAcceptedUntil}.`
        : 'The old key is no longer accepted.');
      if (!result.reload.applied && result.reload.refused) this.error(`the running daemon kept its previous config, and the old key: ${result.reload.reason}. Fix that, then reload`, {exit: 1});
      if (!result.reload.applied) this.warn(`the running service has not taken the new key: ${result.reload.reason}`);
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
