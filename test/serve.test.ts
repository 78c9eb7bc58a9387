import assert from 'node:assert/strict';
import {spawn, type ChildProcessByStdio} from 'node:child_process';
import {existsSync, readFileSync, statSync, writeFileSync} from 'node:fs';
import {createServer} from 'node:net';
import type {AddressInfo} from 'node:net';
import {join} from 'node:path';
import type {Readable} from 'node:stream';
import {after, describe, it} from 'node:test';
import {eventually, signedPost, startCallbackReceiver, tempDir, TEST_SECRET, writeTestConfig} from './helpers.js';

const ROOT = new URL('..', import.meta.url).pathname;
const BIN = join(ROOT, 'bin', 'run.js');

interface ServeProcess {
  child: ChildProcessByStdio<null, Readable, Readable>;
  lines: Record<string, any>[];
  /** stderr with oclif's line wrapping undone. */
  stderr: () => string;
  exited: Promise<number | null>;
  url: () => Promise<string>;
}

/** Runs `dffs-ctl serve` as its own process, reading its JSON log lines; killed when the file ends. */
function startServe(args: string[], env: Record<string, string> = {}): ServeProcess {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], {
    cwd: ROOT,
    env: {...process.env, ...env},
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, any>[] = [];
  let stdoutText = '';
  let stderrText = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdoutText += chunk;
    const complete = stdoutText.split('\n');
    stdoutText = complete.pop() ?? '';
    for (const line of complete) lines.push(JSON.parse(line));
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderrText += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return {
    child,
    lines,
    stderr: () => stderrText.replace(/\s*\n ›\s+/g, ' '),
    exited,
    url: async () => {
      const listening = await eventually(() => lines.find((line) => line.event === 'listening'), 15_000, `serve to listen (stderr: ${stderrText})`);
      return `http://127.0.0.1:${listening.port}`;
    },
  };
}

describe('dffs-ctl serve as a process', () => {
  it('logs JSON lines when stdout is not a terminal, and re-reads the config on SIGHUP without dropping a command', async () => {
    const configPath = writeTestConfig(tempDir(), {BIND: '127.0.0.1:0', SECRET_KEY: TEST_SECRET});
    const serve = startServe(['--config', configPath]);
    const url = await serve.url();
    assert.equal(serve.lines[0].event, 'started');
    const running = signedPost(url, {command: 'sleep 1; echo kept'});
    await eventually(() => serve.lines.find((line) => line.event === 'command-started'));
    writeFileSync(configPath, JSON.stringify({BIND: '127.0.0.1:0', SECRET_KEY: 'rotated-secret-key'}));
    serve.child.kill('SIGHUP');
    await eventually(() => serve.lines.find((line) => line.event === 'config-reloaded'));
    assert.equal((await signedPost(url, {command: 'true'})).status, 401);
    assert.equal((await signedPost(url, {command: 'echo new'}, {secret: 'rotated-secret-key'})).json.data.stdout, 'new\n');
    assert.equal((await running).json.data.stdout, 'kept\n');
    serve.child.kill('SIGTERM');
    assert.equal(await serve.exited, 0);
  });

  it('drains on SIGTERM: the running command answers, its callback is delivered, then it exits 0', async () => {
    const configPath = writeTestConfig(tempDir(), {BIND: '127.0.0.1:0', SECRET_KEY: TEST_SECRET, DRAIN_TIMEOUT: 20});
    const serve = startServe(['--config', configPath]);
    const url = await serve.url();
    const receiver = await startCallbackReceiver();
    const waiting = signedPost(url, {command: 'sleep 1; echo answered'});
    await signedPost(url, {command: 'sleep 1.5; echo delivered', wait: false, callbackURL: receiver.url});
    await eventually(() => (serve.lines.filter((line) => line.event === 'command-started').length === 2 ? true : undefined));
    serve.child.kill('SIGTERM');
    assert.equal((await waiting).json.data.stdout, 'answered\n');
    assert.equal(await serve.exited, 0);
    assert.equal(JSON.parse(receiver.received[0].body).kwargs.stdout, 'delivered\n');
    assert.deepEqual(serve.lines.slice(-1).map((line) => line.event), ['stopped']);
  });

  it('keeps a secret given in the environment out of commands and out of the log', async () => {
    const configPath = writeTestConfig(tempDir(), {BIND: '127.0.0.1:0'});
    const serve = startServe(['--config', configPath], {DFFS_SECRET_KEY: TEST_SECRET});
    const url = await serve.url();
    const res = await signedPost(url, {command: 'env; cat /proc/self/environ'});
    assert.equal(res.status, 200);
    assert.ok(!res.json.data.stdout.includes(TEST_SECRET));
    assert.ok(!res.json.data.stdout.includes('DFFS_'));
    await signedPost(url, {command: 'true'}, {secret: 'wrong-secret-key'});
    serve.child.kill('SIGTERM');
    await serve.exited;
    assert.ok(!JSON.stringify(serve.lines).includes(TEST_SECRET));
    assert.ok(!serve.stderr().includes(TEST_SECRET));
  });

  it('refuses to start on a broken config, naming the file and field, and leaves it alone', async () => {
    const dir = tempDir();
    const configPath = join(dir, 'config.json');
    writeFileSync(configPath, '{"BIND": "0.0.0.0.8099", "SECRET_KEY": "abcdefghijkl"}');
    const serve = startServe(['--config', configPath]);
    assert.equal(await serve.exited, 78);
    assert.match(serve.stderr(), new RegExp(`${configPath}: BIND is invalid: "0.0.0.0.8099" is not host:port`));
    assert.equal(readFileSync(configPath, 'utf8'), '{"BIND": "0.0.0.0.8099", "SECRET_KEY": "abcdefghijkl"}');
  });

  it('says which address is taken when a port is in use', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    after(() => blocker.close());
    const {port} = blocker.address() as AddressInfo;
    const configPath = writeTestConfig(tempDir(), {BIND: `127.0.0.1:${port}`, SECRET_KEY: TEST_SECRET});
    const serve = startServe(['--config', configPath]);
    assert.equal(await serve.exited, 1);
    assert.match(serve.stderr(), new RegExp(`127.0.0.1:${port}: port ${port} is already in use`));
  });

  it('serves the other addresses while one waits for its address to appear', async () => {
    // 192.0.2.1 (TEST-NET-1) is on no interface here: the listener waits and retries.
    const configPath = writeTestConfig(tempDir(), {BIND: '127.0.0.1:0,192.0.2.1:8099', SECRET_KEY: TEST_SECRET});
    const serve = startServe(['--config', configPath]);
    const url = await serve.url();
    const waiting = await eventually(() => serve.lines.find((line) => line.event === 'bind-waiting'));
    assert.equal(waiting.address, '192.0.2.1:8099');
    assert.match(waiting.error, /EADDRNOTAVAIL/);
    assert.equal((await signedPost(url, {command: 'echo served'})).json.data.stdout, 'served\n');
    await eventually(() => (serve.lines.filter((line) => line.event === 'bind-waiting').length >= 2 ? true : undefined), 5000, 'a retry');
    serve.child.kill('SIGTERM');
    assert.equal(await serve.exited, 0);
  });

  it('creates a personal config with a random key on first run and says how to read it', async () => {
    const configPath = join(tempDir(), 'fresh', 'config.json');
    const serve = startServe(['--config', configPath, '--bind', '127.0.0.1:0']);
    const url = await serve.url();
    assert.match(serve.stderr(), new RegExp(`Created ${configPath} with a new random secret key`));
    assert.match(serve.stderr(), /dffs-ctl secret show --config/);
    const key = JSON.parse(readFileSync(configPath, 'utf8')).SECRET_KEY as string;
    assert.ok(key.length >= 32);
    assert.ok(!serve.stderr().includes(key));
    assert.equal(statSync(configPath).mode & 0o777, 0o600);
    assert.equal((await signedPost(url, {command: 'echo first-run'}, {secret: key})).json.data.stdout, 'first-run\n');
    serve.child.kill('SIGINT');
    assert.equal(await serve.exited, 0);
    assert.ok(existsSync(configPath));
  });
  it('starts without the built-ins it has no use for yet: TLS, fs.promises, web crypto, undici (each is resident memory)', async () => {
    const dir = tempDir();
    const listPath = join(dir, 'modules.txt');
    const preload = join(dir, 'list-modules.mjs');
    // getBuiltinModule, not import: importing node:fs would itself load fs.promises.
    writeFileSync(preload, `process.on('SIGUSR2', () => process.getBuiltinModule('node:fs').writeFileSync(${JSON.stringify(listPath)}, process.moduleLoadList.join('\\n')));\n`);
    const configPath = writeTestConfig(dir, {BIND: '127.0.0.1:0', SECRET_KEY: TEST_SECRET});
    const serve = startServe(['--config', configPath], {NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${preload}`});
    const url = await serve.url();
    serve.child.kill('SIGUSR2');
    const loaded = (await eventually(() => (existsSync(listPath) ? readFileSync(listPath, 'utf8') : undefined))).split('\n');
    assert.ok(loaded.includes('NativeModule http'), 'the list is of the daemon');
    assert.deepEqual(loaded.filter((name) => /^NativeModule (https|tls|fs\/promises|internal\/crypto\/webcrypto|internal\/deps\/undici\/)/.test(name)), []);
    // What was left out is loaded when a request needs it.
    assert.equal((await signedPost(url, {command: 'pwd', workdir: dir})).json.data.stdout, `${dir}\n`);
    serve.child.kill('SIGTERM');
    assert.equal(await serve.exited, 0);
  });
});
