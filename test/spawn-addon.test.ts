import assert from 'node:assert/strict';
import {execFile} from 'node:child_process';
import {readFileSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {describe, it} from 'node:test';
import {promisify} from 'node:util';
import type {ShellEvents} from '../src/daemon/runner.js';
import {SPAWN_ADDON_PATH, SpawnAddon} from '../src/daemon/spawn-addon.js';
import {SPAWN_HELPER_PATH} from '../src/daemon/spawn-helper.js';
import {eventually, processExists, signedPost, startTestDaemon, tempDir} from './helpers.js';

/** What a SpawnAddon reports of one command, in order. */
function recorder() {
  const seen: string[] = [];
  const output = {stdout: '', stderr: ''};
  let resolveClosed: () => void;
  let resolveStarted: (pid: number) => void;
  let resolveFailed: (error: Error) => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const started = new Promise<number>((resolve) => (resolveStarted = resolve));
  const failed = new Promise<Error>((resolve) => (resolveFailed = resolve));
  const events: ShellEvents = {
    started: (pid) => (seen.push('started'), resolveStarted(pid)),
    stdout: (chunk) => (seen.push('stdout'), (output.stdout += chunk.toString())),
    stderr: (chunk) => (seen.push('stderr'), (output.stderr += chunk.toString())),
    exited: (code, signal) => seen.push(`exited ${code ?? signal}`),
    closed: (totals) => (seen.push(`closed ${totals?.stdout}/${totals?.stderr}`), resolveClosed()),
    failed: (error) => (seen.push('failed'), resolveFailed(error)),
  };
  return {events, seen, output, closed, started, failed};
}

/** The signal mask of this process's main thread. */
const blockedSignals = () => /^SigBlk:\s*(\S+)/m.exec(readFileSync(`/proc/${process.pid}/task/${process.pid}/status`, 'utf8'))?.[1];

describe('dffs-spawn.node, the in-process spawner', async () => {
  it('is built by npm run build', () => {
    assert.doesNotThrow(() => readFileSync(SPAWN_ADDON_PATH), `${SPAWN_ADDON_PATH} is missing: run npm run build (it needs a C compiler and the Node.js headers)`);
  });

  const {url, events} = await startTestDaemon();

  it('starts a command alone as the daemon\'s own child, and the daemon says so', async () => {
    const spawners = events.filter((event) => event.type === 'spawner').map((event) => event.type === 'spawner' && [event.spawner, event.path, event.reason]);
    assert.deepEqual(spawners, [
      ['dffs-spawn.node', SPAWN_ADDON_PATH, undefined],
      ['dffs-spawn', SPAWN_HELPER_PATH, undefined],
    ]);
    const res = await signedPost(url, {command: 'echo $PPID'});
    assert.equal(Number(res.json.data.stdout.trim()), process.pid);
  });

  it('hands a command that comes while another runs to the helper, which starts it alongside the event loop', async () => {
    const helper = events.find((event) => event.type === 'spawner' && event.spawner === 'dffs-spawn');
    const started = () => events.filter((event) => event.type === 'command-started').length;
    const before = started();
    const first = signedPost(url, {command: 'sleep 0.5; echo $PPID'});
    await eventually(() => started() > before || undefined, 5000, 'the first command to start');
    const second = await signedPost(url, {command: 'echo $PPID'});
    assert.equal(Number(second.json.data.stdout.trim()), helper?.type === 'spawner' ? helper.pid : undefined);
    assert.equal(Number((await first).json.data.stdout.trim()), process.pid);
    assert.equal(Number((await signedPost(url, {command: 'echo $PPID'})).json.data.stdout.trim()), process.pid, 'alone again');
  });

  it('reports start, output, exit and close in that order, each stream whole, and leaves the signal mask as it was', async () => {
    const addon = new SpawnAddon();
    const mask = blockedSignals();
    const run = recorder();
    const id = addon.spawn('for i in $(seq 1 3000); do echo "out $i"; echo "err $i" >&2; done; exit 7', undefined, {PATH: '/usr/bin:/bin'}, 1 << 20, run.events);
    assert.equal(id, 1, 'the first id');
    assert.deepEqual(run.seen, [], 'nothing is reported before spawn() returns');
    await run.closed;
    assert.equal(run.seen[0], 'started');
    assert.deepEqual(run.seen.slice(-2), ['exited 7', `closed ${run.output.stdout.length}/${run.output.stderr.length}`]);
    assert.equal(run.output.stdout, Array.from({length: 3000}, (_, i) => `out ${i + 1}\n`).join(''));
    assert.equal(run.output.stderr, Array.from({length: 3000}, (_, i) => `err ${i + 1}\n`).join(''));
    assert.equal(blockedSignals(), mask);
  });

  it('keeps the first LIMIT bytes of each stream and counts the rest', async () => {
    const run = recorder();
    new SpawnAddon().spawn('head -c 5000000 /dev/zero; echo tail >&2', undefined, {}, 100, run.events);
    await run.closed;
    assert.equal(run.output.stdout, '\0'.repeat(100));
    assert.equal(run.output.stderr, 'tail\n');
    assert.equal(run.seen.at(-1), 'closed 5000000/5');
  });

  it('reports a command it cannot start, naming the cause, after spawn() returns', async () => {
    const run = recorder();
    new SpawnAddon().spawn('pwd', '/no/such/directory', {}, 1024, run.events);
    assert.deepEqual(run.seen, []);
    assert.match((await run.failed).message, /^spawn \/bin\/sh in \/no\/such\/directory: No such file or directory$/);
    assert.deepEqual(run.seen, ['failed']);
  });

  it('on release, hands over the output so far, stops reading, and still reaps the command', async () => {
    const addon = new SpawnAddon();
    const run = recorder();
    const id = addon.spawn('echo early; exec sleep 30', undefined, {PATH: '/usr/bin:/bin'}, 1024, run.events);
    const pid = await run.started;
    await eventually(() => (readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep') ? true : undefined), 5000, 'sleep to run');
    assert.equal(addon.release(id), true);
    assert.deepEqual(run.seen, ['started', 'stdout', 'closed 6/0']);
    assert.equal(run.output.stdout, 'early\n');
    assert.equal(addon.release(id), false, 'once');
    process.kill(-pid, 'SIGKILL');
    await eventually(() => (processExists(pid) ? undefined : true), 5000, 'the released command to be reaped, not left a zombie');
    assert.deepEqual(run.seen, ['started', 'stdout', 'closed 6/0'], 'nothing after the release');
  });

  it('passes none of the daemon\'s file descriptors to commands, even those without close-on-exec', async () => {
    // A Node.js process with an inherited pipe as fd 3 (not close-on-exec) starts `ls` on its shell's fds.
    const script = `
      import {readdirSync} from 'node:fs';
      import {SpawnAddon} from ${JSON.stringify(join(import.meta.dirname, '../src/daemon/spawn-addon.ts'))};
      let out = '';
      new SpawnAddon().spawn('ls /proc/$$/fd', undefined, {PATH: '/usr/bin:/bin'}, 1024, {
        started() {}, stderr() {}, exited() {}, failed(error) { throw error; },
        stdout(chunk) { out += chunk; },
        closed() { console.log(JSON.stringify({daemon: readdirSync('/proc/self/fd'), command: out.trim().split('\\n')})); },
      });`;
    const {stdout} = await promisify(execFile)('sh', ['-c', `exec 3</dev/null; exec "$0" --import tsx --input-type=module -e "$1"`, process.execPath, script]);
    const fds = JSON.parse(stdout) as {daemon: string[]; command: string[]};
    assert.ok(fds.daemon.includes('3'), 'the daemon has fd 3');
    assert.deepEqual(fds.command, ['0', '1', '2']);
  });

  it('passes an exception thrown by a handler on to uncaughtException, as any event handler does', async () => {
    const script = `
      const addon = {exports: {}};
      process.dlopen(addon, ${JSON.stringify(SPAWN_ADDON_PATH)});
      process.on('uncaughtException', (error) => console.log('uncaught: ' + error.message));
      addon.exports.init(() => {}, () => { throw new Error('thrown by onClosed'); });
      addon.exports.spawn(1, Buffer.from('1024\\0true\\0\\0'));`;
    const {stdout} = await promisify(execFile)(process.execPath, ['-e', script]);
    assert.equal(stdout, 'uncaught: thrown by onClosed\n');
  });

  it('runs many commands at once, each with its own output', async () => {
    const replies = await Promise.all(Array.from({length: 50}, (_, i) => signedPost(url, {command: `sleep 0.$((${i} % 3)); echo job ${i}`})));
    assert.deepEqual(replies.map((res) => res.json.data.stdout), Array.from({length: 50}, (_, i) => `job ${i}\n`));
  });

  it('starts every command itself once the helper dies, and says why', async () => {
    const {url: otherUrl, events: otherEvents} = await startTestDaemon();
    const helper = otherEvents.find((event) => event.type === 'spawner' && event.spawner === 'dffs-spawn');
    assert.ok(helper?.type === 'spawner' && helper.pid);
    process.kill(helper.pid, 'SIGKILL');
    await eventually(() => otherEvents.find((event) => event.type === 'spawner' && event.reason !== undefined), 5000, 'a spawner event with the reason');
    const fallback = otherEvents.findLast((event) => event.type === 'spawner');
    assert.ok(fallback?.type === 'spawner' && fallback.spawner === 'dffs-spawn.node' && fallback.reason?.includes('SIGKILL'), JSON.stringify(fallback));
    const replies = await Promise.all([1, 2, 3].map(() => signedPost(otherUrl, {command: 'sleep 0.2; echo $PPID'})));
    assert.deepEqual(replies.map((res) => Number(res.json.data.stdout.trim())), [process.pid, process.pid, process.pid]);
  });

  it('gives way to the dffs-spawn helper when it cannot be loaded, and says why', async () => {
    const broken = join(tempDir(), 'dffs-spawn.node');
    writeFileSync(broken, 'not a shared object');
    const {url: otherUrl, events: otherEvents} = await startTestDaemon({}, 50, {spawnAddon: broken});
    const spawner = otherEvents.find((event) => event.type === 'spawner');
    assert.ok(spawner?.type === 'spawner' && spawner.spawner === 'dffs-spawn' && spawner.path === SPAWN_HELPER_PATH, 'the helper starts commands');
    assert.match(spawner.reason ?? '', new RegExp(`^cannot use ${broken}: .*(invalid ELF header|file too short)`));
    assert.equal((await signedPost(otherUrl, {command: 'echo fine'})).json.data.stdout, 'fine\n');
  });
});
