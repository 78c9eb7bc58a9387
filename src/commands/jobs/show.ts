import {Args} from '@oclif/core';
import {JsonCommand} from '../../client/json-command.js';
import {showJob} from '../../client/jobs-client.js';
import {jobDetails} from '../../client/job-format.js';
import {resolveTarget} from '../../client/target.js';
import {targetFlags} from '../../client/target-flags.js';
import {exitCodeFor} from '../../common/user-error.js';
import type {JobRecordView} from '../../protocol/job-record.js';

export default class JobsShow extends JsonCommand {
  static override summary = 'Show one job: its state, result, output sizes and callback.';
  static override examples = [
    {description: 'A job by its id (exec --no-wait and jobs print it)', command: 'sudo <%= config.bin %> <%= command.id %> 0d9f6a8e-5b1c-4f3e-9a51-7c2d8e4b6f10'},
    {description: 'As JSON', command: 'sudo <%= config.bin %> <%= command.id %> 0d9f6a8e-5b1c-4f3e-9a51-7c2d8e4b6f10 --json'},
  ];

  static override enableJsonFlag = true;

  static override args = {id: Args.string({description: 'The job id.', required: true})};

  static override flags = targetFlags;

  public async run(): Promise<JobRecordView> {
    const {args, flags} = await this.parse(JobsShow);
    try {
      const job = await showJob(resolveTarget(flags), args.id);
      for (const line of jobDetails(job)) this.log(line);
      return job;
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
