import assert from 'node:assert/strict';
import {it} from 'node:test';
import Serve from '../src/commands/serve.js';
import {parseLeanServeArgs, SERVE_FLAG_ENV} from '../src/daemon/serve-cli.js';

it('parses serve\'s own long flags, with their variables as fallbacks', () => {
  assert.deepEqual(parseLeanServeArgs(['--bind', '127.0.0.1:1', '--config=/c.json', '--no-dashboard'], {DFFS_SECRET_KEY: 'k', DFFS_BIND: 'ignored:2'}), {
    bind: '127.0.0.1:1',
    secretKey: 'k',
    config: '/c.json',
    controlSocket: undefined,
    dashboard: false,
  });
  assert.equal(parseLeanServeArgs([], {})?.dashboard, true);
});

it('leaves to oclif what it does not know: help, unknown or malformed flags, arguments', () => {
  for (const args of [['--help'], ['-h'], ['--bogus'], ['--bind'], ['extra'], ['--dashboard', '--no-dashboard']]) {
    assert.equal(parseLeanServeArgs(args, {}), undefined, args.join(' '));
  }
});

it('knows exactly the flags and variables that the oclif command declares', () => {
  const declared = Object.entries(Serve.flags).map(([name, flag]) => [name, (flag as {env?: string}).env]);
  assert.deepEqual(declared.sort(), [...Object.entries(SERVE_FLAG_ENV), ['dashboard', undefined]].sort());
});
