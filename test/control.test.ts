import assert from 'node:assert/strict';
import {chmodSync, mkdirSync, statSync} from 'node:fs';
import {createConnection} from 'node:net';
import {join} from 'node:path';
import {after, describe, it} from 'node:test';
import {followControlSocket, readSnapshot} from '../src/client/control-client.js';
import {SLOW_CLIENT_BYTES, startControlServer} from '../src/daemon/control-server.js';
import {socketFeed} from '../src/ui/run.js';
import {eventually, signedPost, startTestDaemon, tempDir, TEST_SECRET} from './helpers.js';
import {controlSocketFor, ensurePrivateDirectory, serveControlSocket, stateDirectoryFor} from '../src/config/runtime-paths.js';
import type {ControlMessage} from '../src/protocol/control-messages.js';
import type {JobOutputMessage} from '../src/ui/feed.js';

describe('control socket', async () => {
  const {daemon, url} = await startTestDaemon();
  const path = join(tempDir(), 'run', 'control.sock');
  const server = await startControlServer(daemon, path);
  after(() => server.close());

  it('follows from the config: the service\'s for the system config, one per personal config otherwise', () => {
    assert.equal(serveControlSocket('/etc/dataflux-func-sidecar', {RUNTIME_DIRECTORY: '/run/dataflux-func-sidecar'}), '/run/dataflux-func-sidecar/control.sock');
    assert.equal(controlSocketFor('/etc/dataflux-func-sidecar', 0, {}), '/run/dataflux-func-sidecar/control.sock');
    const personal = controlSocketFor('/root/a.json', 0, {});
    assert.match(personal, /\/dataflux-func-sidecar-0\/control-[0-9a-f]{12}\.sock$/);
    assert.notEqual(personal, controlSocketFor('/root/b.json', 0, {}), 'two configs, two sockets');
    assert.equal(controlSocketFor('/root/./a.json', 0, {}), personal, 'the same file, however it is written');
    assert.match(controlSocketFor('/home/u/a.json', 1000, {XDG_RUNTIME_DIR: '/run/user/1000'}), /^\/run\/user\/1000\/dataflux-func-sidecar\/control-[0-9a-f]{12}\.sock$/);
    assert.equal(stateDirectoryFor('/etc/dataflux-func-sidecar', {STATE_DIRECTORY: '/var/lib/dataflux-func-sidecar'}), '/var/lib/dataflux-func-sidecar');
    assert.match(stateDirectoryFor('/home/u/a.json', {HOME: '/home/u'}), /^\/home\/u\/\.local\/state\/dataflux-func-sidecar\/[0-9a-f]{12}$/);
  });

  it('refuses a personal directory that another user could have made or can use, and a socket in it', async () => {
    const open = join(tempDir(), 'open');
    mkdirSync(open, {mode: 0o700});
    chmodSync(open, 0o777);
    assert.throws(() => ensurePrivateDirectory(open), /is open to other users \(mode 777\): chmod 700/);
    await assert.rejects(followControlSocket(join(open, 'control.sock'), () => {}), /will not trust .*may be written by other users/);
    const fresh = join(tempDir(), 'a', 'b');
    ensurePrivateDirectory(fresh);
    assert.equal(statSync(fresh).mode & 0o777, 0o700);
  });

  it('can be opened only by its owner and group', () => {
    assert.equal(statSync(path).mode & 0o777, 0o660);
  });

  it('refuses a second daemon on the same socket', async () => {
    await assert.rejects(startControlServer(daemon, path), /in use by another running sidecar/);
  });

  it('gives a snapshot, then live events, and never the secret or env values', async () => {
    await signedPost(url, {command: 'echo before', envs: ['TOKEN=env-value-hidden']});
    const snapshot = await readSnapshot(path);
    assert.equal(snapshot.status.pid, process.pid);
    assert.ok(snapshot.status.counters.accepted >= 1);
    assert.ok(snapshot.history.some((event) => event.type === 'request-accepted'));
    const messages: ControlMessage[] = [];
    const controller = new AbortController();
    const following = followControlSocket(path, (message) => messages.push(message), controller.signal);
    await eventually(() => (messages.length > 0 ? true : undefined));
    await signedPost(url, {command: 'echo live'});
    await eventually(() => messages.find((m) => m.type === 'event' && m.event.type === 'command-finished'));
    controller.abort();
    await following;
    const everything = JSON.stringify([snapshot, messages]);
    assert.ok(!everything.includes(TEST_SECRET));
    assert.ok(!everything.includes('env-value-hidden'));
  });

  it('gives a job\'s output (kept, then live) and cancels a job for the dashboard of tui', async () => {
    const feed = socketFeed(path);
    const stop = feed.subscribe(() => {});
    after(stop);
    const reply = await signedPost(url, {command: 'echo before; sleep 0.5; echo after; sleep 60', wait: false});
    const jobId = reply.json.data.jobId as string;
    await new Promise((resolve) => setTimeout(resolve, 300));
    const messages: JobOutputMessage[] = [];
    const unfollow = feed.output(jobId, (message) => messages.push(message));
    await eventually(() => (messages.some((message) => 'data' in message && message.data === 'after\n') ? true : undefined), 5000, 'the live line');
    assert.deepEqual(messages.filter((message) => 'data' in message).map((message) => (message as {data: string}).data), ['before\n', 'after\n']);
    assert.equal(await feed.cancel(jobId), 'cancelling');
    const end = await eventually(() => messages.find((message) => 'result' in message), 10_000, 'the end of the output');
    assert.equal((end as {result: {state: string}}).result.state, 'cancelled');
    assert.equal(await feed.cancel(jobId), 'finished');
    unfollow();
    const unknown: JobOutputMessage[] = [];
    feed.output('00000000-0000-4000-8000-000000000000', (message) => unknown.push(message));
    await eventually(() => (unknown.some((message) => 'missing' in message) ? true : undefined), 5000, 'an unknown job said so');
  });

  it('closes a connection that sends what is not a request, or too long a line', async () => {
    for (const line of ['not json\n', '{"type":"reload"}\n', '{"type":"cancel"}\n', `${'x'.repeat(2000)}`]) {
      const socket = createConnection(path);
      socket.on('error', () => {});
      socket.resume();
      socket.write(line);
      await new Promise((resolve) => socket.once('close', resolve));
    }
  });

  it('drops a client that does not read, instead of buffering for it', async () => {
    const lazy = createConnection(path);
    lazy.pause();
    await new Promise((resolve) => lazy.once('connect', resolve));
    const events = 50_000;
    // Each event line is about 300 bytes: far more than the kernel's buffers and the limit hold.
    for (let i = 0; i < events; i++) daemon.bus.emit({type: 'bind-waiting', address: `127.0.0.1:${i}`, error: 'x'.repeat(200), retryInMs: 1});
    let received = 0;
    lazy.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    const closed = new Promise<void>((resolve) => lazy.on('close', () => resolve()));
    lazy.resume();
    await closed;
    assert.ok(received < events * 250, `the daemon dropped the client after ${received} bytes`);
    assert.ok(received < SLOW_CLIENT_BYTES + 16 * 1024 * 1024, 'and buffered no more than the limit beyond what the kernel holds');
  });
});
