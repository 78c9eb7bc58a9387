import {Args} from '@oclif/core';
import {JsonCommand} from '../../client/json-command.js';
import {oneLine} from '../../common/printable.js';
import {cancelJob} from '../../client/jobs-client.js';
import {resolveTarget} from '../../client/target.js';
import {targetFlags} from '../../client/target-flags.js';
import {exitCodeFor} from '../../common/user-error.js';
import type {JobRecordView} from '../../protocol/job-record.js';

export default class JobsCancel extends JsonCommand {
  static override summary = 'Cancel a queued or running job: its whole process tree ends.';
  static override description = `A running job gets SIGTERM, then SIGKILL after KILL_GRACE, as at its timeout; a queued one never starts. Its record, its waiting reply and its callback (sent with what it printed) say "cancelled". Exits 1 if the job has already ended.`;
  static override examples = [{description: 'Cancel a job', command: 'sudo <%= config.bin %> <%= command.id %> 0d9f6a8e-5b1c-4f3e-9a51-7c2d8e4b6f10'}];

  static override enableJsonFlag = true;

  static override args = {id: Args.string({description: 'The job id.', required: true})};

  static override flags = targetFlags;

  public async run(): Promise<JobRecordView> {
    const {args, flags} = await this.parse(JobsCancel);
    try {
      const job = await cancelJob(resolveTarget(flags), args.id);
      this.log(oneLine(`Cancelling job ${job.id} (${job.state}): ${job.command}`));
      return job;
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
