import assert from 'node:assert/strict';
import {spawn} from 'node:child_process';
import {readdirSync, readFileSync} from 'node:fs';
import {describe, it} from 'node:test';
import type {SidecarEvent} from '../src/daemon/events.js';
import type {ShellEvents} from '../src/daemon/runner.js';
import {findSpawnHelper, SPAWN_HELPER_PATH, SpawnHelper} from '../src/daemon/spawn-helper.js';
import {eventually, processExists, signedPost, startCallbackReceiver, startTestDaemon, tempDir, TEST_SECRET} from './helpers.js';
import {existsSync} from 'node:fs';
import {join} from 'node:path';

/** The helper's pid, from the daemon's spawner event. */
function helperPid(events: SidecarEvent[]): number {
  const started = events.findLast((event) => event.type === 'spawner' && event.spawner === 'dffs-spawn');
  assert.ok(started?.type === 'spawner' && started.pid, 'a spawner event with the helper pid');
  return started.pid;
}

/** Events of a command started by a SpawnHelper, ignored but for those given. */
function shellEvents(wanted: Partial<ShellEvents>): ShellEvents {
  return {started() {}, stdout() {}, stderr() {}, exited() {}, closed() {}, failed() {}, spawnerStopped() {}, ...wanted};
}

function newHelper(onHandlerError: (error: unknown) => void = (error) => assert.fail(String(error))): SpawnHelper {
  return new SpawnHelper(SPAWN_HELPER_PATH, {onExit() {}, onHandlerError});
}

/** The helper run by hand: one spawn frame in, each write it makes out, as [time, frame types]. */
async function rawWrites(command: string): Promise<{at: number; types: string}[]> {
  const helper = spawn(SPAWN_HELPER_PATH, [], {env: {}, stdio: ['pipe', 'pipe', 'inherit']});
  const payload = Buffer.from(`1024\0\0${command}\0\0PATH=/usr/bin:/bin\0`);
  const header = Buffer.alloc(9);
  header.writeUInt32LE(5 + payload.length, 0);
  header.write('S', 4, 'latin1');
  header.writeUInt32LE(1, 5);
  const started = performance.now();
  helper.stdin.write(Buffer.concat([header, payload]));
  const writes: {at: number; types: string}[] = [];
  for await (const chunk of helper.stdout as AsyncIterable<Buffer>) {
    let types = '';
    for (let offset = 0; offset < chunk.length; offset += 4 + chunk.readUInt32LE(offset)) types += String.fromCharCode(chunk[offset + 4]);
    writes.push({at: performance.now() - started, types});
    if (types.endsWith('C')) helper.stdin.end();
  }
  return writes;
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

  it('holds output back while a command runs for a little, not for long, and sends the end at once', async () => {
    const writes = await rawWrites('echo first; sleep 1; echo second');
    // Here (and nearly always) two writes: the pid with the first line about 2 ms after the start,
    // then the second line with the exit and the close.
    assert.equal(writes.map((write) => write.types).join(''), 'POOXC');
    const firstLine = writes.find((write) => write.types.includes('O'));
    assert.ok(firstLine && firstLine.at < 500, `the first line came after ${Math.round(firstLine?.at ?? 0)} ms`);
    assert.match(writes.at(-1)?.types ?? '', /XC$/);
    assert.ok((writes.at(-1)?.at ?? 0) >= 1000);
  });

  it('is told to release a command only while it has not finished with it', async () => {
    const helper = newHelper();
    try {
      await new Promise<void>((resolve) => helper.spawn('true', undefined, {}, 1024, undefined, shellEvents({closed: () => resolve()})));
      assert.equal(helper.release(1), false, 'a closed command is not released');
      const pid = await new Promise<number>((resolve) => helper.spawn('sleep 30', undefined, {}, 1024, undefined, shellEvents({started: resolve})));
      assert.equal(helper.release(2), true, 'a running command is released');
      assert.equal(helper.release(2), false, 'once');
      process.kill(-pid, 'SIGKILL');
    } finally {
      helper.close();
    }
  });

  it('reports a command it cannot start, naming the cause', async () => {
    const helper = newHelper();
    const error = await new Promise<Error>((resolve) => helper.spawn('pwd', '/no/such/directory', {}, 1024, undefined, shellEvents({failed: resolve})));
    assert.match(error.message, /spawn \/bin\/sh in \/no\/such\/directory: No such file or directory/);
    helper.close();
  });

  it('ends the commands of a helper that dies, says so in the reply and the callback, and starts a new helper', async () => {
    const {url: otherUrl, events: otherEvents} = await startTestDaemon({}, 50);
    const receiver = await startCallbackReceiver();
    const marker = join(tempDir(), 'marker');
    const pid = helperPid(otherEvents);
    const waiting = signedPost(otherUrl, {command: `sleep 4; echo ran > ${marker}`, timeout: 2});
    await signedPost(otherUrl, {command: `sleep 4; echo ran >> ${marker}`, wait: false, callbackURL: receiver.url});
    const started = await eventually(() => {
      const pids = otherEvents.flatMap((event) => (event.type === 'command-started' ? [event.pid] : []));
      return pids.length === 2 ? pids : undefined;
    }, 5000, 'both commands to start');
    process.kill(pid, 'SIGKILL');
    const res = await waiting;
    assert.equal(res.status, 200);
    assert.deepEqual([res.json.data.ended, res.json.data.signal, res.json.data.exitCode], ['spawner-stopped', 'SIGKILL', null]);
    assert.match(res.json.data.stderr, /sidecar: ended: the spawner stopped \(.*SIGKILL/);
    const [callback] = await receiver.waitFor(1);
    assert.equal(callback.headers['x-sidecar-ended'], 'spawner-stopped');
    assert.match(JSON.parse(callback.body).kwargs.stderr, /ended: the spawner stopped/);
    await eventually(() => (started.every((commandPid) => !processExists(commandPid)) ? true : undefined), 3000, 'the commands to be gone');
    const next = helperPid(otherEvents);
    assert.notEqual(next, pid, 'a new helper');
    const served = await signedPost(otherUrl, {command: 'echo $PPID'});
    assert.equal(Number(served.json.data.stdout), next, 'the next request is served by the new helper');
    await new Promise((resolve) => setTimeout(resolve, 4500));
    assert.ok(!existsSync(marker), 'neither command ran on after its helper died');
    assert.ok(otherEvents.some((event) => event.type === 'command-finished' && event.ended === 'spawner-stopped' && event.level === 'warn'));
  });

  it('kills a helper that stops reporting (SIGSTOP), so that a timed-out command is still answered', {timeout: 30_000}, async () => {
    const {url: otherUrl, events: otherEvents} = await startTestDaemon({KILL_GRACE: 0}, 50);
    const waiting = signedPost(otherUrl, {command: 'sleep 30', timeout: 1});
    await eventually(() => otherEvents.some((event) => event.type === 'command-started') || undefined, 5000, 'the command to start');
    const stopped = helperPid(otherEvents);
    process.kill(stopped, 'SIGSTOP');
    const started = Date.now();
    const res = await waiting;
    assert.deepEqual([res.json.data.timedOut, res.json.data.ended], [true, 'spawner-stopped']);
    assert.match(res.json.data.stderr, /no exit reported 5 s after a timed-out command was killed/);
    assert.ok(Date.now() - started < 10_000, `answered after ${Date.now() - started} ms`);
    await eventually(() => (processExists(stopped) ? undefined : true), 3000, 'the stopped helper to be gone');
    assert.notEqual(helperPid(otherEvents), stopped, 'a new helper');
  });

  it('finds and ends the commands whose pid a dying helper never reported', {timeout: 30_000}, async () => {
    const {url: otherUrl, events: otherEvents, daemon} = await startTestDaemon({}, 50);
    const pid = helperPid(otherEvents);
    // Killed the moment the 40th command is handed to it: some started, their pids not yet reported.
    let accepted = 0;
    const unsubscribe = daemon.bus.subscribe((event) => {
      if (event.type === 'request-accepted' && ++accepted === 40) process.kill(pid, 'SIGKILL');
    });
    const answers = await Promise.all(Array.from({length: 40}, (_, index) => signedPost(otherUrl, {command: `sleep 6${index}`})));
    unsubscribe();
    assert.ok(answers.every((res) => res.status === 200 && res.json.data.ended === 'spawner-stopped' || res.json.data.stderr.includes('before the command started')));
    const jobIds = answers.map((res) => res.json.data.jobId as string);
    // Anything still carrying one of these jobs' marks would be a command that outlived its helper.
    const survivors = await eventually(() => {
      const marked = readdirSync('/proc').filter((name) => /^\d+$/.test(name)).filter((name) => {
        try {
          const environ = readFileSync(`/proc/${name}/environ`, 'utf8');
          return jobIds.some((jobId) => environ.includes(`SIDECAR_JOB_ID=${jobId}`));
        } catch {
          return false;
        }
      });
      return marked.length === 0 ? marked : undefined;
    }, 5000, 'no command of the dead helper to be left');
    assert.deepEqual(survivors, []);
  });

  it('gives up a helper that keeps dying at start for Node\'s child_process, and says so at warn level', async () => {
    const {url: otherUrl, events: otherEvents} = await startTestDaemon({}, 50, {spawnHelper: '/bin/false'});
    const fallback = await eventually(() => otherEvents.find((event) => event.type === 'spawner' && event.spawner === 'node'), 5000, 'the fallback');
    assert.ok(fallback.type === 'spawner' && /stopped 3 times within 1000 ms of its start/.test(fallback.reason ?? ''));
    assert.equal(fallback.level, 'warn');
    assert.equal((await signedPost(otherUrl, {command: 'echo still here'})).json.data.stdout, 'still here\n');
  });

  it('reports an exception thrown by a command\'s handler, and goes on with the others', async () => {
    const errors: unknown[] = [];
    const helper = newHelper((error) => errors.push(error));
    try {
      const thrower = shellEvents({
        stdout() {
          throw new Error('handler bug');
        },
      });
      helper.spawn('echo boom', undefined, {}, 1024, undefined, thrower);
      const output = await new Promise<string>((resolve) => {
        let text = '';
        helper.spawn('echo fine', undefined, {}, 1024, undefined, shellEvents({stdout: (chunk) => (text += chunk), closed: () => resolve(text)}));
      });
      assert.equal(output, 'fine\n');
      await eventually(() => (errors.length > 0 ? true : undefined), 2000, 'the error to be reported');
      assert.match(String(errors[0]), /handler bug/);
    } finally {
      helper.close();
    }
  });
});
