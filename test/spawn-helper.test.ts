import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {describe, it} from 'node:test';
import type {SidecarEvent} from '../src/daemon/events.js';
import {findSpawnHelper, SPAWN_HELPER_PATH, SpawnHelper} from '../src/daemon/spawn-helper.js';
import {eventually, signedPost, startTestDaemon, TEST_SECRET} from './helpers.js';

/** The helper's pid, from the daemon's spawner event. */
function helperPid(events: SidecarEvent[]): number {
  const started = events.findLast((event) => event.type === 'spawner' && event.spawner === 'dffs-spawn');
  assert.ok(started?.type === 'spawner' && started.pid, 'a spawner event with the helper pid');
  return started.pid;
}

describe('the dffs-spawn helper', async () => {
  it('is built by npm run build', () => {
    assert.equal(findSpawnHelper(), SPAWN_HELPER_PATH, `${SPAWN_HELPER_PATH} is missing: run npm run build (it needs a C compiler)`);
  });

  const {url, events} = await startTestDaemon();

  it('starts commands, and the daemon says so', async () => {
    const started = events.find((event) => event.type === 'spawner');
    assert.deepEqual(started?.type === 'spawner' && [started.spawner, started.path], ['dffs-spawn', SPAWN_HELPER_PATH]);
    const res = await signedPost(url, {command: 'echo $PPID'});
    assert.equal(Number(res.json.data.stdout.trim()), helperPid(events));
  });

  it('runs with an empty environment: no secret, nothing of the daemon', async () => {
    assert.equal(readFileSync(`/proc/${helperPid(events)}/environ`, 'utf8'), '');
    assert.ok(!readFileSync(`/proc/${helperPid(events)}/cmdline`, 'utf8').includes(TEST_SECRET));
  });

  it('passes output through whole and in order, from both streams', async () => {
    const res = await signedPost(url, {command: 'for i in $(seq 1 2000); do echo "out $i"; echo "err $i" >&2; done'});
    const lines = (text: string, prefix: string) => text.trim().split('\n').map((line) => Number(line.replace(`${prefix} `, '')));
    assert.deepEqual(lines(res.json.data.stdout, 'out'), Array.from({length: 2000}, (_, i) => i + 1));
    assert.deepEqual(lines(res.json.data.stderr, 'err'), Array.from({length: 2000}, (_, i) => i + 1));
  });

  it('runs many commands at once, each with its own output', async () => {
    const replies = await Promise.all(Array.from({length: 50}, (_, i) => signedPost(url, {command: `sleep 0.$((${i} % 3)); echo job ${i}`})));
    assert.deepEqual(replies.map((res) => res.json.data.stdout), Array.from({length: 50}, (_, i) => `job ${i}\n`));
  });

  it('reports a command it cannot start, naming the cause', async () => {
    const helper = new SpawnHelper(SPAWN_HELPER_PATH, () => {});
    const child = helper.spawn('pwd', '/no/such/directory', {}, 1024);
    const error = await new Promise<Error>((resolve) => child.once('error', resolve));
    assert.match(error.message, /spawn \/bin\/sh in \/no\/such\/directory: No such file or directory/);
    helper.close();
  });

  it('is replaced by Node\'s own spawning if it dies soon after start, and commands go on', async () => {
    const {url: otherUrl, events: otherEvents} = await startTestDaemon();
    const pid = helperPid(otherEvents);
    const running = signedPost(otherUrl, {command: 'sleep 30'});
    await eventually(() => otherEvents.some((event) => event.type === 'command-started') || undefined, 5000, 'the command to start');
    process.kill(pid, 'SIGKILL');
    const res = await running;
    assert.equal(res.status, 500);
    assert.match(res.json.message, /the spawn helper stopped/);
    const fallback = otherEvents.find((event) => event.type === 'spawner' && event.spawner === 'node');
    assert.ok(fallback?.type === 'spawner' && fallback.reason?.includes('SIGKILL'), 'a spawner event with the reason');
    assert.equal((await signedPost(otherUrl, {command: 'echo still here'})).json.data.stdout, 'still here\n');
    const orphan = otherEvents.find((event) => event.type === 'command-started');
    if (orphan?.type === 'command-started') process.kill(-orphan.pid, 'SIGKILL');
  });
});
