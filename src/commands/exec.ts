import {readFileSync} from 'node:fs';
import {Args, Command, Flags} from '@oclif/core';
import {parseBindList} from '../bind.js';
import {ConfigError, defaultConfigPath, readConfig} from '../config.js';
import {commandAfterDashes} from '../client/exec-argv.js';
import {ExecError, exitCodeOf, sendShell} from '../exec-client.js';
import {keySecret} from '../admin/keys.js';
import {baseUrl} from '../probe.js';

export default class Exec extends Command {
  static override summary = 'Run a command through the sidecar, signed exactly as DataFlux Func signs it.';
  static override description = `Sends POST /shell to the local sidecar (the first BIND address and the key from the config, unless --url and --secret-key are given), prints the command's stdout and stderr to the matching streams, and exits with its exit code (124 for a timeout, 128+N for a signal). A test of the whole path Func uses.

As with ssh, flags come first; the first argument that is not a flag, or everything after --, starts the command, and its words are joined with spaces and run by /bin/sh on the host. Quote the whole command to keep your shell away from pipes and variables.`;
  static override examples = [
    {description: 'Run a command on the host', command: 'sudo <%= config.bin %> <%= command.id %> id -un'},
    {description: 'A pipeline, quoted so that it runs on the host', command: 'sudo <%= config.bin %> <%= command.id %> "ps aux | grep node"'},
    {description: 'With a working directory and variables', command: 'sudo <%= config.bin %> <%= command.id %> --workdir /tmp --env MY_NAME=Tom ls -l'},
    {description: 'Start without waiting; the output goes to a callback', command: 'sudo <%= config.bin %> <%= command.id %> --no-wait --callback-url http://127.0.0.1:8088/api/v1/al/cb -- "sleep 60; date"'},
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
    wait: Flags.boolean({summary: 'Wait for the command and print its output.', default: true, allowNo: true}),
    'callback-url': Flags.string({summary: 'POST {"kwargs": {"stdout", "stderr"}} here when the command ends.'}),
    timeout: Flags.integer({summary: 'Seconds before the command is killed.', min: 1}),
    url: Flags.string({summary: 'Sidecar base URL (default: the first BIND address of the config).', env: 'DFFS_URL'}),
    'secret-key': Flags.string({summary: 'Key to sign with (default: from the config).', env: 'DFFS_SECRET_KEY'}),
    config: Flags.string({summary: 'Config file to read the address and key from.', env: 'DFFS_CONFIG'}),
    key: Flags.string({summary: 'Sign with this named key of the config (dffs-ctl keys lists them; default: SECRET_KEY).', exclusive: ['secret-key']}),
    ca: Flags.string({summary: 'PEM file of the CA that signed the sidecar\'s certificate, for https:// (default: the system\'s CAs).', env: 'DFFS_CA'}),
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
    let {url, 'secret-key': secretKey} = flags;
    if (url === undefined || secretKey === undefined) {
      const configPath = flags.config ?? defaultConfigPath();
      let config;
      try {
        config = readConfig(configPath);
      } catch (error) {
        if (error instanceof ConfigError) this.error(`${error.message}; or give --url and --secret-key`, {exit: 77});
        throw error;
      }
      url ??= baseUrl(parseBindList(config.BIND ?? '127.0.0.1:8099')[0]);
      secretKey ??= flags.key === undefined ? config.SECRET_KEY : keySecret(config, flags.key);
      if (secretKey === undefined) this.error(flags.key === undefined ? `${configPath} has no SECRET_KEY: give --secret-key` : `${configPath} has no key named ${flags.key}: dffs-ctl keys lists them`, {exit: 78});
    }
    let ca: Buffer | undefined;
    try {
      ca = flags.ca === undefined ? undefined : readFileSync(flags.ca);
    } catch (error) {
      this.error(`cannot read --ca ${flags.ca}: ${(error as NodeJS.ErrnoException).code}`, {exit: 66});
    }
    let reply;
    try {
      reply = await sendShell(url.replace(/\/+$/, ''), secretKey, {
        command,
        wait: flags.wait,
        workdir: flags.workdir,
        envs: flags.env,
        callbackURL: flags['callback-url'],
        timeout: flags.timeout,
      }, ca);
    } catch (error) {
      if (error instanceof ExecError) this.error(error.message, {exit: error.exitCode});
      throw error;
    }
    const {status, body} = reply;
    if (status !== 200 || !body.ok) {
      const hint = status === 401 ? ' (is the key right? see sudo dffs-ctl secret show)' : '';
      this.error(`the sidecar refused the request: HTTP ${status}: ${body.message}${hint}`, {exit: status === 401 ? 77 : 1});
    }
    const data = body.data ?? {};
    if (!this.jsonEnabled()) {
      if (flags.wait) {
        process.stdout.write(String(data.stdout ?? ''));
        process.stderr.write(String(data.stderr ?? ''));
        if (data.timedOut) this.logToStderr(`dffs-ctl: the command timed out (job ${data.jobId})`);
        if (data.truncated) this.logToStderr('dffs-ctl: the output was truncated at OUTPUT_LIMIT');
      } else {
        this.log(`Started job ${data.jobId}`);
      }
    }
    if (flags.wait) process.exitCode = exitCodeOf(data);
    return data;
  }
}
