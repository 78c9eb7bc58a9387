import assert from 'node:assert/strict';
import {join} from 'node:path';
import {after, before, describe, it} from 'node:test';
import {fileURLToPath} from 'node:url';
import {execa} from 'execa';
import {eventually, freePort, signedPost, tempDir, TEST_SECRET, writeTestConfig} from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// A tmux server of this test's own, killed with everything in it when the file ends.
const SERVER = `dffs-e2e-tmux-${process.pid}`;
// CI=false: with CI set, Ink draws only the last frame, on exit (its is-in-ci check); the panes inherit this.
const tmux = (...args: string[]) => execa('tmux', ['-L', SERVER, ...args], {stdin: 'ignore', env: {CI: 'false'}});
const screen = async (session: string) => (await tmux('capture-pane', '-p', '-t', session)).stdout;

function waitForScreen(session: string, pattern: RegExp, what: string) {
  return eventually(async () => (pattern.test(await screen(session)) ? true : undefined), 15_000, `${what} on the ${session} screen`);
}

// Made here, not in a hook: its clean-up then runs when the file ends.
const dir = tempDir();

describe('the dashboard in a real terminal (tmux)', () => {
  let url = '';
  let serveCommand = '';
  let socket = '';

  before(async () => {
    const version = await execa('tmux', ['-V'], {reject: false});
    if (version.exitCode !== 0) throw new Error('tmux is not installed: apt-get install tmux (.ci/run does)');
    const port = await freePort();
    const config = writeTestConfig(dir, {BIND: `127.0.0.1:${port}`, SECRET_KEY: TEST_SECRET, DRAIN_TIMEOUT: 5});
    socket = join(dir, 'control.sock');
    url = `http://127.0.0.1:${port}`;
    serveCommand = `cd ${ROOT} && node bin/run.js serve --config ${config} --control-socket ${socket}; echo serve-exited-$?; sleep 60`;
  });
  after(async () => {
    await tmux('kill-server').catch(() => undefined);
  });

  it('serve draws the requests it runs, with their exit status, and opens details', async () => {
    await tmux('new-session', '-d', '-s', 'serve', '-x', '100', '-y', '30', serveCommand);
    await waitForScreen('serve', /\[live\]/, 'the dashboard');
    await signedPost(url, {command: 'echo tmux-check'});
    await signedPost(url, {command: 'exit 7'});
    await waitForScreen('serve', /echo tmux-check .*exit 0/, 'the first command and its exit');
    await waitForScreen('serve', /> .*exit 7 +wait +exit 7/, 'the failing command, selected');
    // One key per call: sent together they reach the program as one chunk of input.
    await tmux('send-keys', '-t', 'serve', 'j');
    await waitForScreen('serve', /> .*echo tmux-check/, 'the selection moving down');
    await tmux('send-keys', '-t', 'serve', 'Enter');
    await waitForScreen('serve', /Request details[\s\S]*command +echo tmux-check/, 'the detail view');
    await tmux('send-keys', '-t', 'serve', 'Escape');
    await waitForScreen('serve', /TIME +SOURCE +COMMAND/, 'the table again');
  });

  it('serve redraws to fit when its terminal is resized', async () => {
    await tmux('resize-window', '-t', 'serve', '-x', '60', '-y', '20');
    await waitForScreen('serve', /TIME +COMMAND +MODE/, 'the narrow table, without the source column');
    const narrow = (await screen('serve')).split('\n');
    assert.deepEqual(narrow.filter((line) => line.length > 60), [], 'no line wider than the terminal');
    await tmux('resize-window', '-t', 'serve', '-x', '100', '-y', '30');
    await waitForScreen('serve', /TIME +SOURCE +COMMAND/, 'the wide table again');
  });

  it('tui attached to the daemon shows the history and live requests', async () => {
    await tmux('new-session', '-d', '-s', 'tui', '-x', '100', '-y', '30', `cd ${ROOT} && node bin/run.js tui --socket ${socket}`);
    await waitForScreen('tui', /echo tmux-check .*exit 0/, 'the history');
    await signedPost(url, {command: 'echo seen-by-tui'});
    await waitForScreen('tui', /echo seen-by-tui .*exit 0/, 'a live request');
  });

  it('tui details follow a running job\'s output, and c then y cancels it', async () => {
    const reply = await signedPost(url, {command: 'echo tui-first; sleep 1; echo tui-second; sleep 60', wait: false});
    const jobId = reply.json.data.jobId as string;
    await waitForScreen('tui', /> .*echo tui-first.*running/, 'the running job, selected');
    await tmux('send-keys', '-t', 'tui', 'Enter');
    await waitForScreen('tui', /Output \(live\)\n +tui-first\n +tui-second/, 'both lines, the second as it came');
    await tmux('send-keys', '-t', 'tui', 'c');
    await waitForScreen('tui', /Cancel job .*y to cancel/, 'the confirmation');
    await tmux('send-keys', '-t', 'tui', 'y');
    await waitForScreen('tui', /state +cancelled/, 'the job cancelled');
    const shown = await execa('node', ['bin/run.js', 'jobs', 'show', jobId, '--url', url, '--json'], {cwd: ROOT, env: {DFFS_SECRET_KEY: TEST_SECRET}});
    assert.equal(JSON.parse(shown.stdout).state, 'cancelled');
    await tmux('send-keys', '-t', 'tui', 'Escape');
  });

  it('exec in a terminal asks on Ctrl-C: d detaches and leaves the job running', async () => {
    await tmux('new-session', '-d', '-s', 'exec', '-x', '100', '-y', '30', `cd ${ROOT} && DFFS_URL=${url} DFFS_SECRET_KEY=${TEST_SECRET} node bin/run.js exec -- 'echo exec-started; sleep 60'; echo exec-exited-$?; sleep 60`);
    await waitForScreen('exec', /exec-started/, 'the first line');
    await tmux('send-keys', '-t', 'exec', 'C-c');
    await waitForScreen('exec', /cancel job [0-9a-f-]{36} \(c\), or detach and leave it running \(d\)\?/, 'the question');
    await tmux('send-keys', '-t', 'exec', 'd');
    await waitForScreen('exec', /detached; job [0-9a-f-]{36} runs on[\s\S]*exec-exited-0/, 'exec detached');
    const jobId = /detached; job ([0-9a-f-]{36})/.exec(await screen('exec'))![1];
    const target = ['--url', url];
    const shown = await execa('node', ['bin/run.js', 'jobs', 'show', jobId, ...target, '--json'], {cwd: ROOT, env: {DFFS_SECRET_KEY: TEST_SECRET}});
    assert.equal(JSON.parse(shown.stdout).state, 'running');
    await execa('node', ['bin/run.js', 'jobs', 'cancel', jobId, ...target], {cwd: ROOT, env: {DFFS_SECRET_KEY: TEST_SECRET}});
  });

  it('q stops serve cleanly; tui says so, and reconnects when it is back', async () => {
    await tmux('send-keys', '-t', 'serve', 'q');
    await waitForScreen('serve', /serve-exited-0/, 'serve exiting with 0');
    await waitForScreen('tui', /\[disconnected: /, 'the disconnection');
    await tmux('new-session', '-d', '-s', 'serve-again', '-x', '100', '-y', '30', serveCommand);
    await waitForScreen('tui', /\[live\][\s\S]*requests 0/, 'the new daemon');
    await signedPost(url, {command: 'echo after-restart'});
    await waitForScreen('tui', /echo after-restart .*exit 0/, 'a request to the new daemon');
    await tmux('send-keys', '-t', 'tui', 'q');
    await eventually(async () => ((await tmux('has-session', '-t', 'tui').catch(() => undefined)) ? undefined : true), 10_000, 'tui to quit');
    await tmux('send-keys', '-t', 'serve-again', 'q');
    await waitForScreen('serve-again', /serve-exited-0/, 'the second serve exiting');
  });
});
