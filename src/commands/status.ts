import {resolve} from 'node:path';
import {Flags} from '@oclif/core';
import {JsonCommand} from '../client/json-command.js';
import {oneLine} from '../common/printable.js';
import {serveStatus, serviceStatus, type ServiceStatus} from '../admin/service.js';
import {SYSTEM_CONFIG_PATH} from '../config/config.js';
import {formatDuration} from '../common/duration.js';

export default class Status extends JsonCommand {
  static override summary = 'Show whether the sidecar service is installed, running and answering.';
  static override description = `Unit state (active, enabled, PID, since, restarts, the status the daemon last told systemd, its watchdog), version, each bind address and whether it answers, the secret's age and any grace of the previous key (never the key), and the daemon's counters and running commands.

With --config, the daemon started with \`serve --config\` and that file instead of the installed service.

Exit codes: 0 healthy, 1 installed (or configured) but not healthy, 3 not installed.`;

  static override examples = [
    {description: 'A readable summary', command: 'sudo <%= config.bin %> <%= command.id %>'},
    {description: 'For monitoring scripts', command: 'sudo <%= config.bin %> <%= command.id %> --json | jq .healthy'},
    {description: 'The serve started with this config', command: '<%= config.bin %> <%= command.id %> --config ./sidecar.json'},
  ];

  static override enableJsonFlag = true;

  static override flags = {
    config: Flags.string({summary: 'Config file of a daemon run with serve --config (default: the installed service).', env: 'DFFS_CONFIG'}),
  };

  public async run(): Promise<ServiceStatus> {
    const {flags} = await this.parse(Status);
    const status = flags.config === undefined || resolve(flags.config) === SYSTEM_CONFIG_PATH ? await serviceStatus() : await serveStatus(flags.config);
    if (!this.jsonEnabled()) this.print(status);
    process.exitCode = status.healthy ? 0 : status.installed ? 1 : 3;
    return status;
  }

  private print(status: ServiceStatus): void {
    if (!status.installed) {
      this.log(status.problems.join('\n'));
      return;
    }
    const {unit} = status;
    if (status.kind === 'serve') this.log(`dataflux-func-sidecar (serve --config ${status.config}): ${status.version ? 'running' : 'not running'}`);
    if (unit) {
      this.log(`dataflux-func-sidecar: ${unit.activeState} (${unit.subState}), ${unit.enabled}${unit.mainPid ? `, PID ${unit.mainPid}` : ''}${unit.since ? `, since ${unit.since}` : ''}, ${unit.restarts} restart(s)`);
      // systemd's view, as the daemon last told it, beside the daemon's own below.
      if (unit.statusText) this.log(`systemd:  ${unit.statusText}`);
      if (unit.watchdogSeconds !== undefined) this.log(`Watchdog: ${formatDuration(unit.watchdogSeconds)}${unit.watchdogPingedAt ? `, last ping ${unit.watchdogPingedAt}` : ''}`);
    }
    this.log(`Version:  ${status.version ?? 'unknown (not running)'}`);
    this.log(`Config:   ${status.config}`);
    this.log('Bind:');
    for (const address of status.bind) {
      this.log(`  ${address.address.padEnd(24)} ${address.state.padEnd(10)} ${address.answers ? 'answers' : 'does not answer'}${address.error ? ` (${address.error})` : ''}`);
    }
    const {secret} = status;
    if (secret) {
      const age = secret.ageSeconds === undefined ? '' : `, set ${formatDuration(secret.ageSeconds)} ago`;
      const grace = secret.oldKeyAcceptedUntil ? `; the previous key is accepted until ${secret.oldKeyAcceptedUntil}` : '';
      this.log(`Secret:   ${secret.configured ? 'configured' : 'NOT configured'}${age}${grace}`);
    }
    const {counters} = status;
    if (counters) {
      const refusals = Object.entries(counters.refusedByReason).map(([reason, count]) => `${reason} ${count}`).join(', ');
      this.log(`Requests: ${counters.requests} (accepted ${counters.accepted}, refused ${counters.refused}${refusals ? `: ${refusals}` : ''})`);
      this.log(`Commands: succeeded ${counters.succeeded}, failed ${counters.failed}, timed out ${counters.timedOut}; running ${status.running?.length ?? 0}, queued ${status.queued ?? 0}`);
      this.log(`Callbacks: delivered ${counters.callbacksDelivered}, failed ${counters.callbacksFailed}`);
      for (const job of status.running ?? []) this.log(`  running ${job.jobId} since ${job.startedAt} (pid ${job.pid}): ${oneLine(job.command.slice(0, 100))}`);
    }
    if (status.problems.length > 0) this.log(`\nProblems:\n${status.problems.map((problem) => `  - ${problem}`).join('\n')}`);
  }
}
