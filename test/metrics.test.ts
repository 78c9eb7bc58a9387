import {execa} from 'execa';
import assert from 'node:assert/strict';
import {readdirSync, readFileSync, readlinkSync, writeFileSync} from 'node:fs';
import {createServer} from 'node:http';
import type {AddressInfo} from 'node:net';
import {after, describe, it} from 'node:test';
import {MetricsEndpoint} from '../src/daemon/metrics.js';
import {planConfig} from '../src/admin/install.js';
import {VERSION} from '../src/protocol/version.js';
import {eventually, freePort, signedPost, startCallbackReceiver, startServeProcess, startTestDaemon, tempDir, TEST_SECRET} from './helpers.js';

const OPS_SECRET = 'ops-secret-0123456789abcdefghijkl';
const WRONG_SECRET = 'wrong-secret-0123456789abcdefghij';
/** In every command the test sends: it must never show in a scrape. */
const MARK = 'dffs-metrics-marker';

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  return res.text();
}

/** A sample's value: the one of that name whose labels are exactly these. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, key, value]) => [key, value]));
    if (JSON.stringify(Object.entries(found).sort()) === JSON.stringify(Object.entries(labels).sort())) return Number(match[3]);
  }
  return undefined;
}

/** `promtool check metrics` on a scrape: it must pass, and promtool must be there (Debian's prometheus package; scripts/test-prereqs.sh installs it). */
async function promtoolCheck(text: string): Promise<void> {
  const result = await execa('promtool', ['check', 'metrics'], {input: text, reject: false, all: true});
  if ((result as {code?: string}).code === 'ENOENT') {
    assert.fail('promtool is missing: install Debian\'s prometheus package (apt-get install prometheus; npm test does so as root)');
  }
  assert.equal(result.exitCode, 0, `promtool check metrics failed:\n${result.all}`);
}

/** The TCP ports a process listens on, from its sockets' inodes in /proc. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set(
    readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
      try {
        return [/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? []].flat();
      } catch {
        return [];
      }
    }),
  );
  return ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((table) =>
    readFileSync(table, 'utf8')
      .split('\n')
      .slice(1)
      .map((row) => row.trim().split(/\s+/))
      .filter((fields) => fields[3] === '0A' && inodes.has(fields[9]))
      .map((fields) => parseInt(fields[1].split(':')[1], 16)),
  );
}

async function refused(port: number): Promise<boolean> {
  try {
    await fetch(`http://127.0.0.1:${port}/metrics`);
    return false;
  } catch (error) {
    return ((error as Error).cause as NodeJS.ErrnoException | undefined)?.code === 'ECONNREFUSED';
  }
}

describe('/metrics under load', () => {
  it('counts what was sent: requests by outcome and reason, commands by result, callbacks; promtool passes; no command, address or secret shows', async () => {
    const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
    const twoHoursAgo = new Date(Date.now() - 7_200_000).toISOString();
    const {daemon, url} = await startTestDaemon({
      METRICS_BIND: '127.0.0.1:0',
      SECRET_CREATED_AT: hourAgo,
      KEYS: {ops: {secret: OPS_SECRET, createdAt: twoHoursAgo}},
      MAX_RUNNING: 4,
      KILL_GRACE: 1,
      CALLBACK_RETRIES: 1,
    });
    const endpoint = new MetricsEndpoint(daemon);
    after(() => endpoint.close());
    await endpoint.apply();
    const port = endpoint.port as number;
    const workdir = tempDir();
    const receiver = await startCallbackReceiver();
    const failingReceiver = await startCallbackReceiver(Array(10).fill(500));

    // Six that time out: four fill MAX_RUNNING, two wait in the queue.
    const slow = Array.from({length: 6}, () => signedPost(url, {command: `sleep 30 # ${MARK}`, timeout: 2}));
    const busy = await eventually(async () => {
      const text = await scrape(port);
      return sample(text, 'dffs_commands_running') === 4 && sample(text, 'dffs_commands_queued') === 2 ? text : undefined;
    }, 10_000, 'four running and two queued');
    await promtoolCheck(busy);

    const sends: Promise<{status: number}>[] = [];
    for (let i = 0; i < 150; i++) {
      const body = {command: `echo ${MARK}-${i}`, ...(i % 3 === 0 ? {workdir} : {}), envs: {[`${MARK.toUpperCase().replace(/-/g, '_')}`]: TEST_SECRET}};
      sends.push(signedPost(url, body, i % 5 === 0 ? {secret: OPS_SECRET} : {}));
    }
    for (let i = 0; i < 40; i++) sends.push(signedPost(url, {command: `exit 3 # ${MARK}`}));
    for (let i = 0; i < 20; i++) sends.push(signedPost(url, {command: `true ${MARK}`, wait: false, callbackURL: receiver.url}));
    for (let i = 0; i < 5; i++) sends.push(signedPost(url, {command: `true ${MARK}`, wait: false, callbackURL: failingReceiver.url}));
    for (let i = 0; i < 60; i++) sends.push(signedPost(url, {command: `echo ${MARK}`}, {secret: WRONG_SECRET}));
    for (let i = 0; i < 10; i++) sends.push(fetch(`${url}/shell`, {method: 'POST', body: JSON.stringify({command: MARK})}));
    for (let i = 0; i < 5; i++) sends.push(signedPost(url, {command: MARK}, {path: '/nope'}));
    const statuses = (await Promise.all([...slow, ...sends])).map((res) => res.status);
    assert.deepEqual(
      statuses.reduce<Record<number, number>>((count, status) => ({...count, [status]: (count[status] ?? 0) + 1}), {}),
      {200: 6 + 150 + 40 + 25, 401: 60 + 10, 404: 5},
    );
    await eventually(async () => {
      const text = await scrape(port);
      return sample(text, 'dffs_callback_attempts_total', {result: 'delivered'}) === 20 && sample(text, 'dffs_callback_attempts_total', {result: 'failed'}) === 5 ? true : undefined;
    }, 15_000, 'every callback to be delivered or given up');

    const text = await scrape(port);
    await promtoolCheck(text);
    const accepted = 6 + 150 + 40 + 25;
    const expected: [string, Record<string, string>, number][] = [
      ['dffs_requests_total', {outcome: 'accepted'}, accepted],
      ['dffs_requests_total', {outcome: 'refused', reason: 'bad-signature'}, 60],
      ['dffs_requests_total', {outcome: 'refused', reason: 'missing-header'}, 10],
      ['dffs_requests_total', {outcome: 'refused', reason: 'not-found'}, 5],
      ['dffs_commands_total', {result: 'succeeded'}, 150 + 25],
      ['dffs_commands_total', {result: 'failed'}, 40],
      ['dffs_commands_total', {result: 'timed_out'}, 6],
      ['dffs_commands_total', {result: 'cancelled'}, 0],
      ['dffs_commands_total', {result: 'spawner_stopped'}, 0],
      ['dffs_commands_total', {result: 'not_started'}, 0],
      ['dffs_command_duration_seconds_count', {}, accepted],
      ['dffs_callback_attempts_total', {result: 'delivered'}, 20],
      ['dffs_callback_attempts_total', {result: 'retry'}, 5],
      ['dffs_callback_attempts_total', {result: 'failed'}, 5],
      ['dffs_commands_running', {}, 0],
      ['dffs_commands_queued', {}, 0],
      // Each accepted request left its nonce; the others were refused before theirs was kept.
      ['dffs_replay_cache_entries', {}, accepted],
      ['dffs_build_info', {version: VERSION, node_version: process.version}, 1],
    ];
    for (const [name, labels, value] of expected) assert.equal(sample(text, name, labels), value, `${name}${JSON.stringify(labels)}`);
    // The timed-out ones ran about 2 s each; the rest well under.
    assert.equal(sample(text, 'dffs_command_duration_seconds_bucket', {le: '1'}), accepted - 6);
    assert.equal(sample(text, 'dffs_command_duration_seconds_bucket', {le: '+Inf'}), accepted);
    const defaultAge = sample(text, 'dffs_key_age_seconds', {key: 'default'}) as number;
    const opsAge = sample(text, 'dffs_key_age_seconds', {key: 'ops'}) as number;
    assert.ok(defaultAge >= 3600 && defaultAge < 3700, `default key age ${defaultAge}`);
    assert.ok(opsAge >= 7200 && opsAge < 7300, `ops key age ${opsAge}`);
    assert.ok(sample(text, 'process_resident_memory_bytes'), 'prom-client\'s process metrics are there');
    for (const secret of [MARK, TEST_SECRET, OPS_SECRET, WRONG_SECRET, workdir, '127.0.0.1', 'echo', 'sleep']) {
      assert.ok(!text.includes(secret), `the scrape shows ${secret}`);
    }
  });

  it('answers 404 to anything but GET /metrics, and HEAD /metrics without a body', async () => {
    const {daemon} = await startTestDaemon({METRICS_BIND: '127.0.0.1:0'});
    const endpoint = new MetricsEndpoint(daemon);
    after(() => endpoint.close());
    await endpoint.apply();
    const base = `http://127.0.0.1:${endpoint.port}`;
    for (const [method, path] of [['GET', '/'], ['GET', '/metrics/'], ['POST', '/metrics'], ['GET', '/shell'], ['DELETE', '/metrics']]) {
      assert.equal((await fetch(`${base}${path}`, {method})).status, 404, `${method} ${path}`);
    }
    const head = await fetch(`${base}/metrics`, {method: 'HEAD'});
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    assert.equal((await fetch(`${base}/metrics?x=1`)).status, 200);
  });
});

describe('METRICS_BIND and reloads', () => {
  it('without METRICS_BIND serve listens on BIND alone; SIGHUP starts, moves and stops /metrics as the config says', async () => {
    const [bindPort, firstPort, secondPort] = [await freePort(), await freePort(), await freePort()];
    const {pid, events} = await startServeProcess({}, bindPort);
    const configPath = String(events.find((event) => event.event === 'started')?.config);
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    const reload = async (changes: Record<string, unknown>) => {
      const reloads = events.filter((event) => event.event === 'config-reloaded').length;
      Object.assign(config, changes);
      for (const [key, value] of Object.entries(changes)) if (value === undefined) delete config[key];
      writeFileSync(configPath, JSON.stringify(config));
      process.kill(pid, 'SIGHUP');
      await eventually(() => (events.filter((event) => event.event === 'config-reloaded').length > reloads ? true : undefined), 10_000, 'the reload');
    };
    const metricsEvents = () => events.filter((event) => event.event === 'metrics').map(({address, state}) => `${address} ${state}`);

    assert.deepEqual(listeningPorts(pid), [bindPort]);
    assert.deepEqual(metricsEvents(), []);

    await reload({METRICS_BIND: `127.0.0.1:${firstPort}`});
    await eventually(() => (metricsEvents().length === 1 ? true : undefined), 10_000, '/metrics to listen');
    assert.deepEqual(metricsEvents(), [`127.0.0.1:${firstPort} listening`]);
    assert.deepEqual(listeningPorts(pid).sort(), [bindPort, firstPort].sort());
    await promtoolCheck(await scrape(firstPort));

    // Another setting changes: /metrics stays where it is, its counters too.
    await signedPost(`http://127.0.0.1:${bindPort}`, {command: 'true'});
    await reload({MAX_RUNNING: 8});
    // One collection serves the scrapes of a second.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    assert.equal(sample(await scrape(firstPort), 'dffs_requests_total', {outcome: 'accepted'}), 1);
    assert.equal(metricsEvents().length, 1);

    await reload({METRICS_BIND: `127.0.0.1:${secondPort}`});
    await eventually(() => (metricsEvents().length === 3 ? true : undefined), 10_000, '/metrics to move');
    assert.deepEqual(metricsEvents().slice(1), [`127.0.0.1:${firstPort} closed`, `127.0.0.1:${secondPort} listening`]);
    assert.ok(await refused(firstPort));
    assert.equal(sample(await scrape(secondPort), 'dffs_requests_total', {outcome: 'accepted'}), 1);

    await reload({METRICS_BIND: undefined});
    await eventually(() => (metricsEvents().length === 4 ? true : undefined), 10_000, '/metrics to stop');
    assert.equal(metricsEvents()[3], `127.0.0.1:${secondPort} closed`);
    assert.ok(await refused(secondPort));
    assert.deepEqual(listeningPorts(pid), [bindPort]);
  });

  it('a METRICS_BIND in use is reported and the daemon serves on; a reload tries again', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const {port} = blocker.address() as AddressInfo;
    const {daemon, url, events} = await startTestDaemon({METRICS_BIND: `127.0.0.1:${port}`});
    const endpoint = new MetricsEndpoint(daemon);
    after(() => endpoint.close());
    await endpoint.apply();
    const failed = events.find((event) => event.type === 'metrics');
    assert.equal(failed?.type === 'metrics' && failed.state, 'failed');
    assert.equal(failed?.level, 'warn');
    assert.match(failed?.type === 'metrics' ? String(failed.error) : '', /port \d+ is already in use on 127\.0\.0\.1: choose another METRICS_BIND/);
    assert.equal(endpoint.port, undefined);
    assert.equal((await signedPost(url, {command: 'true'})).status, 200);

    await new Promise((resolve) => blocker.close(resolve));
    daemon.reload();
    await eventually(() => endpoint.port, 10_000, '/metrics to listen after the reload');
    assert.equal(endpoint.port, port);
    // Counted while /metrics could not listen.
    assert.equal(sample(await scrape(port), 'dffs_requests_total', {outcome: 'accepted'}), 1);
  });
});

describe('install --metrics', () => {
  it('sets METRICS_BIND to 127.0.0.1:9464, keeping an address the config already has', () => {
    assert.equal(planConfig(undefined, {metrics: true}).config.METRICS_BIND, '127.0.0.1:9464');
    assert.equal(planConfig(undefined, {}).config.METRICS_BIND, undefined);
    const existing = JSON.stringify({BIND: '127.0.0.1:8099', SECRET_KEY: TEST_SECRET, METRICS_BIND: '10.0.0.5:9100'});
    const kept = planConfig(existing, {metrics: true});
    assert.equal(kept.config.METRICS_BIND, '10.0.0.5:9100');
    assert.equal(kept.changed, false);
    assert.equal(planConfig(JSON.stringify({BIND: '127.0.0.1:8099', SECRET_KEY: TEST_SECRET}), {metrics: true}).changed, true);
  });
});
