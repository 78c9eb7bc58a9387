import {Flags} from '@oclif/core';
import {JsonCommand} from '../client/json-command.js';
import {terminalSafeJson} from '../common/printable.js';
import {execa} from 'execa';
import {journalArgs, parseJournalLine, renderEntry, type LogEntry} from '../admin/logs.js';

export default class Logs extends JsonCommand {
  static override summary = 'Show the service\'s events from the journal.';
  static override description = 'Reads journalctl -u dataflux-func-sidecar and renders each event on one readable line (coloured on a terminal). --json prints one JSON object per line instead.';
  static override examples = [
    {description: 'The last 50 events', command: 'sudo <%= config.bin %> <%= command.id %>'},
    {description: 'Follow live', command: 'sudo <%= config.bin %> <%= command.id %> -f'},
    {description: 'Refused requests of the last hour', command: 'sudo <%= config.bin %> <%= command.id %> --refused --since "1 hour ago"'},
    {description: 'Failures as JSON', command: 'sudo <%= config.bin %> <%= command.id %> --failed --json'},
  ];

  static override enableJsonFlag = true;

  static override flags = {
    follow: Flags.boolean({char: 'f', summary: 'Keep printing new events.', default: false}),
    lines: Flags.integer({char: 'n', summary: 'How many recent events to show.', default: 50, min: 0}),
    since: Flags.string({summary: 'Only events since this time (journalctl syntax: "1 hour ago", "2026-11-24 10:00").'}),
    refused: Flags.boolean({summary: 'Only refused requests.', default: false}),
    failed: Flags.boolean({summary: 'Only failures: non-zero exits, timeouts, failed callbacks and binds.', default: false}),
  };

  public async run(): Promise<LogEntry[]> {
    const {flags} = await this.parse(Logs);
    const json = this.jsonEnabled();
    const colour = process.stdout.isTTY === true && !process.env.NO_COLOR;
    const entries: LogEntry[] = [];
    const journal = execa('journalctl', journalArgs(flags), {reject: false, stdin: 'ignore', buffer: {stdout: false}});
    for await (const line of journal) {
      const entry = parseJournalLine(line);
      if (!entry) continue;
      if (!json) this.log(renderEntry(entry, colour));
      // Followed with --json: one object per line as it comes (the command only ends when stopped).
      else if (flags.follow) process.stdout.write(`${terminalSafeJson(JSON.stringify(entry))}\n`);
      else entries.push(entry);
    }
    const result = await journal;
    if (result.exitCode !== 0 && result.exitCode !== 1) {
      this.error(`journalctl failed: ${result.stderr || `exit ${result.exitCode}`} (run as root, or as a member of systemd-journal or adm)`, {exit: 1});
    }
    return entries;
  }
}
