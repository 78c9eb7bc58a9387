import assert from 'node:assert/strict';
import {spawn, type ChildProcess} from 'node:child_process';
import {createServer, type Socket} from 'node:net';
import {join} from 'node:path';
import {after, describe, it} from 'node:test';
import {SPAWN_HELPER_PATH} from '../src/daemon/spawn-helper.js';
import {eventually, processExists, signedPost, startTestDaemon, tempDir} from './helpers.js';

/**
 * The command runner as systemd runs it (a socket with Accept=yes): a dffs-spawn for each
 * connection, the connection as its stdin and stdout.
 */
async function startRunnerSocket() {
  const path = join(tempDir(), 'runner.sock');
  const runners: ChildProcess[] = [];
  const server = createServer({pauseOnConnect: true}, (connection: Socket) => {
    const runner = spawn(SPAWN_HELPER_PATH, ['--own-cgroup'], {stdio: [connection, connection, 'inherit'], env: {}});
    runners.push(runner);
    connection.destroy();
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  after(() => {
    server.close();
    for (const runner of runners) runner.kill('SIGKILL');
  });
  return {path, runners};
}

describe('commands through the command runner socket (the installed service\'s way)', () => {
  it('runs commands through it, signals them through it at a timeout, and answers "spawner stopped" when it dies', {timeout: 30_000}, async () => {
    const {path, runners} = await startRunnerSocket();
    const {daemon, url, events} = await startTestDaemon({}, 50, {commandRunner: path});
    assert.equal((await signedPost(url, {command: 'echo through the runner; echo $PPID'})).json.data.stdout, `through the runner\n${runners[0].pid}\n`);
    // The timeout's SIGTERM goes through the runner, as a daemon of another user cannot send it.
    const timedOut = await signedPost(url, {command: 'trap "echo got TERM; exit 3" TERM; sleep 20 & wait', timeout: 1});
    assert.deepEqual([timedOut.json.data.timedOut, timedOut.json.data.exitCode, timedOut.json.data.stdout], [true, 3, 'got TERM\n']);
    const running = signedPost(url, {command: 'sleep 20'});
    const started = await eventually(() => events.find((event) => event.type === 'command-started' && event.pid !== undefined && processExists(event.pid) && event.jobId !== timedOut.json.data.jobId) as {pid: number} | undefined, 5000, 'sleep to start');
    runners[0].kill('SIGKILL');
    const reply = await running;
    assert.match(reply.json.data.stderr, /ended: the spawner stopped/);
    assert.equal(reply.json.data.ended, 'spawner-stopped');
    // A new runner, for a new connection, serves the next request.
    await eventually(() => (runners.length === 2 ? true : undefined), 5000, 'a second runner');
    assert.equal((await signedPost(url, {command: 'echo again'})).json.data.stdout, 'again\n');
    process.kill(-started.pid, 'SIGKILL');
    assert.ok(daemon.status().running.length === 0);
  });

  it('never starts a command another way when the runner cannot be reached, and says why', async () => {
    const {url} = await startTestDaemon({}, 50, {commandRunner: join(tempDir(), 'no-such.sock')});
    const reply = await signedPost(url, {command: 'echo must not run'});
    assert.equal(reply.json.data?.stdout ?? '', '');
    assert.match(JSON.stringify(reply.json), /the command runner is not reachable/);
  });
});
