import {Flags} from '@oclif/core';
import {JsonCommand} from '../../client/json-command.js';
import {keySecret} from '../../admin/keys.js';
import {ConfigError, defaultConfigPath, readConfig} from '../../config/config.js';
import {DEFAULT_KEY_NAME} from '../../config/keys.js';

export default class SecretShow extends JsonCommand {
  static override summary = 'Print the secret key that DataFlux Func must sign requests with.';
  static override description = 'Prints the SECRET_KEY of the config, to paste into the Func connector ("Secret Key"). Reading /etc/dataflux-func-sidecar needs root.';
  static override examples = [
    {description: 'The installed service\'s key', command: 'sudo <%= config.bin %> <%= command.id %>'},
    {description: 'The secret of the named key "deploy"', command: 'sudo <%= config.bin %> <%= command.id %> --name deploy'},
    {description: 'The key of a personal config', command: '<%= config.bin %> <%= command.id %> --config ~/.config/dataflux-func-sidecar/config.json'},
  ];

  static override enableJsonFlag = true;

  static override flags = {
    config: Flags.string({summary: 'Config file to read.', env: 'DFFS_CONFIG'}),
    name: Flags.string({summary: 'A named key (dffs-ctl keys lists them; default: SECRET_KEY).'}),
  };

  public async run(): Promise<{secretKey: string; createdAt?: string; config: string}> {
    const {flags} = await this.parse(SecretShow);
    const config = flags.config ?? defaultConfigPath();
    let stored;
    try {
      stored = readConfig(config);
    } catch (error) {
      if (error instanceof ConfigError) this.error(error.message, {exit: 78});
      throw error;
    }
    if (flags.name !== undefined && flags.name !== DEFAULT_KEY_NAME) {
      const secretKey = keySecret(stored, flags.name);
      if (secretKey === undefined) this.error(`${config} has no key named ${flags.name}: ${this.config.bin} keys lists them`, {exit: 1});
      this.log(secretKey);
      const createdAt = stored.KEYS?.[flags.name]?.createdAt;
      return {secretKey, ...(createdAt ? {createdAt} : {}), config};
    }
    if (!stored.SECRET_KEY) {
      this.error(`${config} has no SECRET_KEY: set one with "sudo ${this.config.bin} secret rotate" or run "${this.config.bin} serve" once`, {exit: 1});
    }
    this.log(stored.SECRET_KEY);
    return {secretKey: stored.SECRET_KEY, ...(stored.SECRET_CREATED_AT ? {createdAt: stored.SECRET_CREATED_AT} : {}), config};
  }
}
