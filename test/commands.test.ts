import assert from 'node:assert/strict';
import {readdirSync, readFileSync} from 'node:fs';
import {join, relative} from 'node:path';
import {describe, it} from 'node:test';
import {execa} from 'execa';
import {tempDir, writeTestConfig} from './helpers.js';

const ROOT = new URL('..', import.meta.url).pathname;

/**
 * Runs the real dffs-ctl. (@oclif/test's runCommand swaps process.stdout.write, and under Node 20's
 * --test the test file's results travel to the runner over that same stdout: they were lost.)
 */
function dffsCtl(...args: string[]) {
  return execa(process.execPath, [join(ROOT, 'bin', 'run.js'), ...args], {reject: false, env: {NO_COLOR: '1'}});
}

function commandIds(dir: string): string[] {
  return readdirSync(dir, {recursive: true, withFileTypes: true})
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)).replace(/\.ts$/, '').replace(/\/index$/, '').split('/').join(':'))
    .sort();
}

describe('commands', () => {
  it('has a fresh oclif manifest listing every command', () => {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8'));
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    assert.equal(manifest.version, pkg.version);
    assert.deepEqual(Object.keys(manifest.commands).sort(), commandIds(join(ROOT, 'src', 'commands')));
    for (const [id, command] of Object.entries<any>(manifest.commands)) {
      assert.ok(command.summary, `${id} has a summary`);
      assert.ok(command.examples?.length, `${id} has examples`);
    }
  });

  it('documents serve with its flags, environment fallbacks and examples', async () => {
    const {stdout, exitCode} = await dffsCtl('serve', '--help');
    assert.equal(exitCode, 0);
    for (const text of ['--bind', '--secret-key', '--config', 'DFFS_BIND', 'DFFS_SECRET_KEY', 'DFFS_CONFIG', 'EXAMPLES', 'SIGHUP']) {
      assert.ok(stdout.includes(text), text);
    }
  });

  it('shows the secret key of a config, as text or JSON', async () => {
    const config = writeTestConfig(tempDir(), {SECRET_KEY: 'shown-secret-key', SECRET_CREATED_AT: '2026-11-24T00:00:00.000Z'});
    assert.equal((await dffsCtl('secret', 'show', '--config', config)).stdout, 'shown-secret-key');
    const {stdout} = await dffsCtl('secret', 'show', '--config', config, '--json');
    assert.deepEqual(JSON.parse(stdout), {secretKey: 'shown-secret-key', createdAt: '2026-11-24T00:00:00.000Z', config});
  });

  it('says what to do when there is no key, or the config is broken', async () => {
    const empty = writeTestConfig(tempDir(), {});
    const missing = await dffsCtl('secret', 'show', '--config', empty);
    assert.match(missing.stderr, /has no SECRET_KEY: set one with/);
    assert.equal(missing.exitCode, 1);
    const broken = writeTestConfig(tempDir(), {BIND: 1 as unknown as string});
    const invalid = await dffsCtl('secret', 'show', '--config', broken);
    assert.match(invalid.stderr, /BIND must be a string/);
    assert.equal(invalid.exitCode, 78);
    assert.equal(invalid.stdout, '');
  });
});
