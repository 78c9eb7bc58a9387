// The metrics listener (METRICS_BIND) beside the daemon's own: a BIND address that /metrics held
// until a reload is opened once /metrics lets it go; scrapes within a second share one collection;
// a scraper that stalls halfway through its request is dropped soon after headersTimeout.
import assert from 'node:assert/strict';
import {once} from 'node:events';
import {readFileSync, writeFileSync} from 'node:fs';
import {connect} from 'node:net';
import {after, describe, it} from 'node:test';
import {setTimeout as sleep} from 'node:timers/promises';
import type {StoredConfig} from '../src/config/config.js';
import type {SidecarEvent} from '../src/daemon/events.js';
import {MetricsEndpoint} from '../src/daemon/metrics.js';
import {eventually, signedPost, startTestDaemon} from './helpers.js';

/** A test daemon with /metrics wired as serve wires it: the endpoint made with the daemon, applied once it is up, following its reloads. */
async function daemonWithMetrics(config: StoredConfig = {}) {
  const test = await startTestDaemon({METRICS_BIND: '127.0.0.1:0', ...config});
  const endpoint = new MetricsEndpoint(test.daemon);
  after(() => endpoint.close());
  await endpoint.apply();
  assert.ok(endpoint.port, '/metrics listens');
  return {...test, endpoint};
}

/**
 * Rewrites the daemon's config file with these changes (undefined removes a key) and sends this
 * process a real SIGHUP, which reloads the daemon as serve's handler does. The order matters: a
 * signal's handler runs as a task of its own, so the new BIND address tries its port (on the next
 * tick) before /metrics, told in a promise's turn, lets that port go. A reload() called from the
 * test's own promise turn would let /metrics go first, and the BIND address would never fail.
 */
async function reloadBySighup(test: {daemon: {reload(): void}; configPath: string}, changes: Record<string, unknown>): Promise<void> {
  const config = JSON.parse(readFileSync(test.configPath, 'utf8')) as Record<string, unknown>;
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) delete config[key];
    else config[key] = value;
  }
  writeFileSync(test.configPath, JSON.stringify(config), {mode: 0o600});
  let reloaded!: () => void;
  const handled = new Promise<void>((resolve) => {
    reloaded = resolve;
  });
  const onHup = () => {
    test.daemon.reload();
    reloaded();
  };
  process.on('SIGHUP', onHup);
  try {
    process.kill(process.pid, 'SIGHUP');
    await handled;
  } finally {
    process.off('SIGHUP', onHup);
  }
}

/** Polls a signed POST /shell on this port until the daemon answers it with the command's output, or fails at the deadline with the last outcome. */
async function shellAnsweredOn(port: number, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = 'nothing tried';
  for (;;) {
    try {
      const res = await signedPost(`http://127.0.0.1:${port}`, {command: 'echo served-on-the-old-metrics-port'}, {signal: AbortSignal.timeout(2_000)});
      if (res.status === 200 && res.json?.data?.stdout === 'served-on-the-old-metrics-port\n') return res.json.data.stdout;
      last = `HTTP ${res.status}: ${res.raw.slice(0, 120)}`;
    } catch (error) {
      const cause = (error as Error).cause as NodeJS.ErrnoException | undefined;
      last = cause?.code ?? (error as Error).message;
    }
    if (Date.now() > deadline) assert.fail(`no signed POST /shell was answered on port ${port} within ${timeoutMs} ms; the last try: ${last}`);
    await sleep(100);
  }
}

/** Where in the log each step came: the BIND address failed first, then /metrics (METRICS_BIND as written: port 0) let the port go, then the BIND address listened. */
function bindSteps(events: SidecarEvent[], address: string, metricsAddress: string) {
  return {
    failed: events.findIndex((event) => event.type === 'bind-failed' && event.address === address),
    metricsClosed: events.findIndex((event) => event.type === 'metrics' && event.state === 'closed' && event.address === metricsAddress),
    listening: events.findIndex((event) => event.type === 'listening' && event.address === address),
  };
}

async function scrapeText(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

function acceptedIn(text: string): number {
  const match = /^dffs_requests_total\{outcome="accepted"\} (\d+)$/m.exec(text);
  assert.ok(match, 'the scrape has dffs_requests_total{outcome="accepted"}');
  return Number(match[1]);
}

describe('a BIND address that /metrics held until a reload', () => {
  it('swapped with METRICS_BIND: BIND fails on the port /metrics still holds, and is opened and serves signed requests once /metrics has moved off it', async () => {
    const test = await daemonWithMetrics();
    const {daemon, events, endpoint} = test;
    const bindPort = daemon.listenerStatus()[0].port as number;
    const metricsPort = endpoint.port as number;
    assert.equal((await signedPost(`http://127.0.0.1:${bindPort}`, {command: 'true'})).status, 200);
    assert.equal(acceptedIn(await scrapeText(metricsPort)), 1);

    await reloadBySighup(test, {BIND: `127.0.0.1:${metricsPort}`, METRICS_BIND: `127.0.0.1:${bindPort}`});
    assert.equal(await shellAnsweredOn(metricsPort, 5_000), 'served-on-the-old-metrics-port\n');

    // The port was taken at first, and opened only after /metrics closed it: the retry, not a lucky order.
    const steps = bindSteps(events, `127.0.0.1:${metricsPort}`, '127.0.0.1:0');
    assert.ok(steps.failed >= 0, 'BIND on the metrics port failed at first (it was in use)');
    assert.ok(steps.failed < steps.metricsClosed && steps.metricsClosed < steps.listening, `failed, then /metrics closed, then listening: ${JSON.stringify(steps)}`);
    assert.deepEqual(
      daemon.listenerStatus().map(({address, state}) => `${address} ${state}`),
      [`127.0.0.1:${metricsPort} listening`],
    );
    // /metrics took BIND's old port, and kept its counts: the request just served counts too, once
    // the collection made before the reload (reused for a second) has aged.
    assert.equal(endpoint.port, bindPort);
    await eventually(async () => (acceptedIn(await scrapeText(bindPort)) === 2 ? true : undefined), 5_000, '/metrics on its new port to count both requests');
  });

  it('METRICS_BIND removed while BIND adds its port: the added address serves signed requests once /metrics has stopped, beside the one BIND kept', async () => {
    const test = await daemonWithMetrics();
    const {daemon, events, endpoint} = test;
    const keptPort = daemon.listenerStatus()[0].port as number;
    const metricsPort = endpoint.port as number;

    await reloadBySighup(test, {BIND: `127.0.0.1:0,127.0.0.1:${metricsPort}`, METRICS_BIND: undefined});
    assert.equal(await shellAnsweredOn(metricsPort, 5_000), 'served-on-the-old-metrics-port\n');

    const steps = bindSteps(events, `127.0.0.1:${metricsPort}`, '127.0.0.1:0');
    assert.ok(steps.failed >= 0, 'the added BIND address failed at first (/metrics held its port)');
    assert.ok(steps.failed < steps.metricsClosed && steps.metricsClosed < steps.listening, `failed, then /metrics closed, then listening: ${JSON.stringify(steps)}`);
    assert.equal(endpoint.port, undefined);
    assert.deepEqual(
      daemon.listenerStatus().map(({address, state, port}) => `${address} ${state} ${port}`),
      [`127.0.0.1:0 listening ${keptPort}`, `127.0.0.1:${metricsPort} listening ${metricsPort}`],
    );
    assert.equal((await signedPost(`http://127.0.0.1:${keptPort}`, {command: 'true'})).status, 200);
  });
});

describe('the metrics listener under scrapes', () => {
  it('answers every scrape within a second of a collection from that collection: a request accepted meanwhile shows only once the second is over', async () => {
    const {daemon, url, endpoint} = await daemonWithMetrics();
    const port = endpoint.port as number;
    // A round counts only if it ended within 900 ms of the first scrape's start: the collection
    // it made is then certainly under a second old for every later scrape of the round (its time
    // was taken after that start). A machine too slow for that tries again after the second.
    for (let round = 1; ; round++) {
      const start = performance.now();
      const first = await scrapeText(port);
      const before = acceptedIn(first);
      assert.equal((await signedPost(url, {command: 'true'})).status, 200);
      const acceptedNow = daemon.counters.accepted;
      const later = await Promise.all(Array.from({length: 10}, () => scrapeText(port)));
      if (performance.now() - start < 900) {
        assert.equal(acceptedNow, before + 1, 'the daemon counted the request');
        for (const text of later) {
          assert.equal(acceptedIn(text), before, 'a scrape within the second still shows the count collected at its start');
          // Byte for byte, prom-client's heap and CPU figures included: one collection, not ten (ten at once: /metrics takes 16 connections).
          assert.equal(text, first);
        }
        break;
      }
      if (round === 5) assert.fail('five rounds each took 900 ms or more: this machine is too slow for the test');
      await sleep(1_100);
    }
    await sleep(1_100);
    assert.equal(acceptedIn(await scrapeText(port)), daemon.counters.accepted, 'once the second is over, a scrape collects afresh');
  });

  it('drops a scraper that sends half its headers and stalls, with a 408, once headersTimeout (10 s) has passed, well before Node\'s default 30 s check', async () => {
    // A listener just opened: with Node's default connectionsCheckingInterval its first check is 30 s away.
    const {endpoint} = await daemonWithMetrics();
    const socket = connect(endpoint.port as number, '127.0.0.1');
    after(() => socket.destroy());
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (data: Buffer) => {
      received += data.toString('latin1');
    });
    socket.on('error', () => undefined);
    const closed = once(socket, 'close').then(() => 'closed');
    // No blank line: the headers never end.
    socket.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: stalls');
    const giveUp = new AbortController();
    const outcome = await Promise.race([closed, sleep(10_000 + 3_000, 'still connected', {signal: giveUp.signal}).catch(() => 'aborted')]);
    giveUp.abort();
    assert.equal(outcome, 'closed', 'the stalled scraper was still connected 13 s after it began its request (headersTimeout 10 s)');
    assert.match(received, /^HTTP\/1\.1 408 /, 'closed by the request timeout');
  });
});
