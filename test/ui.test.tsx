import assert from 'node:assert/strict';
import {EventEmitter} from 'node:events';
import {afterEach, describe, it} from 'node:test';
import {render as renderInk} from 'ink';
import {render as renderForTest} from 'ink-testing-library';
import {emptyCounters, type SidecarEvent, type SidecarEventBody} from '../src/daemon/events.js';
import {Dashboard} from '../src/ui/Dashboard.js';
import {daemonFeed} from '../src/ui/run.js';
import {eventually, signedPost, startTestDaemon} from './helpers.js';
import type {Snapshot} from '../src/protocol/control-messages.js';
import type {DashboardFeed, FeedMessage} from '../src/ui/feed.js';

const NOW = Date.parse('2026-11-24T12:00:00.000Z');

function snapshot(history: SidecarEvent[] = []): Snapshot {
  return {
    type: 'snapshot',
    status: {
      version: '1.0.0',
      pid: 4242,
      startedAt: new Date(NOW - 3_600_000).toISOString(),
      uptimeSeconds: 3600,
      configPath: '/etc/dataflux-func-sidecar',
      bind: [
        {address: '127.0.0.1:8099', state: 'listening', port: 8099},
        {address: '172.17.0.1:8099', state: 'waiting', error: 'EADDRNOTAVAIL'},
      ],
      secret: {configured: true, createdAt: new Date(NOW - 3 * 86_400_000).toISOString()},
      counters: emptyCounters(),
      running: [],
      queued: 0,
    },
    history,
  };
}

let clock = NOW - 60_000;
function event(body: SidecarEventBody): SidecarEvent {
  clock += 1000;
  return {...body, time: clock, level: 'info'} as SidecarEvent;
}

/** A feed the test drives by hand. */
function manualFeed(first: FeedMessage) {
  let listener: ((message: FeedMessage) => void) | undefined;
  const feed: DashboardFeed = {
    subscribe(next) {
      listener = next;
      next(first);
      return () => {
        listener = undefined;
      };
    },
    output: (_jobId, onOutput) => {
      onOutput({missing: true});
      return () => {};
    },
    cancel: () => Promise.resolve('not-found'),
  };
  return {feed, send: (message: FeedMessage) => listener?.(message)};
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every dashboard drawn is unmounted after its test, passed or failed: one left running keeps the process alive. */
const drawn: {unmount(): void; lastFrame(): string | undefined}[] = [];
afterEach(() => {
  for (const instance of drawn.splice(0)) instance.unmount();
});

/**
 * Lets the dashboards draw what they were sent: 50 ms, and on a busy machine as long as one still
 * waits for its first snapshot (every test sends one), up to 5 s.
 */
async function tick(): Promise<void> {
  await pause(50);
  for (let waited = 0; waited < 5000 && drawn.some((instance) => instance.lastFrame()?.includes('[connecting…]')); waited += 20) await pause(20);
}

function render(element: Parameters<typeof renderForTest>[0]) {
  const instance = renderForTest(element);
  let mounted = true;
  const unmount = () => {
    if (mounted) instance.unmount();
    mounted = false;
  };
  drawn.push({unmount, lastFrame: instance.lastFrame});
  return {...instance, unmount};
}

const accepted = (jobId: string, command: string, extra: Partial<SidecarEventBody> = {}) =>
  event({type: 'request-accepted', jobId, remote: '172.17.0.2', key: 'default', command, wait: true, envKeys: ['MY_NAME'], timeoutSeconds: 3600, ...extra} as SidecarEventBody);

describe('the dashboard', () => {
  it('draws an empty daemon: version, uptime, binds, secret age, counters', async () => {
    const {feed} = manualFeed(snapshot());
    const {lastFrame, unmount} = render(<Dashboard feed={feed} colour={false} now={() => NOW} />);
    await tick();
    const frame = lastFrame() ?? '';
    assert.match(frame, /DataFlux Func Sidecar 1\.0\.0 {2}up 1h {2}pid 4242 {2}\[live\]/);
    assert.match(frame, /bind 127\.0\.0\.1:8099 listening {2}172\.17\.0\.1:8099 waiting/);
    assert.match(frame, /secret: set 3d ago/);
    assert.match(frame, /requests 0 {2}ok 0 {2}failed 0 {2}timed out 0 {2}refused 0 {2}running 0 {2}queued 0/);
    assert.match(frame, /no requests yet/);
    assert.match(frame, /q quit/);
    unmount();
  });

  it('shows a running command, then its exit, live', async () => {
    const {feed, send} = manualFeed(snapshot());
    const {lastFrame, unmount} = render(<Dashboard feed={feed} colour={false} now={() => NOW} />);
    send({type: 'event', event: accepted('job-1', 'tar czf /tmp/backup.tgz /srv/data')});
    send({type: 'event', event: event({type: 'command-started', jobId: 'job-1', pid: 777})});
    await tick();
    assert.match(lastFrame() ?? '', /> \d\d:\d\d:\d\d 172\.17\.0\.2 +tar czf \/tmp\/backup\.tgz \/srv\/data +wait +running/);
    assert.match(lastFrame() ?? '', /running 1/);
    send({type: 'event', event: event({type: 'command-finished', jobId: 'job-1', exitCode: 2, signal: null, timedOut: false, durationMs: 1500, stdoutBytes: 10, stderrBytes: 5, truncated: false})});
    await tick();
    assert.match(lastFrame() ?? '', /tar czf .* exit 2 +1\.5s/);
    assert.match(lastFrame() ?? '', /failed 1/);
    unmount();
  });

  it('shows a refused request with its reason', async () => {
    const {feed, send} = manualFeed(snapshot());
    const {lastFrame, unmount} = render(<Dashboard feed={feed} colour={false} now={() => NOW} />);
    send({type: 'event', event: event({type: 'request-refused', remote: '10.1.2.3', status: 401, reason: 'bad-signature', message: 'bad signature'})});
    await tick();
    assert.match(lastFrame() ?? '', /10\.1\.2\.3 +\[bad-signature\] bad signature +refused 401/);
    assert.match(lastFrame() ?? '', /refused: bad-signature 1/);
    unmount();
  });

  it('opens the details of the selected request, env values hidden, and goes back with Esc', async () => {
    const history = [
      accepted('job-a', 'echo first', {callback: 'http://172.17.0.1:8088', key: 'ops'}),
      event({type: 'command-started', jobId: 'job-a', pid: 100}),
      event({type: 'command-finished', jobId: 'job-a', exitCode: 0, signal: null, timedOut: false, durationMs: 12, stdoutBytes: 6, stderrBytes: 0, truncated: false}),
      event({type: 'callback-failed', jobId: 'job-a', attempt: 1, error: 'HTTP 503', retryInMs: 1000}),
      event({type: 'callback-delivered', jobId: 'job-a', attempt: 2, status: 200, durationMs: 3}),
      accepted('job-b', 'echo second'),
    ];
    const {feed} = manualFeed(snapshot(history));
    const {lastFrame, stdin, unmount} = render(<Dashboard feed={feed} colour={false} now={() => NOW} />);
    await tick();
    assert.match(lastFrame() ?? '', /> .*echo second/);
    stdin.write('j');
    await tick();
    assert.match(lastFrame() ?? '', /> .*echo first .*exit 0 .*ok 200/);
    // A named key is shown beside the source; the default one, SECRET_KEY, is not.
    assert.match(lastFrame() ?? '', /172\.17\.0\.2 o/);
    stdin.write('\r');
    await tick();
    const detail = lastFrame() ?? '';
    assert.match(detail, /Request details/);
    assert.match(detail, /command +echo first/);
    assert.match(detail, /key +ops/);
    assert.match(detail, /env keys +MY_NAME \(values hidden\)/);
    assert.match(detail, /exit code +0/);
    assert.match(detail, /attempt 1 +\d\d:\d\d:\d\d failed: HTTP 503/);
    assert.match(detail, /attempt 2 +\d\d:\d\d:\d\d delivered, HTTP 200/);
    stdin.write('\u001B');
    await tick();
    assert.doesNotMatch(lastFrame() ?? '', /Request details/);
    unmount();
  });

  it('filters with /, pauses with p, clears with c and shows help with ?', async () => {
    const {feed, send} = manualFeed(snapshot([accepted('1', 'uptime'), accepted('2', 'df -h'), accepted('3', 'uptime -p')]));
    const {lastFrame, stdin, unmount} = render(<Dashboard feed={feed} colour={false} now={() => NOW} />);
    await tick();
    for (const key of ['/', 'u', 'p', 't', '\r']) {
      stdin.write(key);
      await tick();
    }
    const filtered = lastFrame() ?? '';
    assert.match(filtered, /uptime -p/);
    assert.doesNotMatch(filtered, /df -h/);
    assert.match(filtered, /\/ filter \[upt\]/);
    stdin.write('p');
    await tick();
    send({type: 'event', event: accepted('4', 'uptime --since')});
    await tick();
    assert.match(lastFrame() ?? '', /PAUSED/);
    assert.doesNotMatch(lastFrame() ?? '', /uptime --since/);
    stdin.write('p');
    await tick();
    assert.match(lastFrame() ?? '', /uptime --since/);
    stdin.write('?');
    await tick();
    assert.match(lastFrame() ?? '', /Keys[\s\S]*p +pause or resume/);
    stdin.write('\u001B');
    await tick();
    stdin.write('c');
    await tick();
    assert.match(lastFrame() ?? '', /no request matches "upt"/);
    unmount();
  });

  it('says when the daemon is away', async () => {
    const {feed, send} = manualFeed(snapshot());
    const {lastFrame, unmount} = render(<Dashboard feed={feed} colour={false} now={() => NOW} />);
    send({type: 'disconnected', reason: 'the sidecar is not running'});
    await tick();
    assert.match(lastFrame() ?? '', /\[disconnected: the sidecar is not running \(retrying\)\]/);
    unmount();
  });

  it('fits a narrow terminal, dropping the source and callback columns', async () => {
    const output: string[] = [];
    const stdout = Object.assign(new EventEmitter(), {columns: 50, rows: 20, isTTY: false, write: (frame: string) => output.push(frame)});
    const {feed} = manualFeed(snapshot([accepted('1', 'a command far too long for a narrow terminal to show whole')]));
    const instance = renderInk(<Dashboard feed={feed} colour={false} now={() => NOW} />, {stdout: stdout as unknown as NodeJS.WriteStream, debug: true, patchConsole: false});
    await tick();
    const frame = output.at(-1) ?? '';
    for (const line of frame.split('\n')) assert.ok(line.length <= 50, `"${line}" is ${line.length} wide`);
    assert.match(frame, /TIME +COMMAND +MODE +STATE/);
    assert.doesNotMatch(frame, /SOURCE|CALLBACK/);
    assert.match(frame, /> \d\d:\d\d:\d\d a command far… wait/);
    instance.unmount();
  });
});

describe('the dashboard on a real daemon', () => {
  it('follows the selected job\'s output live in its details, and cancels it with c after a yes', async () => {
    const {daemon, url} = await startTestDaemon({KILL_GRACE: 1});
    const {lastFrame, stdin, unmount} = render(<Dashboard feed={daemonFeed(daemon)} colour={false} />);
    const reply = await signedPost(url, {command: 'for i in $(seq 40); do echo "line $i"; done; echo oops >&2; sleep 0.7; echo later; sleep 60', wait: false});
    const jobId = reply.json.data.jobId as string;
    await eventually(() => (/running/.test(lastFrame() ?? '') ? true : undefined), 15_000, 'the running job');
    // The key handler of the frame just drawn is in place after the next turn.
    await tick();
    stdin.write('\r');
    const frame = await eventually(() => (/line 40/.test(lastFrame() ?? '') ? lastFrame() : undefined), 15_000, 'its output').catch((error: Error) => assert.fail(`${error.message}:\n${lastFrame()}`));
    assert.match(frame!, /Output \(live\)/);
    assert.match(frame!, /line 1\n/, 'the head is kept');
    assert.match(frame!, /… \d+ lines …/, 'the middle gives way to the tail');
    assert.match(frame!, /^ {2}oops$/m);
    await eventually(() => (/^ {2}later$/m.test(lastFrame() ?? '') ? true : undefined), 15_000, 'a line printed while the details were open');
    await tick();
    stdin.write('c');
    await eventually(() => (/Cancel job .*\? .*y to cancel/.test(lastFrame() ?? '') ? true : undefined), 15_000, 'the confirmation');
    stdin.write('n');
    await eventually(() => (/not cancelled/.test(lastFrame() ?? '') ? true : undefined), 15_000, 'the cancel declined');
    assert.equal(daemon.jobs.get(jobId)?.state, 'running');
    stdin.write('c');
    await eventually(() => (/y to cancel/.test(lastFrame() ?? '') ? true : undefined), 15_000, 'the confirmation again');
    stdin.write('y');
    await eventually(() => (daemon.jobs.get(jobId)?.state === 'cancelled' ? true : undefined), 15_000, 'the job cancelled');
    await eventually(() => (/state +cancelled/.test(lastFrame() ?? '') ? true : undefined), 15_000, 'the details saying so');
    unmount();
  });

  it('draws a command\'s terminal escapes as harmless characters, never as escapes', async () => {
    const {daemon, url} = await startTestDaemon();
    const {lastFrame, stdin, unmount} = render(<Dashboard feed={daemonFeed(daemon)} colour={false} />);
    await signedPost(url, {command: "printf 'title \\033]0;owned\\007 clip \\033]52;c;aGk=\\007 bidi \\342\\200\\256x\\n'; sleep 2", wait: false});
    await eventually(() => (/running/.test(lastFrame() ?? '') ? true : undefined), 15_000, 'the running job');
    await tick();
    stdin.write('\r');
    const frame = await eventually(() => (/title .*clip .*bidi/.test(lastFrame() ?? '') ? lastFrame() : undefined), 15_000, 'its output');
    assert.doesNotMatch(frame!, /[\u001b\u0007\u202e]/);
    assert.match(frame!, /title \ufffd\]0;owned\ufffd clip/);
    unmount();
  });
});
