import assert from 'node:assert/strict';
import {existsSync, readFileSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {describe, it} from 'node:test';
import {execa} from 'execa';
import {eventually, signedPost, startServeProcess, startTestDaemon, tempDir, TEST_SECRET} from './helpers.js';

const RUN_JS = fileURLToPath(new URL('../bin/run.js', import.meta.url));
const OPS_SECRET = 'ops-secret-0123456789-abcdefghij';
const WIDE_SECRET = 'wide-secret-0123456789-abcdefghi';

describe('named keys with command policies', () => {
  const marker = join(tempDir(), 'ran');
  const config = {
    KEYS: {
      ops: {secret: OPS_SECRET, allow: ['echo hello [a-z]+', 'pwd'], workdir: '/tmp', env: ['GREETING'], maxTimeout: 30},
      wide: {secret: WIDE_SECRET},
      // The same patterns with shell syntax allowed: what the anchoring alone refuses.
      opsshell: {secret: 'opsshell-secret-0123456789-abcdef', allow: ['echo hello [a-z]+'], shell: true},
    },
  };

  it('runs what a narrow key allows, and refuses anything joined to it, naming the key and never its secret', async () => {
    const {url, events} = await startTestDaemon(config);
    const allowed = await signedPost(url, {command: 'echo hello world'}, {secret: OPS_SECRET});
    assert.deepEqual([allowed.status, allowed.json.data.stdout], [200, 'hello world\n']);
    const tails = [`; touch ${marker}`, ` && touch ${marker}`, ` || touch ${marker}`, ` | touch ${marker}`, ` $(touch ${marker})`, ` \`touch ${marker}\``, `\ntouch ${marker}`, ' #', ` & touch ${marker}`, ` > ${marker}`];
    for (const [name, secret] of [['ops', OPS_SECRET], ['opsshell', config.KEYS.opsshell.secret]]) {
      for (const tail of tails) {
        const refused = await signedPost(url, {command: `echo hello world${tail}`}, {secret});
        assert.equal(refused.status, 403, JSON.stringify(tail));
        assert.equal(refused.json.reason, 'command-not-allowed');
        assert.match(refused.json.message, new RegExp(`^key "${name}" may not run this: the command (has shell syntax|matches none of its allow patterns)`));
        assert.doesNotMatch(refused.raw, new RegExp(secret));
      }
    }
    assert.equal(existsSync(marker), false, 'nothing refused ran');
    const logged = events.filter((event) => event.type === 'request-refused' && event.reason === 'command-not-allowed');
    assert.equal(logged.length, 2 * tails.length);
    assert.ok(logged.every((event) => ['ops', 'opsshell'].includes(String((event as {key?: string}).key))));
    assert.ok(events.some((event) => event.type === 'request-accepted' && event.key === 'ops'));
  });

  it('keeps a narrow key to its workdir, variables and longest timeout', async () => {
    const {url} = await startTestDaemon(config);
    assert.equal((await signedPost(url, {command: 'pwd'}, {secret: OPS_SECRET})).json.data.stdout, '/tmp\n');
    assert.equal((await signedPost(url, {command: 'pwd', workdir: '/'}, {secret: OPS_SECRET})).json.message, 'key "ops" may not run this: its commands run in /tmp, not /');
    assert.equal((await signedPost(url, {command: 'pwd', envs: {PATH: '/tmp'}}, {secret: OPS_SECRET})).json.message, 'key "ops" may not run this: it may not set PATH');
    assert.equal((await signedPost(url, {command: 'pwd', envs: {GREETING: 'hi'}}, {secret: OPS_SECRET})).status, 200);
    assert.equal((await signedPost(url, {command: 'pwd', timeout: 31}, {secret: OPS_SECRET})).json.message, 'key "ops" may not run this: its commands may run for 30 s at most, and the request asks 31 s');
  });

  it('lets a wide key and SECRET_KEY run anything, as the original Sidecar does', async () => {
    const {url, events} = await startTestDaemon(config);
    assert.equal((await signedPost(url, {command: 'echo $((6*7)); true && echo wide'}, {secret: WIDE_SECRET})).json.data.stdout, '42\nwide\n');
    assert.equal((await signedPost(url, {command: 'echo default; id -u >/dev/null'}, {secret: TEST_SECRET})).json.data.stdout, 'default\n');
    assert.deepEqual(events.filter((event) => event.type === 'request-accepted').map((event) => (event as {key: string}).key), ['wide', 'default']);
  });

  it('refuses configs with a bad key entry, naming the field', async () => {
    const {resolveSettings} = await import('../src/config/config.js');
    assert.throws(() => resolveSettings({KEYS: {Ops: {secret: OPS_SECRET}}}, {}, 'c.json'), /c\.json: KEYS "Ops" is not a key name/);
    assert.throws(() => resolveSettings({KEYS: {default: {secret: OPS_SECRET}}}, {}, 'c.json'), /not "default"/);
    assert.throws(() => resolveSettings({KEYS: {ops: {secret: OPS_SECRET, allow: ['(']}}}, {}, 'c.json'), /ops\.allow has a pattern that is not a whole regular expression/);
    assert.throws(() => resolveSettings({KEYS: {ops: {secret: OPS_SECRET, allow: 'echo'}}} as never, {}, 'c.json'), /ops\.allow must be a list of patterns/);
    assert.throws(() => resolveSettings({KEYS: {ops: {secret: OPS_SECRET, sudo: true}}} as never, {}, 'c.json'), /ops\.sudo is not a key setting/);
    assert.throws(() => resolveSettings({SECRET_KEY: OPS_SECRET, KEYS: {ops: {secret: OPS_SECRET}}}, {}, 'c.json'), /has a secret used twice/);
  });
});

describe('named keys under attack', () => {
  it('refuses a pattern that would close the anchoring group, or that cannot run in linear time', async () => {
    const {resolveSettings} = await import('../src/config/config.js');
    assert.throws(() => resolveSettings({KEYS: {ops: {secret: OPS_SECRET, allow: ['uptime)|(uptime']}}}, {}, 'c.json'), /ops\.allow has a pattern that is not a whole regular expression/);
    assert.throws(() => resolveSettings({KEYS: {ops: {secret: OPS_SECRET, allow: ['(a)\\1']}}}, {}, 'c.json'), /checked in linear time/);
    const expiresAt = new Date(Date.now() + 3600_000).toISOString();
    assert.throws(() => resolveSettings({SECRET_KEY: WIDE_SECRET, OLD_SECRET_KEY: OPS_SECRET, OLD_SECRET_EXPIRES_AT: expiresAt, KEYS: {ops: {secret: OPS_SECRET, allow: ['uptime']}}}, {}, 'c.json'), /has a secret used twice/);
  });

  it('checks a pattern that backtracks badly in linear time, so a key holder cannot stall the daemon', async () => {
    const {url} = await startTestDaemon({KEYS: {echoes: {secret: OPS_SECRET, allow: ['echo (\\w+\\s?)+']}}});
    const refused = await signedPost(url, {command: `echo ${'a'.repeat(60)}!`}, {secret: OPS_SECRET});
    assert.equal(refused.json.reason, 'command-not-allowed');
    const tooLong = await signedPost(url, {command: `echo ${'a'.repeat(3000)}`}, {secret: OPS_SECRET});
    assert.match(tooLong.json.message, /its commands may be 2048 characters long at most/);
    assert.equal((await signedPost(url, {command: 'echo fine'}, {secret: OPS_SECRET})).json.data.stdout, 'fine\n');
  });

  it('refuses shell syntax to a key with patterns unless it allows it, and callbacks but to its prefixes', async () => {
    const {url} = await startTestDaemon({
      KEYS: {
        logs: {secret: OPS_SECRET, allow: ['cat /etc/host.*'], callbacks: ['http://127.0.0.1:9/hooks/']},
        shell: {secret: WIDE_SECRET, allow: ['echo \\$\\(\\(6\\*7\\)\\)'], shell: true},
      },
    });
    const injected = await signedPost(url, {command: 'cat /etc/host$(id).conf'}, {secret: OPS_SECRET});
    assert.match(injected.json.message, /the command has shell syntax/);
    assert.equal((await signedPost(url, {command: 'cat /etc/hostname'}, {secret: OPS_SECRET})).status, 200);
    assert.equal((await signedPost(url, {command: 'echo $((6*7))'}, {secret: WIDE_SECRET})).json.data.stdout, '42\n');
    const elsewhere = await signedPost(url, {command: 'cat /etc/hostname', wait: false, callbackURL: 'http://127.0.0.1:18999/internal/admin'}, {secret: OPS_SECRET});
    assert.match(elsewhere.json.message, /its callbacks may go only to http:\/\/127\.0\.0\.1:9\/hooks\//);
    assert.equal((await signedPost(url, {command: 'cat /etc/hostname', wait: false, callbackURL: 'http://127.0.0.1:9/hooks/x'}, {secret: OPS_SECRET})).status, 200);
  });

  it('serves named keys without a SECRET_KEY', async () => {
    const {url} = await startTestDaemon({SECRET_KEY: undefined, KEYS: {only: {secret: OPS_SECRET, allow: ['hostname']}}});
    assert.equal((await signedPost(url, {command: 'hostname'}, {secret: OPS_SECRET})).status, 200);
    assert.equal((await signedPost(url, {command: 'hostname'}, {secret: TEST_SECRET})).status, 401);
  });
});

describe('dffs-ctl keys, secret and exec --key against a running serve', () => {
  // The serve's runtime directory: where its control socket is found, to have it reload.
  let runtimeDirectory = '';
  const cli = (args: string[], env: Record<string, string> = {}) => execa(process.execPath, [RUN_JS, ...args], {reject: false, env: {XDG_RUNTIME_DIR: runtimeDirectory, ...env}});

  it('adds, lists, uses, rotates and removes a named key, each applied by a reload with the same PID', async () => {
    const port = 19_300 + (process.pid % 200);
    const {events, pid} = await startServeProcess({}, port);
    const configPath = String(events.find((event) => event.event === 'started')?.config);
    runtimeDirectory = dirname(configPath);
    const added = await cli(['keys', 'add', 'narrow', '--allow', 'echo [a-z]+', '--config', configPath]);
    assert.equal(added.exitCode, 0, added.stderr);
    const secret = /^Key narrow:\n {4}(\S+)\n/.exec(added.stdout)?.[1] as string;
    assert.equal(secret.length, 32);
    const listed = JSON.parse((await cli(['keys', '--json', '--config', configPath])).stdout);
    assert.deepEqual(listed.keys.map((key: {name: string; allow?: string[]}) => [key.name, key.allow]), [['default', undefined], ['narrow', ['echo [a-z]+']]]);
    assert.doesNotMatch(JSON.stringify(listed), new RegExp(secret));
    assert.equal((await cli(['secret', 'show', '--name', 'narrow', '--config', configPath])).stdout, secret);
    const ran = await cli(['exec', '--config', configPath, '--key', 'narrow', 'echo', 'fine']);
    assert.deepEqual([ran.exitCode, ran.stdout], [0, 'fine']);
    const refused = await cli(['exec', '--config', configPath, '--key', 'narrow', 'echo fine; id']);
    assert.equal(refused.exitCode, 1);
    assert.match(refused.stderr.replace(/\s*\n ›\s+/g, " "), /HTTP 403: key "narrow" may not run this/);
    const rotated = await cli(['secret', 'rotate', '--name', 'narrow', '--config', configPath]);
    assert.equal(rotated.exitCode, 0, rotated.stderr);
    const newSecret = /New secret key of narrow:\n {4}(\S+)/.exec(rotated.stdout)?.[1];
    assert.ok(newSecret && newSecret !== secret);
    const old = await cli(['exec', '--url', `http://127.0.0.1:${port}`, 'echo', 'old'], {DFFS_SECRET_KEY: secret});
    assert.equal(old.exitCode, 77);
    assert.equal((await cli(['keys', 'add', 'weak', '--secret-key', 'fifteen-chars-x', '--config', configPath])).exitCode, 2);
    assert.equal((await cli(['keys', 'remove', 'narrow', '--config', configPath])).exitCode, 0);
    assert.equal((await cli(['exec', '--config', configPath, '--key', 'narrow', 'echo', 'gone'])).exitCode, 78);
    assert.equal(JSON.parse(readFileSync(configPath, 'utf8')).KEYS, undefined);
    await eventually(() => (events.filter((event) => event.event === 'config-reloaded').length >= 3 ? true : undefined), 5000, 'three reloads');
    assert.ok(events.filter((event) => event.event === 'started').length === 1 && events.every((event) => event.event !== 'started' || event.pid === pid));
    assert.ok(events.some((event) => event.event === 'request-accepted' && event.key === 'narrow'));
  });
});
