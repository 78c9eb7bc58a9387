import {execa} from 'execa';
import {after, before} from 'node:test';
import {fileURLToPath} from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SANDBOX = fileURLToPath(new URL('../../shared/systemd-sandbox/sandbox', import.meta.url));

export interface ShellResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface Sandbox {
  /** Runs a bash script as root inside the container; stderr comes with oclif's line wrapping undone. */
  sh(script: string): Promise<ShellResult>;
  /** Like sh, but fails the test on a non-zero exit. */
  ok(script: string): Promise<string>;
}

/**
 * A fresh Debian container with systemd as PID 1 for this test file, with the checkout at /src,
 * powered off when the file ends. Needs root: without it the suite fails and says why.
 */
export function useSandbox(name: string, environment: Record<string, string> = {}): Sandbox {
  before(async () => {
    if (process.getuid?.() !== 0) {
      throw new Error('these tests boot a systemd container with systemd-nspawn, which needs root: run npm test as root (CI does)');
    }
    const up = await execa(SANDBOX, ['up', name, ROOT], {reject: false, env: environment, stdin: 'ignore', all: true});
    if (up.exitCode !== 0) throw new Error(`sandbox up ${name} failed:\n${up.all}`);
  });
  after(async () => {
    await execa(SANDBOX, ['down', name], {reject: false, stdin: 'ignore'});
  });
  const sh = async (script: string): Promise<ShellResult> => {
    const result = await execa(SANDBOX, ['exec', name, 'bash', '-c', script], {reject: false, stdin: 'ignore', env: {TERM: 'dumb'}});
    // oclif wraps error messages at 80 columns behind " ›   ": undone, so messages can be matched whole.
    return {stdout: result.stdout, stderr: result.stderr.replace(/\s*\n ›\s+/g, ' '), exitCode: result.exitCode ?? -1};
  };
  return {
    sh,
    async ok(script) {
      const result = await sh(script);
      if (result.exitCode !== 0) throw new Error(`in ${name}: ${script}\nexit ${result.exitCode}\n${result.stderr}\n${result.stdout}`);
      return result.stdout;
    },
  };
}
