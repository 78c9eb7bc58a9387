import {Args, Flags} from '@oclif/core';
import {JsonCommand} from '../client/json-command.js';
import {commandAfterDashes} from '../client/exec-argv.js';
import {exitCodeOfJob, followJob, startJob, terminalQuestion} from '../client/exec-live.js';
import {resolveTarget} from '../client/target.js';
import {targetFlags} from '../client/target-flags.js';
import {exitCodeFor} from '../common/user-error.js';
import {oneLine} from '../common/printable.js';

export default class Exec extends JsonCommand {
  static override summary = 'Run a command through the sidecar, signed exactly as DataFlux Func signs it.';
  static override description = `Sends POST /shell to the local sidecar (the first BIND address and the key from the config, unless --url and --secret-key are given), prints the command's stdout and stderr to the matching streams as they come, and exits with its exit code (124 for a timeout, 130 when cancelled, 128+N for a signal). A test of the whole path Func uses.

Ctrl-C asks whether to cancel the job (its whole process tree ends) or to detach and leave it running; without a terminal, Ctrl-C cancels. --no-wait prints the job id and returns: follow it with "jobs logs -f ID".

As with ssh, flags come first; the first argument that is not a flag, or everything after --, starts the command, and its words are joined with spaces and run by /bin/sh on the host. Quote the whole command to keep your shell away from pipes and variables.`;
  static override examples = [
    {description: 'Run a command on the host', command: 'sudo <%= config.bin %> <%= command.id %> id -un'},
    {description: 'A pipeline, quoted so that it runs on the host', command: 'sudo <%= config.bin %> <%= command.id %> "ps aux | grep node"'},
    {description: 'With a working directory and variables', command: 'sudo <%= config.bin %> <%= command.id %> --workdir /tmp --env MY_NAME=Tom ls -l'},
    {description: 'Start without waiting: prints the job id', command: 'sudo <%= config.bin %> <%= command.id %> --no-wait -- "sleep 60; date"'},
    {description: 'Without waiting, the output also going to a callback', command: 'sudo <%= config.bin %> <%= command.id %> --no-wait --callback-url http://127.0.0.1:8088/api/v1/al/cb -- "sleep 60; date"'},
    {description: 'The sidecar of a serve run with its own config', command: '<%= config.bin %> <%= command.id %> --config ./sidecar.json uptime'},
    {description: 'Signed with the named key "ops", as the Func connector using it would', command: 'sudo <%= config.bin %> <%= command.id %> --key ops systemctl status nginx'},
    {description: 'Over HTTPS, with a private CA', command: '<%= config.bin %> <%= command.id %> --url https://10.0.0.5:8099 --ca ./sidecar-ca.pem --secret-key "$KEY" uptime'},
    {description: 'Another sidecar', command: '<%= config.bin %> <%= command.id %> --url http://10.0.0.5:8099 --secret-key "$KEY" uptime'},
  ];

  /** The flags that take a value: what follows one of them is its value, not the command. */
  static argvForParse(argv: readonly string[]): string[] {
    const valueFlags = new Set(Object.entries(Exec.flags).flatMap(([name, flag]) => (flag.type === 'option' ? [`--${name}`] : [])));
    return commandAfterDashes(argv, valueFlags);
  }

  static override strict = false;

  static override enableJsonFlag = true;

  static override args = {
    command: Args.string({description: 'The command and its arguments, run by /bin/sh on the host.'}),
  };

  static override flags = {
    workdir: Flags.string({summary: 'Working directory of the command.'}),
    env: Flags.string({summary: 'Variable for the command, KEY=VALUE (repeatable).', multiple: true}),
    wait: Flags.boolean({summary: 'Follow the command\'s output to its end (--no-wait: print the job id and return).', default: true, allowNo: true}),
    'callback-url': Flags.string({summary: 'POST {"kwargs": {"stdout", "stderr"}} here when the command ends.'}),
    timeout: Flags.integer({summary: 'Seconds before the command is killed.', min: 1}),
    ...targetFlags,
  };

  public async run(): Promise<Record<string, unknown>> {
    // The command is what follows the `--` put before it: nothing a flag left behind can join it.
    const argv = Exec.argvForParse(this.argv);
    const dashes = argv.indexOf('--');
    const {argv: leftover, flags} = await this.parse(Exec, dashes < 0 ? argv : argv.slice(0, dashes));
    if (leftover.length > 0) {
      this.error(`unexpected "${leftover.join(' ')}" among the flags: a flag without a value is written --wait or --no-wait, not --wait=VALUE`, {exit: 2});
    }
    const command = dashes < 0 ? '' : argv.slice(dashes + 1).join(' ');
    if (command.trim() === '') this.error('give the command to run, for example: dffs-ctl exec id -un', {exit: 2});
    for (const entry of flags.env ?? []) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(entry)) this.error(`--env ${entry} is not KEY=VALUE`, {exit: 2});
    }
    try {
      const target = resolveTarget(flags);
      const jobId = await startJob(target, {command, workdir: flags.workdir, envs: flags.env, callbackURL: flags['callback-url'], timeout: flags.timeout});
      if (!flags.wait) {
        if (!this.jsonEnabled()) this.log(jobId);
        return {jobId};
      }
      const json = this.jsonEnabled();
      const outcome = await followJob(
        target,
        jobId,
        {
          stdout: (text) => {
            if (!json) process.stdout.write(text);
          },
          stderr: (text) => {
            if (!json) process.stderr.write(text);
          },
          ask: terminalQuestion(),
        },
        (onInterrupt) => {
          process.on('SIGINT', onInterrupt);
          return () => process.off('SIGINT', onInterrupt);
        },
      );
      if (outcome.detached) return {jobId, detached: true};
      const {record, stdout, stderr} = outcome;
      if (!json) {
        if (record.state === 'timed-out') this.logToStderr(`dffs-ctl: the command timed out (job ${jobId})`);
        if (record.error) this.logToStderr(`dffs-ctl: ${oneLine(record.error)} (job ${jobId})`);
        if (record.truncated) this.logToStderr('dffs-ctl: the output was truncated at OUTPUT_LIMIT');
      }
      process.exitCode = exitCodeOfJob(record);
      return {...record, jobId, stdout, stderr};
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
