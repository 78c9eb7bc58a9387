import {Flags} from '@oclif/core';
import {JsonCommand} from '../../client/json-command.js';
import {configTarget} from '../../admin/config-target.js';
import {listKeys, type KeyListing} from '../../admin/keys.js';
import {exitCodeFor} from '../../common/user-error.js';
import {oneLine, terminalSafeJson} from '../../common/printable.js';

export default class Keys extends JsonCommand {
  static override summary = 'List the keys requests may be signed with, and what each may run.';
  static override description = `SECRET_KEY is listed as "default" and may run anything, as under the original Sidecar. Named keys (keys add) are for one Func connector or script group each, with an optional list of patterns the whole command must match, a fixed working directory, the variables a request may set, and the longest timeout. Secrets are never listed: secret show --name prints one.`;
  static override examples = [
    {description: 'The installed service\'s keys', command: 'sudo <%= config.bin %> <%= command.id %>'},
    {description: 'As JSON', command: 'sudo <%= config.bin %> <%= command.id %> --json'},
  ];

  static override enableJsonFlag = true;

  static override flags = {
    config: Flags.string({summary: 'Config file of a serve run with --config (default: the installed service\'s).', env: 'DFFS_CONFIG'}),
  };

  public async run(): Promise<{keys: KeyListing[]}> {
    const {flags} = await this.parse(Keys);
    try {
      const keys = listKeys(configTarget('keys', flags.config).read());
      if (keys.length === 0) this.log('No keys: install or serve sets SECRET_KEY.');
      for (const key of keys) {
        const limits = [
          key.unrestricted ? 'any command' : `commands matching ${key.allow?.map((pattern) => terminalSafeJson(JSON.stringify(pattern))).join(' or ') || '(none)'}`,
          key.workdir ? `in ${key.workdir}` : '',
          key.env ? `variables ${key.env.join(', ') || '(none)'}` : '',
          key.maxTimeout ? `at most ${key.maxTimeout} s` : '',
        ].filter(Boolean);
        this.log(`${oneLine(key.name).padEnd(16)} ${oneLine(limits.join('; '))}${key.createdAt ? ` (since ${oneLine(key.createdAt)})` : ''}`);
      }
      return {keys};
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
