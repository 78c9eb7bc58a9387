import {Command, Flags} from '@oclif/core';
import {install, installSummary} from '../admin/install.js';
import {PACKAGE_ROOT} from '../common/package-root.js';
import {exitCodeFor} from '../common/user-error.js';
import {requireRoot, requireSystemd} from '../admin/preconditions.js';

export default class Install extends Command {
  static override summary = 'Install or upgrade the sidecar as the systemd service dataflux-func-sidecar.';
  static override description = `Creates the system users dffs (commands run as it) and dffs-daemon (the daemon's own), copies this program to /usr/local/lib/dataflux-func-sidecar (with /usr/local/bin/dataflux-func-sidecar and /usr/local/bin/dffs-ctl, run by the Node.js that runs this command; from the offline bundle, by the bundle's own Node.js, copied with the program), writes /etc/dataflux-func-sidecar (root:dffs-daemon, 0640) and the units, then enables and starts the service.

The service and the two programs run only a Node.js that root alone can change: one under a user's home (nvm, say) is copied into the release first.

Running it again upgrades: the program is replaced and the service restarted, the config kept (flags change just their keys). An upgrade that does not come up healthy is rolled back to the previous release. Installed over the original Sidecar, its program, unit and config (KEY: value lines, imported) are saved in /var/backups/dataflux-func-sidecar-original first; if ours does not come up healthy they are put back and the original restarted, and uninstall --restore-original puts them back later. A first install that fails leaves nothing enabled or running.

The units are hardened (systemd-analyze security: 1.8 for the daemon, 3.0 for the command runner); the runner's hardening implies NoNewPrivileges, so sudo and setuid programs cannot raise privileges from commands. --allow-setuid leaves those directives out of the runner's unit (score 6.4).`;

  static override examples = [
    {description: 'Install with the manual\'s defaults (127.0.0.1:8099,172.17.0.1:8099 and a random key)', command: 'sudo <%= config.bin %> <%= command.id %>'},
    {description: 'Choose the addresses and the key', command: 'sudo <%= config.bin %> <%= command.id %> --bind 127.0.0.1:8099 --secret-key "$KEY"'},
    {description: 'Serve Func over HTTPS on docker0, loopback over HTTP', command: 'sudo <%= config.bin %> <%= command.id %> --bind 127.0.0.1:8099,https://172.17.0.1:8099 --tls-cert /etc/ssl/sidecar.pem --tls-key /etc/ssl/private/sidecar.key'},
    {description: 'Also serve Prometheus metrics at http://127.0.0.1:9464/metrics (METRICS_BIND; an address the config already has is kept)', command: 'sudo <%= config.bin %> <%= command.id %> --metrics'},
    {description: 'Show what would be done', command: 'sudo <%= config.bin %> <%= command.id %> --dry-run'},
  ];

  static override flags = {
    bind: Flags.string({summary: 'Comma-separated host:port list to listen on.', env: 'DFFS_BIND'}),
    'secret-key': Flags.string({summary: 'Secret key (default: keep the current one, or generate one). Prefer DFFS_SECRET_KEY: ps shows arguments.', env: 'DFFS_SECRET_KEY'}),
    'tls-cert': Flags.string({summary: 'PEM certificate chain for the https:// addresses of --bind (TLS_CERT).', dependsOn: ['tls-key']}),
    'tls-key': Flags.string({summary: 'PEM private key of that certificate, readable by root and the dffs-daemon group only (TLS_KEY).', dependsOn: ['tls-cert']}),
    'allow-from': Flags.string({summary: 'Addresses and networks requests may come from, e.g. 127.0.0.0/8,172.16.0.0/12 (default for a new config: loopback and the Docker bridges).', env: 'DFFS_ALLOW_FROM'}),
    metrics: Flags.boolean({summary: 'Serve Prometheus metrics on 127.0.0.1:9464 (METRICS_BIND), unless the config already sets an address.', default: false}),
    'allow-setuid': Flags.boolean({summary: 'Let commands use sudo and setuid programs (less hardening).', default: false}),
    'dry-run': Flags.boolean({summary: 'Print the plan and the unit file; change nothing.', default: false}),
  };

  public async run(): Promise<void> {
    const {flags} = await this.parse(Install);
    try {
      requireRoot('install');
      requireSystemd();
      const result = await install({
        bind: flags.bind,
        secretKey: flags['secret-key'],
        tlsCert: flags['tls-cert'],
        tlsKey: flags['tls-key'],
        allowFrom: flags['allow-from'],
        metrics: flags.metrics,
        allowSetuid: flags['allow-setuid'],
        dryRun: flags['dry-run'],
        sourceRoot: PACKAGE_ROOT,
        nodePath: process.execPath,
        log: (line) => this.log(line),
      });
      if (result.dryRun) {
        this.log(`Would ${result.upgrade ? `upgrade ${result.previousRelease} to` : 'install'} ${result.release}`);
        this.log(`Config: BIND ${result.bind}${result.allowFrom ? `; ALLOW_FROM ${result.allowFrom}` : ''}; ${result.configChanged ? 'would be written' : 'unchanged'}`);
        this.log(`Unit /etc/systemd/system/dataflux-func-sidecar.service:\n\n${result.unit}`);
        return;
      }
      this.log(`${result.upgrade ? 'Upgraded' : 'Installed'} DataFlux Func Sidecar ${result.version}: the service is running.\n`);
      this.log(installSummary(result));
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }
}
