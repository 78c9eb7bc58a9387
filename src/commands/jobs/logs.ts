import {Args, Command, Flags} from '@oclif/core';
import {readOutput} from '../../client/jobs-client.js';
import {resolveTarget} from '../../client/target.js';
import {targetFlags} from '../../client/target-flags.js';
import {exitCodeFor} from '../../common/user-error.js';

export default class JobsLogs extends Command {
  static override summary = 'Print a job\'s output: what the sidecar kept, and with --follow the rest as it comes.';
  static override description = `stdout goes to stdout and stderr to stderr. The sidecar keeps the first and the last 64 KiB of each stream; a line on stderr says how much of a longer output was not kept. Ctrl-C stops following; the job runs on.`;
  static override examples = [
    {description: 'Follow a running job', command: 'sudo <%= config.bin %> <%= command.id %> -f 0d9f6a8e-5b1c-4f3e-9a51-7c2d8e4b6f10'},
    {description: 'The output of a finished job', command: 'sudo <%= config.bin %> <%= command.id %> 0d9f6a8e-5b1c-4f3e-9a51-7c2d8e4b6f10'},
  ];

  static override args = {id: Args.string({description: 'The job id.', required: true})};

  static override flags = {
    follow: Flags.boolean({char: 'f', summary: 'Follow the output until the job ends.'}),
    ...targetFlags,
  };

  public async run(): Promise<void> {
    const {args, flags} = await this.parse(JobsLogs);
    try {
      await readOutput(resolveTarget(flags), args.id, flags.follow, {
        data: (stream, text) => (stream === 'stdout' ? process.stdout : process.stderr).write(text),
        skipped: (stream, bytes) => process.stderr.write(`\ndffs-ctl: [${bytes} bytes of ${stream} not kept]\n`),
      });
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
