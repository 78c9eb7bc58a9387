import {Flags} from '@oclif/core';
import {JsonCommand} from '../../client/json-command.js';
import {listJobs} from '../../client/jobs-client.js';
import {jobTable} from '../../client/job-format.js';
import {resolveTarget} from '../../client/target.js';
import {targetFlags} from '../../client/target-flags.js';
import {exitCodeFor} from '../../common/user-error.js';
import type {JobRecordView} from '../../protocol/job-record.js';

export default class Jobs extends JsonCommand {
  static override summary = 'List the sidecar\'s recent jobs, newest first.';
  static override description = `Every command the sidecar accepts is a job, kept for JOB_HISTORY_SECONDS (up to JOB_HISTORY finished ones) with its state, key, result and the head and tail of its output. A key with an allow list sees only its own jobs; SECRET_KEY sees all.`;
  static override examples = [
    {description: 'The installed service\'s recent jobs', command: 'sudo <%= config.bin %> <%= command.id %>'},
    {description: 'Only those running or queued', command: 'sudo <%= config.bin %> <%= command.id %> --state running --state queued'},
    {description: 'Failed jobs of the key "ops", as JSON', command: 'sudo <%= config.bin %> <%= command.id %> --state failed --state timed-out --from-key ops --json'},
  ];

  static override enableJsonFlag = true;

  static override flags = {
    state: Flags.string({summary: 'Only jobs in this state (repeatable).', multiple: true, options: ['queued', 'running', 'succeeded', 'failed', 'timed-out', 'cancelled', 'spawner-stopped']}),
    'from-key': Flags.string({summary: 'Only jobs started with this key name.'}),
    limit: Flags.integer({summary: 'At most this many jobs.', default: 50, min: 1, max: 1000}),
    ...targetFlags,
  };

  public async run(): Promise<{jobs: JobRecordView[]}> {
    const {flags} = await this.parse(Jobs);
    try {
      const jobs = await listJobs(resolveTarget(flags), {state: flags.state, key: flags['from-key'], limit: flags.limit});
      if (jobs.length === 0) this.log('No jobs.');
      else for (const line of jobTable(jobs)) this.log(line);
      return {jobs};
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
