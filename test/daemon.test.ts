import assert from 'node:assert/strict';
import {existsSync, readFileSync, writeFileSync} from 'node:fs';
import {request} from 'node:http';
import {join} from 'node:path';
import {describe, it} from 'node:test';
import {formatEvent} from '../src/daemon/log.js';
import {SPAWN_HELPER_PATH} from '../src/daemon/spawn-helper.js';
import {sign, signRequest} from '../src/protocol/signature.js';
import {eventually, processExists, signedPost, startCallbackReceiver, startTestDaemon, tempDir, TEST_SECRET, type TestSpawner} from './helpers.js';

/** Sends raw bytes with the given headers (what fetch would not let us send). */
function rawPost(url: string, headers: Record<string, string>, body: Buffer | string, chunks?: Buffer[]) {
  return new Promise<{status: number; body: string}>((resolve, reject) => {
    const req = request(`${url}/shell`, {method: 'POST', headers}, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('end', () => resolve({status: res.statusCode ?? 0, body: Buffer.concat(parts).toString()}));
    });
    req.on('error', reject);
    if (chunks) {
      for (const chunk of chunks) req.write(chunk);
      req.end();
    } else {
      req.end(body);
    }
  });
}

describe('GET / and routing', async () => {
  const {url} = await startTestDaemon();

  it('answers the plain-text greeting without auth', async () => {
    const res = await fetch(`${url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(await res.text(), /^Welcome to DataFlux Func Sidecar\n\* Version: \d+\.\d+\.\d+\n\* Release Date: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n$/);
    assert.equal((await fetch(`${url}/`, {method: 'HEAD'})).status, 200);
  });

  it('answers 404 for unknown paths and 405 for wrong methods, in JSON', async () => {
    const missing = await fetch(`${url}/nope`);
    assert.equal(missing.status, 404);
    assert.deepEqual(Object.keys((await missing.json()) as object), ['ok', 'message', 'reason']);
    const getShell = await fetch(`${url}/shell`);
    assert.equal(getShell.status, 405);
    assert.equal(getShell.headers.get('allow'), 'POST');
    assert.match(((await getShell.json()) as {message: string}).message, /use POST/);
    assert.equal((await fetch(`${url}/`, {method: 'POST'})).status, 405);
  });
});

describe('without a secret key', async () => {
  const {url} = await startTestDaemon({SECRET_KEY: undefined});

  it('refuses every command with 503 and says how to set one', async () => {
    const res = await signedPost(url, {command: 'hostname'});
    assert.equal(res.status, 503);
    assert.equal(res.json.ok, false);
    assert.match(res.json.message, /no secret key is configured: set SECRET_KEY in .*config\.json/);
  });
});

describe('authentication', async () => {
  const {url, events} = await startTestDaemon({BODY_LIMIT: 4096});
  const body = JSON.stringify({command: 'touch /tmp/should-not-exist'});
  const started = () => events.filter((e) => e.type === 'command-started').length;

  async function expectRefused(headers: Record<string, string>, reason: string, message: RegExp, sent = body) {
    const before = started();
    const res = await rawPost(url, {'Content-Type': 'application/json', ...headers}, sent);
    assert.equal(res.status, 401, res.body);
    const json = JSON.parse(res.body);
    assert.equal(json.ok, false);
    assert.equal(json.reason, reason);
    assert.match(json.message, message);
    assert.equal(started(), before, 'nothing ran');
  }

  it('refuses a request without the auth headers', async () => {
    await expectRefused({}, 'missing-header', /missing header X-Auth-Nonce/);
    const {'X-Auth-Signature': _, ...unsigned} = signRequest(TEST_SECRET, 'POST', '/shell', body);
    await expectRefused(unsigned, 'missing-header', /missing header X-Auth-Signature/);
  });

  it('refuses malformed headers', async () => {
    await expectRefused({...signRequest(TEST_SECRET, 'POST', '/shell', body), 'X-Auth-Signature': 'abc'}, 'malformed-header', /X-Auth-Signature is malformed/);
    await expectRefused({...signRequest(TEST_SECRET, 'POST', '/shell', body), 'X-Auth-Timestamp': 'yesterday'}, 'malformed-header', /X-Auth-Timestamp/);
  });

  it('refuses a wrong key, a changed body, another path or method', async () => {
    await expectRefused(signRequest('another-secret-key', 'POST', '/shell', body), 'bad-signature', /bad signature/);
    await expectRefused(signRequest(TEST_SECRET, 'POST', '/shell', body), 'bad-signature', /bad signature/, body.replace('touch', 'rm -f'));
    await expectRefused(signRequest(TEST_SECRET, 'POST', '/other', body), 'bad-signature', /bad signature/);
    await expectRefused(signRequest(TEST_SECRET, 'GET', '/shell', body), 'bad-signature', /bad signature/);
  });

  it('accepts the signature in lower case too', async () => {
    const headers = signRequest(TEST_SECRET, 'POST', '/shell', '{"command":"echo ok"}');
    const res = await rawPost(url, {...headers, 'X-Auth-Signature': headers['X-Auth-Signature'].toLowerCase()}, '{"command":"echo ok"}');
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).data.stdout, 'ok\n');
  });

  it('refuses timestamps more than 300 s away, past or future', async () => {
    for (const offset of [-301, 301, -86_400 * 365]) {
      await expectRefused(signRequest(TEST_SECRET, 'POST', '/shell', body, Date.now() + offset * 1000), 'stale-timestamp', /stale timestamp/);
    }
  });

  it('refuses a replayed nonce', async () => {
    const sent = '{"command":"echo once"}';
    const headers = signRequest(TEST_SECRET, 'POST', '/shell', sent);
    assert.equal((await rawPost(url, headers, sent)).status, 200);
    await expectRefused(headers, 'replayed-nonce', /replayed nonce/, sent);
  });

  it('answers 413 to a body over the limit, declared or streamed in chunks', async () => {
    const big = JSON.stringify({command: `echo ${'x'.repeat(5000)}`});
    const declared = await rawPost(url, signRequest(TEST_SECRET, 'POST', '/shell', big), big);
    assert.equal(declared.status, 413);
    assert.match(JSON.parse(declared.body).message, /larger than BODY_LIMIT \(4096 bytes\)/);
    const chunked = await rawPost(url, {...signRequest(TEST_SECRET, 'POST', '/shell', big), 'Transfer-Encoding': 'chunked'}, '', [
      Buffer.from(big.slice(0, 3000)),
      Buffer.from(big.slice(3000)),
    ]);
    assert.equal(chunked.status, 413);
    assert.ok(!existsSync('/tmp/should-not-exist'));
  });
});

describe('replay protection across bind addresses', async () => {
  const {daemon} = await startTestDaemon({BIND: '127.0.0.1:0,[::1]:0'});

  it('refuses on one address (IPv6 here) a nonce already used on another', async () => {
    const [first, second] = daemon.listenerStatus();
    const sent = '{"command":"true"}';
    const headers = signRequest(TEST_SECRET, 'POST', '/shell', sent);
    assert.equal((await rawPost(`http://127.0.0.1:${first.port}`, headers, sent)).status, 200);
    const replay = await rawPost(`http://[::1]:${second.port}`, headers, sent);
    assert.equal(replay.status, 401);
    assert.equal(JSON.parse(replay.body).reason, 'replayed-nonce');
  });
});

/** dffs-spawn as on a kernel without pidfds: it sees exits through SIGCHLD. */
function helperWithoutPidfds(): string {
  const wrapper = join(tempDir(), 'dffs-spawn-no-pidfd');
  writeFileSync(wrapper, `#!/bin/sh\nexec '${SPAWN_HELPER_PATH}' --no-pidfd\n`, {mode: 0o755});
  return wrapper;
}

// Every way of starting commands: the dffs-spawn helper (the default), the same without pidfds,
// and Node's own fork() where the helper cannot run.
const spawners = {
  'dffs-spawn': {},
  'dffs-spawn without pidfds': {spawnHelper: helperWithoutPidfds()},
  node: {spawnHelper: null},
} satisfies Record<string, TestSpawner>;
for (const [spawner, options] of Object.entries(spawners)) {
  describe(`running commands, started by ${spawner}`, async () => {
    const {url, daemon, events} = await startTestDaemon({}, 50, options);

    it('returns stdout, stderr and the exit code; a failing command is still 200', async () => {
      const res = await signedPost(url, {command: 'echo out; echo err >&2; exit 3'});
      assert.equal(res.status, 200);
      assert.equal(res.json.ok, true);
      assert.equal(res.json.message, '');
      const {data} = res.json;
      assert.deepEqual(
        {stdout: data.stdout, stderr: data.stderr, exitCode: data.exitCode, signal: data.signal, timedOut: data.timedOut, truncated: data.truncated},
        {stdout: 'out\n', stderr: 'err\n', exitCode: 3, signal: null, timedOut: false, truncated: false},
      );
      assert.equal(typeof data.durationMs, 'number');
      assert.match(data.jobId, /^[0-9a-f-]{36}$/);
    });

    it('reports a command killed by a signal', async () => {
      const {json} = await signedPost(url, {command: 'kill -9 $$'});
      assert.equal(json.data.exitCode, null);
      assert.equal(json.data.signal, 'SIGKILL');
    });

    it('runs the exact body Func sends, with \\/ and \\u escapes', async () => {
      const body = '{"command":"printf \'%s\\\\n\' \\u4f60\\u597d \\/tmp","wait":true}';
      const res = await signedPost(url, body);
      assert.equal(res.status, 200, res.raw);
      assert.equal(res.json.data.stdout, '你好\n/tmp\n');
    });

    it('runs in the workdir, and refuses one that is missing, a file or not enterable', async () => {
      const dir = tempDir();
      assert.equal((await signedPost(url, {command: 'pwd', workdir: dir})).json.data.stdout, `${dir}\n`);
      const missing = await signedPost(url, {command: 'pwd', workdir: join(dir, 'missing')});
      assert.equal(missing.status, 400);
      assert.equal(missing.json.message, `workdir ${join(dir, 'missing')} does not exist`);
      writeFileSync(join(dir, 'file'), '');
      const file = await signedPost(url, {command: 'pwd', workdir: join(dir, 'file')});
      assert.equal(file.status, 400);
      assert.match(file.json.message, /is not a directory/);
    });

    it('passes envs as a list or an object on a clean base, without the daemon\'s environment', async () => {
      process.env.DFFS_DAEMON_ONLY = 'leak';
      try {
        const list = await signedPost(url, {command: 'env', envs: ['MY_NAME=Tom', 'EQ=a=b']});
        const env = Object.fromEntries(list.json.data.stdout.trim().split('\n').map((line: string) => line.split(/=(.*)/s).slice(0, 2)));
        assert.equal(env.MY_NAME, 'Tom');
        assert.equal(env.EQ, 'a=b');
        assert.equal(env.LANG, 'C.UTF-8');
        assert.ok(env.PATH && env.HOME && env.USER);
        assert.equal(env.DFFS_DAEMON_ONLY, undefined);
        assert.ok(!list.json.data.stdout.includes(TEST_SECRET));
        const object = await signedPost(url, {command: 'echo "$MY_NAME"', envs: {MY_NAME: 'Jerry'}});
        assert.equal(object.json.data.stdout, 'Jerry\n');
      } finally {
        delete process.env.DFFS_DAEMON_ONLY;
      }
    });

    it('answers 400 naming the field for a wrong body, and runs nothing', async () => {
      const before = events.filter((e) => e.type === 'command-started').length;
      for (const [body, message] of [
        ['{"command":', /not valid JSON/],
        ['{"command": ["ls"]}', /command must be a string/],
        ['{"command": "ls", "wait": 1}', /wait must be true or false/],
        ['{"command": "ls", "envs": ["NOEQUALS"]}', /envs\[0\]/],
        ['{"command": "ls", "envs": ["LD_PRELOAD=/x.so"]}', /LD_PRELOAD is refused/],
        ['{"command": "ls", "callbackURL": "ftp://x/"}', /callbackURL/],
        ['{"command": "ls", "extra": 1}', /unknown field "extra"/],
      ] as const) {
        const res = await signedPost(url, body);
        assert.equal(res.status, 400, body);
        assert.equal(res.json.ok, false);
        assert.match(res.json.message, message);
      }
      assert.equal(events.filter((e) => e.type === 'command-started').length, before);
    });

    it('runs the shell as the leader of its own session, with no signal ignored or blocked', async () => {
      const res = await signedPost(url, {command: `grep -E '^Sig(Blk|Ign)' /proc/self/status; echo "session $(cut -d' ' -f6 /proc/$$/stat) shell $$"`});
      const [blocked, ignored, session] = res.json.data.stdout.trim().split('\n');
      assert.equal(blocked, 'SigBlk:\t0000000000000000');
      // glibc's posix_spawn ignores its two internal signals (32 and 33, below SIGRTMIN) in every
      // child, as for any program it starts; glibc sets them up again in whatever the shell runs.
      const glibcInternal = spawner === 'node' ? 0n : 0x180000000n;
      assert.equal(BigInt(`0x${ignored.replace('SigIgn:\t', '')}`) & ~glibcInternal, 0n, ignored);
      const [, sessionId, shellPid] = /^session (\d+) shell (\d+)$/.exec(session) ?? [];
      assert.equal(sessionId, shellPid);
    });

    it('kills the whole process group on timeout, grandchildren included', async () => {
      const dir = tempDir();
      const res = await signedPost(url, {
        command: `sh -c 'sleep 300 & echo $! > ${dir}/grandchild; wait' & echo $! > ${dir}/child; wait`,
        timeout: 1,
      });
      assert.equal(res.json.data.timedOut, true);
      assert.equal(res.json.data.exitCode, null);
      const pids = ['child', 'grandchild'].map((name) => Number(readFileSync(join(dir, name), 'utf8')));
      await eventually(() => (pids.some(processExists) ? undefined : true), 5000, 'child and grandchild to be gone');
    });

    it('does not hang when a background child keeps stdout open', async () => {
      const res = await signedPost(url, {command: 'sleep 60 & echo started'});
      assert.equal(res.json.data.stdout, 'started\n');
      assert.ok(res.json.data.durationMs < 10_000);
      const started = events.find((e) => e.type === 'command-started' && e.jobId === res.json.data.jobId);
      if (started?.type === 'command-started') process.kill(-started.pid, 'SIGKILL');
    });

    it('caps output while streaming: 200 MiB printed, 10 MiB kept, memory bounded', async () => {
      const rssBefore = process.memoryUsage().rss;
      const res = await signedPost(url, {command: 'yes | head -c 209715200; echo tail >&2'});
      const {data} = res.json;
      assert.equal(data.truncated, true);
      assert.equal(data.stdout.length, 10 * 1024 * 1024);
      assert.equal(data.stderr, 'tail\n');
      assert.equal(data.exitCode, 0);
      const finished = events.find((e) => e.type === 'command-finished' && e.jobId === data.jobId);
      assert.equal(finished?.type === 'command-finished' && finished.stdoutBytes, 200 * 1024 * 1024);
      // The reply itself holds 10 MiB several times over; 200 MiB kept would be far above this.
      assert.ok(process.memoryUsage().rss - rssBefore < 150 * 1024 * 1024, 'rss grew by less than 150 MiB');
    });

    it('keeps running a command whose client went away, and still sends its callback', async () => {
      const dir = tempDir();
      const receiver = await startCallbackReceiver();
      const controller = new AbortController();
      const pending = signedPost(url, {command: `sleep 1; echo done > ${dir}/out; echo finished`, callbackURL: receiver.url}, {signal: controller.signal});
      await eventually(() => events.find((e) => e.type === 'request-accepted' && e.command.includes(dir)), 5000, 'the request to be accepted');
      controller.abort();
      await assert.rejects(pending);
      const [callback] = await receiver.waitFor(1);
      assert.equal(readFileSync(join(dir, 'out'), 'utf8'), 'done\n');
      assert.deepEqual(JSON.parse(callback.body), {kwargs: {stdout: 'finished\n', stderr: ''}});
    });

    it('never logs the secret, env values or output', async () => {
      await signedPost(url, {command: 'echo visible-output', envs: ['TOKEN=hidden-value']});
      const log = daemon.bus.history().map((event) => formatEvent(event, true)).join('\n');
      assert.ok(log.includes('echo visible-output'), 'the command is logged');
      assert.ok(log.includes('"envKeys":["TOKEN"]'));
      for (const secret of [TEST_SECRET, 'hidden-value', 'visible-output\\n']) assert.ok(!log.includes(secret), secret);
    });
  });
}

describe('wait=false and callbacks', async () => {
  const {url, events} = await startTestDaemon();

  it('answers at once with a job id, then POSTs exactly {kwargs: {stdout, stderr}}', async () => {
    const receiver = await startCallbackReceiver();
    const res = await signedPost(url, {command: 'sleep 0.3; echo 你好; echo warn >&2; exit 4', wait: false, callbackURL: receiver.url});
    assert.equal(res.status, 200);
    assert.equal(res.json.ok, true);
    assert.equal(res.json.data.stdout, '');
    assert.equal(res.json.data.stderr, '');
    assert.match(res.json.data.jobId, /^[0-9a-f-]{36}$/);
    const [callback] = await receiver.waitFor(1);
    assert.equal(callback.body, JSON.stringify({kwargs: {stdout: '你好\n', stderr: 'warn\n'}}));
    assert.match(callback.headers['content-type'] ?? '', /^application\/json/);
    assert.equal(callback.headers['x-sidecar-exit-code'], '4');
    assert.equal(callback.headers['x-sidecar-job-id'], res.json.data.jobId);
    assert.equal(callback.headers['x-sidecar-timed-out'], 'false');
    assert.match(String(callback.headers['x-sidecar-duration-ms']), /^\d+$/);
  });

  it('sends the callback for wait=true as well', async () => {
    const receiver = await startCallbackReceiver();
    const res = await signedPost(url, {command: 'echo both', callbackURL: receiver.url});
    assert.equal(res.json.data.stdout, 'both\n');
    const [callback] = await receiver.waitFor(1);
    assert.equal(callback.body, '{"kwargs":{"stdout":"both\\n","stderr":""}}');
  });

  it('retries a callback answered with 5xx, logging every attempt', async () => {
    const receiver = await startCallbackReceiver([500, 503]);
    const res = await signedPost(url, {command: 'echo retried', wait: false, callbackURL: receiver.url});
    const received = await receiver.waitFor(3);
    assert.equal(received.length, 3);
    assert.ok(received.every((r) => r.body === received[0].body));
    const jobEvents = await eventually(() => {
      const found = events.filter((e) => (e.type === 'callback-failed' || e.type === 'callback-delivered') && e.jobId === res.json.data.jobId);
      return found.length === 3 ? found : undefined;
    });
    assert.deepEqual(jobEvents.map((e) => e.type), ['callback-failed', 'callback-failed', 'callback-delivered']);
  });

  it('gives up on a 4xx answer and on an unreachable receiver after the retries', async () => {
    const receiver = await startCallbackReceiver([404]);
    const rejected = await signedPost(url, {command: 'true', wait: false, callbackURL: receiver.url});
    await receiver.waitFor(1);
    const unreachable = await signedPost(url, {command: 'true', wait: false, callbackURL: 'http://127.0.0.1:1/cb'});
    for (const [jobId, attempts] of [[rejected.json.data.jobId, 1], [unreachable.json.data.jobId, 6]] as const) {
      const failures = await eventually(() => {
        const found = events.filter((e) => e.type === 'callback-failed' && e.jobId === jobId);
        return found.length === attempts ? found : undefined;
      }, 15_000, `${attempts} callback attempts`);
      const last = failures.at(-1);
      assert.equal(last?.type === 'callback-failed' && last.retryInMs, undefined);
      assert.equal(last?.level, 'error');
    }
  });
});

describe('concurrency limit', async () => {
  const {url, events, daemon} = await startTestDaemon({MAX_RUNNING: 2, MAX_QUEUED: 1});

  it('queues beyond the running limit and answers 429 beyond the queue', async () => {
    const dir = tempDir();
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await signedPost(url, {command: `sleep 1; touch ${dir}/${i}`, wait: false}));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 429]);
    assert.match(answers[3].json.message, /too many commands: 2 running and 1 queued/);
    assert.ok(events.some((e) => e.type === 'command-queued'));
    // The refused request counts once, as refused, not also as accepted.
    assert.deepEqual([daemon.counters.requests, daemon.counters.accepted, daemon.counters.refused], [4, 3, 1]);
    await eventually(() => (existsSync(join(dir, '2')) ? true : undefined), 10_000, 'the queued command to run');
    assert.ok(!existsSync(join(dir, '3')));
  });
});

describe('reload', async () => {
  const {url, daemon, configPath, events} = await startTestDaemon();

  it('applies a new key and new binds without dropping a running command', async () => {
    const running = signedPost(url, {command: 'sleep 1; echo survived'});
    await eventually(() => (daemon.status().running.length === 1 ? true : undefined));
    const stored = JSON.parse(readFileSync(configPath, 'utf8'));
    writeFileSync(configPath, JSON.stringify({...stored, SECRET_KEY: 'the-new-secret-key', BIND: `${stored.BIND},127.0.0.3:0`}));
    daemon.reload();
    const reloaded = events.findLast((e) => e.type === 'config-reloaded');
    assert.deepEqual(reloaded?.type === 'config-reloaded' && reloaded.changed, ['bindText', 'SECRET_KEY'].map((k) => (k === 'bindText' ? 'BIND' : k)));
    assert.equal((await signedPost(url, {command: 'true'})).status, 401);
    assert.equal((await signedPost(url, {command: 'echo new'}, {secret: 'the-new-secret-key'})).json.data.stdout, 'new\n');
    const added = await eventually(() => daemon.listenerStatus().find((l) => l.address === '127.0.0.3:0' && l.state === 'listening'));
    assert.equal((await fetch(`http://127.0.0.3:${added.port}/`)).status, 200);
    assert.equal((await running).json.data.stdout, 'survived\n');
  });

  it('keeps the running configuration when the file became invalid', async () => {
    writeFileSync(configPath, '{"SECRET_KEY": ');
    daemon.reload();
    assert.match(JSON.stringify(events.findLast((e) => e.type === 'reload-failed')), /not valid JSON.*keeping the running configuration/);
    assert.equal((await signedPost(url, {command: 'true'}, {secret: 'the-new-secret-key'})).status, 200);
  });
});

describe('graceful stop', async () => {
  const {url, daemon, events} = await startTestDaemon({DRAIN_TIMEOUT: 10});

  it('refuses new work, lets running commands and callbacks finish, then stops', async () => {
    const receiver = await startCallbackReceiver();
    const waiting = signedPost(url, {command: 'sleep 1; echo drained'});
    await signedPost(url, {command: 'sleep 1; echo called-back', wait: false, callbackURL: receiver.url});
    await eventually(() => (daemon.status().running.length === 2 ? true : undefined));
    const stopped = daemon.stop();
    assert.equal((await waiting).json.data.stdout, 'drained\n');
    await stopped;
    assert.equal(receiver.received.length, 1);
    assert.equal(JSON.parse(receiver.received[0].body).kwargs.stdout, 'called-back\n');
    assert.equal(events.at(-1)?.type, 'stopped');
    assert.ok(!events.some((e) => e.type === 'commands-abandoned'));
    await assert.rejects(fetch(`${url}/`));
  });
});

describe('stop after the drain timeout', async () => {
  const {url, daemon, events} = await startTestDaemon({DRAIN_TIMEOUT: 1});

  it('kills what is still running and logs it as abandoned', async () => {
    const dir = tempDir();
    void signedPost(url, {command: `echo $$ > ${dir}/pid; sleep 300`, wait: false});
    await eventually(() => (existsSync(join(dir, 'pid')) ? true : undefined));
    await daemon.stop();
    const abandoned = events.find((e) => e.type === 'commands-abandoned');
    assert.deepEqual(abandoned?.type === 'commands-abandoned' && abandoned.commands, [`echo $$ > ${dir}/pid; sleep 300`]);
    await eventually(() => (processExists(Number(readFileSync(join(dir, 'pid'), 'utf8'))) ? undefined : true));
  });
});

it('signs the worked example of PROTOCOL.md', () => {
  assert.equal(
    sign('dffs-test-secret', 'POST', '/shell', '0123456789abcdef0123456789abcdef', '1700000000', '{"command":"hostname","wait":true}'),
    'E8CD5E24A6D165B5E2F05B391BB071D1F7D64D71',
  );
});
