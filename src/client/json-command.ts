import {Command, ux} from '@oclif/core';

/**
 * Characters JSON leaves raw that a terminal may still act on: C1 controls (U+009B starts an escape
 * sequence in xterm, as ESC [ does) and bidirectional overrides. JSON.stringify already escapes
 * the C0 range (ESC and BEL among them).
 */
const RAW_IN_JSON = /[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** The JSON of a command's result, with every character a terminal could act on written as a \u escape: the same data once parsed. */
export function terminalSafeJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(RAW_IN_JSON, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * A command with --json: what it returns may hold command lines and output from Func, printed
 * on an operator's terminal as often as piped to jq.
 */
export abstract class JsonCommand extends Command {
  override logJson(json: unknown): void {
    ux.stdout(terminalSafeJson(json));
  }
}
