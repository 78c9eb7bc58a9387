import {ConfigError} from '../config/config.js';
import {SystemError} from '../admin/systemd.js';

/** A failure the operator can act on: its message says what to do, with the exit code to use. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** The exit code for an error the user can act on (78 for a bad config, as sysexits' EX_CONFIG); undefined for a bug. */
export function exitCodeFor(error: unknown): number | undefined {
  if (error instanceof UserError) return error.exitCode;
  if (error instanceof ConfigError) return 78;
  if (error instanceof SystemError) return 1;
  return undefined;
}
