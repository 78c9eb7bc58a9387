import {Command, ux} from '@oclif/core';
import {terminalSafeJson} from '../common/printable.js';

/**
 * A command with --json: what it returns may hold command lines and output from Func, printed
 * on an operator's terminal as often as piped to jq.
 */
export abstract class JsonCommand extends Command {
  override logJson(json: unknown): void {
    ux.stdout(terminalSafeJson(JSON.stringify(json, null, 2)));
  }
}
