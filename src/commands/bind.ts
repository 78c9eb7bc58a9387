import {Args} from '@oclif/core';
import {JsonCommand} from '../client/json-command.js';
import {bindReport, readSystemConfig, setBind, type BindReport} from '../admin/service.js';
import {readSnapshot} from '../client/control-client.js';
import {exitCodeFor} from '../common/user-error.js';
import {SERVICE_CONTROL_SOCKET} from '../config/runtime-paths.js';
import {requireRoot} from '../admin/preconditions.js';

export default class Bind extends JsonCommand {
  static override summary = 'Show the bind addresses, or set them and apply them without a restart.';
  static override description = 'Without an argument: each address in BIND, its listener\'s state in the running service, and whether it answers. With a list: validates it, saves it to /etc/dataflux-func-sidecar and reloads the service (SIGHUP), so running commands are not interrupted.';
  static override examples = [
    {description: 'Show the addresses and whether each listens', command: 'sudo <%= config.bin %> <%= command.id %>'},
    {description: 'Listen on loopback and docker0', command: 'sudo <%= config.bin %> <%= command.id %> 127.0.0.1:8099,172.17.0.1:8099'},
    {description: 'Add IPv6 loopback', command: 'sudo <%= config.bin %> <%= command.id %> 127.0.0.1:8099,[::1]:8099'},
    {description: 'Serve docker0 over HTTPS (TLS_CERT and TLS_KEY set)', command: 'sudo <%= config.bin %> <%= command.id %> 127.0.0.1:8099,https://172.17.0.1:8099'},
  ];

  static override enableJsonFlag = true;

  static override args = {
    list: Args.string({description: 'Comma-separated host:port list (IPv6 as [::1]:8099; https://host:port for TLS).'}),
  };

  public async run(): Promise<{bind: string; addresses: BindReport[]; reloaded?: boolean}> {
    const {args} = await this.parse(Bind);
    try {
      requireRoot('bind');
      if (args.list === undefined) {
        const config = readSystemConfig();
        const snapshot = await readSnapshot(SERVICE_CONTROL_SOCKET).catch(() => undefined);
        const addresses = await bindReport(config, snapshot);
        this.printAddresses(addresses);
        if (!snapshot) this.warn('the service is not running: states are unknown');
        return {bind: config.BIND ?? '', addresses};
      }
      const result = await setBind(args.list);
      this.log(`Saved BIND=${result.bind}`);
      if (result.allowFromAdded.length > 0) this.log(`Added ${result.allowFromAdded.join(', ')} to ALLOW_FROM, so that clients on the network of the new address can reach it`);
      if (result.reload.applied) this.log('Applied to the running service (reload, no restart).');
      else this.warn(`not applied: ${result.reload.reason}`);
      this.printAddresses(result.addresses);
      return {bind: result.bind, addresses: result.addresses, reloaded: result.reload.applied};
    } catch (error) {
      const exit = exitCodeFor(error);
      if (exit !== undefined) this.error((error as Error).message, {exit});
      throw error;
    }
  }

  private printAddresses(addresses: BindReport[]): void {
    for (const address of addresses) {
      const answers = address.answers ? 'answers' : 'does not answer';
      this.log(`  ${address.address.padEnd(24)} ${address.state.padEnd(10)} ${answers}${address.error ? ` (${address.error})` : ''}`);
    }
  }
}
