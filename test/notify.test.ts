import assert from 'node:assert/strict';
import {spawn} from 'node:child_process';
import {readdirSync, readFileSync} from 'node:fs';
import {join} from 'node:path';
import {after, describe, it} from 'node:test';
import {notifySystemd, statusText, watchdogIntervalMs} from '../src/daemon/notify.js';
import {parseTimespan} from '../src/admin/systemd.js';
import {eventually, freePort, processExists, signedPost, startServeProcess, startTestDaemon, tempDir} from './helpers.js';

/**
 * systemd's end of NOTIFY_SOCKET, in Python (Node has no AF_UNIX datagram sockets): a datagram
 * socket that prints each message it gets, with the sender's pid from its credentials, as systemd
 * reads them to tell which unit a message is from.
 */
const RECEIVER = `
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(sys.argv[1])
print(json.dumps({"bound": True}), flush=True)
while True:
    data, ancillary, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = next((struct.unpack("iII", d[:12])[0] for level, kind, d in ancillary if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS), None)
    print(json.dumps({"message": data.decode(), "pid": pid}), flush=True)
`;

interface Received {
  message: string;
  pid: number;
  /** performance.now() when the test read it. */
  at: number;
}

async function startReceiver(directory: string): Promise<{path: string; received: Received[]}> {
  const path = join(directory, 'notify.sock');
  const child = spawn('python3', ['-c', RECEIVER, path], {stdio: ['ignore', 'pipe', 'inherit']});
  after(() => child.kill('SIGKILL'));
  const received: Received[] = [];
  let bound = false;
  let partial = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      const parsed = JSON.parse(line) as {bound?: true; message: string; pid: number};
      if (parsed.bound) bound = true;
      else received.push({message: parsed.message, pid: parsed.pid, at: performance.now()});
    }
  });
  await eventually(() => (bound ? true : undefined), 10_000, 'the receiving socket');
  return {path, received};
}

/**
 * `serve` as systemd starts it: exec'd by a shell that sets this environment first (`$$` is its
 * pid, node's after the exec). Two commands at a time: a third waits in the queue.
 */
const serveWith = async (environment: string) => startServeProcess({DRAIN_TIMEOUT: 5, MAX_RUNNING: 2}, await freePort(), `${environment}; exec "$@"`);

/** The processes whose parent is `pid`, by name. */
function childrenOf(pid: number): {pid: number; name: string}[] {
  return readdirSync(`/proc/${pid}/task`)
    .flatMap((task) => readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean))
    .map((child) => ({pid: Number(child), name: readFileSync(`/proc/${child}/comm`, 'utf8').trim()}));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the systemd notify protocol, with a real serve and a real datagram socket', () => {
  it('says READY=1 once it serves, keeps STATUS= current at most once a second, pings the watchdog from its event loop, and says RELOADING=1 and STOPPING=1', {timeout: 60_000}, async () => {
    const {path, received} = await startReceiver(tempDir());
    const serve = await serveWith(`export NOTIFY_SOCKET=${path} WATCHDOG_USEC=400000 WATCHDOG_PID=$$`);
    const ready = await eventually(() => received.find((entry) => entry.message.startsWith('READY=1')), 10_000, 'READY=1');
    assert.equal(received[0], ready, 'READY=1 comes first');
    assert.equal(ready.message, `READY=1\nSTATUS=serving 127.0.0.1:${new URL(serve.url).port}; 0 running, 0 queued`);
    assert.equal((await signedPost(serve.url, {command: 'echo served'})).json.data.stdout, 'served\n');

    // The sender is serve's child: why the unit says NotifyAccess=all.
    assert.deepEqual(childrenOf(serve.pid).find((child) => child.pid === ready.pid), {pid: ready.pid, name: 'dffs-notify'});
    assert.ok(received.every((entry) => entry.pid === ready.pid));

    const pings = () => received.filter((entry) => entry.message === 'WATCHDOG=1');
    await eventually(() => (pings().length >= 4 ? true : undefined), 5_000, 'four watchdog pings');
    const gaps = pings().slice(1).map((ping, index) => ping.at - pings()[index].at);
    assert.ok(gaps.every((gap) => gap > 100 && gap < 2000), `pings about every 200 ms (at half WATCHDOG_USEC), never bunched, never a watchdog period late: ${gaps.join(', ')}`);

    // Commands running and queued: STATUS= follows, one message a second at most.
    const commands = Array.from({length: 3}, () => signedPost(serve.url, {command: 'sleep 1.5; env'}));
    const serving = `serving 127.0.0.1:${new URL(serve.url).port}`;
    const busy = await eventually(() => received.findIndex((entry) => entry.message === `STATUS=${serving}; 2 running, 1 queued`) + 1 || undefined, 5_000, 'STATUS with 2 running and 1 queued');
    const outputs = await Promise.all(commands);
    await eventually(() => received.slice(busy).find((entry) => entry.message === `STATUS=${serving}; 0 running, 0 queued`), 5_000, 'STATUS with none running');
    const statuses = received.filter((entry) => entry.message.includes('STATUS='));
    const statusGaps = statuses.slice(1).map((status, index) => status.at - statuses[index].at);
    assert.ok(statusGaps.every((gap) => gap > 900), `STATUS= at most once a second: ${statusGaps.join(', ')}`);
    // Commands get an environment of their own: nothing of systemd's.
    for (const output of outputs) assert.doesNotMatch(output.json.data.stdout, /NOTIFY_SOCKET|WATCHDOG_/);

    // A stopped event loop sends no ping: what systemd's watchdog sees.
    process.kill(serve.pid, 'SIGSTOP');
    await sleep(100);
    const beforeStop = pings().length;
    await sleep(1200);
    assert.equal(pings().length, beforeStop, 'no ping while the daemon is stopped');
    process.kill(serve.pid, 'SIGCONT');
    await eventually(() => (pings().length > beforeStop + 1 ? true : undefined), 5_000, 'pings again after SIGCONT');

    const beforeReload = received.length;
    process.kill(serve.pid, 'SIGHUP');
    await eventually(() => (received.slice(beforeReload).some((entry) => entry.message.startsWith('READY=1')) ? true : undefined), 5_000, 'READY=1 after the reload');
    assert.deepEqual(
      received.slice(beforeReload).filter((entry) => entry.message !== 'WATCHDOG=1').map((entry) => entry.message.split('\n')[0]),
      ['RELOADING=1', 'READY=1'],
    );
    await eventually(() => (serve.events.some((event) => event.event === 'config-reloaded') ? true : undefined), 5_000, 'the reload');

    const beforeStopping = received.length;
    process.kill(serve.pid, 'SIGTERM');
    assert.equal((await serve.daemon).exitCode, 0);
    assert.ok(received.slice(beforeStopping).some((entry) => entry.message === 'STOPPING=1\nSTATUS=stopping; 0 running, 0 queued'));
    await eventually(() => (processExists(ready.pid) ? undefined : true), 5_000, 'the notifier to exit with serve');
  });

  it('starts another notifier when its notifier is killed, so that the watchdog does not restart a daemon that serves', {timeout: 30_000}, async () => {
    const {path, received} = await startReceiver(tempDir());
    const serve = await serveWith(`export NOTIFY_SOCKET=${path} WATCHDOG_USEC=400000 WATCHDOG_PID=$$`);
    const first = await eventually(() => received.find((entry) => entry.message.startsWith('READY=1')), 10_000, 'READY=1');
    // Past its first second: a notifier that ends sooner is taken for one that cannot send.
    await sleep(1200);
    process.kill(first.pid, 'SIGKILL');
    const again = await eventually(() => received.find((entry) => entry.pid !== first.pid && entry.message.startsWith('READY=1')), 5_000, 'READY=1 from a new notifier');
    assert.match(again.message, /^READY=1\nSTATUS=serving 127\.0\.0\.1:\d+; 0 running, 0 queued$/);
    await eventually(() => (received.filter((entry) => entry.pid === again.pid && entry.message === 'WATCHDOG=1').length >= 3 ? true : undefined), 5_000, 'watchdog pings from the new notifier');
    assert.ok(serve.events.some((event) => event.event === 'systemd-notify' && /--notify exited \(SIGKILL\); starting another/.test(String(event.error))));
    assert.equal((await signedPost(serve.url, {command: 'echo served'})).json.data.stdout, 'served\n');
  });

  it('sends no watchdog ping when WATCHDOG_PID names another process, and READY=1 all the same', {timeout: 30_000}, async () => {
    const {path, received} = await startReceiver(tempDir());
    await serveWith(`export NOTIFY_SOCKET=${path} WATCHDOG_USEC=200000 WATCHDOG_PID=1`);
    await eventually(() => received.find((entry) => entry.message.startsWith('READY=1')), 10_000, 'READY=1');
    await sleep(600);
    assert.deepEqual(received.filter((entry) => entry.message === 'WATCHDOG=1'), []);
  });

  it('starts no notifier for a personal serve (no NOTIFY_SOCKET)', {timeout: 30_000}, async () => {
    const serve = await serveWith('unset NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID');
    await sleep(200);
    assert.deepEqual(childrenOf(serve.pid).map((child) => child.name), ['dffs-spawn'], 'the spawn helper only');
    assert.ok(!serve.events.some((event) => event.event === 'systemd-notify'));
  });
});

describe('the notifier in the daemon', () => {
  it('says why systemd hears nothing when there is no helper to send with, and the daemon serves on', async () => {
    const {daemon, url, events} = await startTestDaemon();
    const env: NodeJS.ProcessEnv = {NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '30000000'};
    assert.equal(notifySystemd(daemon, {env, helper: join(tempDir(), 'dffs-spawn')}), undefined);
    const reported = events.find((event) => event.type === 'systemd-notify');
    assert.equal(reported?.level, 'error');
    assert.match(String(reported?.type === 'systemd-notify' && reported.error), /no dffs-spawn helper .* a Type=notify unit times out its start/);
    assert.deepEqual(env, {}, 'taken from the environment, so nothing started later inherits them');
    assert.equal((await signedPost(url, {command: 'echo still'})).json.data.stdout, 'still\n');
  });

  it('reports a helper that cannot send (no socket there), once, and the daemon serves on', async () => {
    const {daemon, url, events} = await startTestDaemon();
    const notifier = notifySystemd(daemon, {env: {NOTIFY_SOCKET: join(tempDir(), 'nobody-listens.sock')}});
    assert.ok(notifier);
    const reported = await eventually(() => events.find((event) => event.type === 'systemd-notify' && event.error), 5_000, 'the report');
    assert.match(String(reported.type === 'systemd-notify' && reported.error), /--notify exited \(code 1\): dffs-spawn: sendto NOTIFY_SOCKET: No such file or directory; systemd hears nothing more/);
    notifier.ready();
    await sleep(100);
    assert.equal(events.filter((event) => event.type === 'systemd-notify' && event.error).length, 1);
    assert.equal((await signedPost(url, {command: 'echo still'})).json.data.stdout, 'still\n');
  });

  it('pings at half of WATCHDOG_USEC, only for the process WATCHDOG_PID names, if it names one', () => {
    assert.equal(watchdogIntervalMs({WATCHDOG_USEC: '30000000'}), 15_000);
    assert.equal(watchdogIntervalMs({WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid)}), 15_000);
    assert.equal(watchdogIntervalMs({WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1'}), undefined);
    assert.equal(watchdogIntervalMs({}), undefined);
    assert.equal(watchdogIntervalMs({WATCHDOG_USEC: 'soon'}), undefined);
  });

  it('tells in STATUS= what is served, what waits for its address, and what runs', () => {
    const bind = [
      {address: '127.0.0.1:8099', state: 'listening' as const},
      {address: '172.17.0.1:8099', state: 'waiting' as const},
    ];
    const status = {bind, running: [], queued: 2} as unknown as Parameters<typeof statusText>[0];
    assert.equal(statusText(status, false), 'serving 127.0.0.1:8099, waiting for 172.17.0.1:8099; 0 running, 2 queued');
    assert.equal(statusText({...status, bind: [bind[1]]}, false), 'serving no address, waiting for 172.17.0.1:8099; 0 running, 2 queued');
    assert.equal(statusText(status, true), 'stopping; 0 running, 2 queued');
  });

  it('reads systemd\'s timespans', () => {
    assert.equal(parseTimespan('30s'), 30);
    assert.equal(parseTimespan('1min 30s'), 90);
    assert.equal(parseTimespan('500ms'), 0.5);
    assert.equal(parseTimespan('0'), undefined);
    assert.equal(parseTimespan('infinity'), undefined);
    assert.equal(parseTimespan(''), undefined);
  });
});
