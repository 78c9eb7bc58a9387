import assert from 'node:assert/strict';
import {execa} from 'execa';
import {readFileSync, statSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {describe, it} from 'node:test';
import {fileURLToPath} from 'node:url';
import {Daemon} from '../src/daemon/daemon.js';
import type {SidecarEvent} from '../src/daemon/events.js';
import {eventually, signedPost, tempDir, TEST_SECRET, writeTestConfig} from './helpers.js';

const RUN_JS = fileURLToPath(new URL('../bin/run.js', import.meta.url));

describe('commands lost to a daemon that could not drain', () => {
  const stateDirectory = tempDir();
  const configPath = writeTestConfig(tempDir(), {BIND: '127.0.0.1:0', SECRET_KEY: TEST_SECRET});
  const file = join(stateDirectory, 'running.json');

  it('keeps the running commands in running.json, and the next daemon logs them as lost', async () => {
    // A daemon in a process of its own, killed with SIGKILL while a command runs.
    const killed = execa(process.execPath, [RUN_JS, 'serve', '--config', configPath, '--no-dashboard'], {
      env: {STATE_DIRECTORY: stateDirectory, XDG_RUNTIME_DIR: stateDirectory},
      stdin: 'ignore',
      stdout: 'pipe',
      reject: false,
      buffer: false,
    });
    const url = await new Promise<string>((resolve) => {
      killed.stdout?.on('data', (data: Buffer) => {
        const port = /"event":"listening".*"port":(\d+)/.exec(data.toString('utf8'))?.[1];
        if (port) resolve(`http://127.0.0.1:${port}`);
      });
    });
    const ack = await signedPost(url, {command: 'sleep 30', wait: false});
    const running = await eventually(() => {
      const entries = JSON.parse(readFileSync(file, 'utf8')) as {jobId: string; command: string; pid?: number}[];
      return entries.length === 1 && entries[0].pid ? entries : undefined;
    }, 5000, 'running.json to list the command with its pid');
    assert.equal(running[0].jobId, ack.json.data.jobId);
    assert.equal(statSync(file).mode & 0o777, 0o600, 'command lines are the daemon\'s own');
    killed.kill('SIGKILL');
    await killed;
    try {
      const events: SidecarEvent[] = [];
      const next = await Daemon.start({configPath, stateDirectory}, (daemon) => daemon.bus.subscribe((event) => events.push(event)));
      await next.stopNow();
      const lost = events.find((event) => event.type === 'commands-lost');
      assert.deepEqual(lost?.type === 'commands-lost' && [lost.jobIds, lost.commands, lost.pids], [[running[0].jobId], ['sleep 30'], [running[0].pid]]);
      assert.equal(lost?.level, 'error');
    } finally {
      process.kill(-(running[0].pid as number), 'SIGKILL');
    }
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), [], 'a clean stop leaves nothing to report');
  });

  it('refuses a second daemon on the same state directory, and leaves the first one\'s files alone', async () => {
    const first = await Daemon.start({configPath, stateDirectory});
    try {
      const url = `http://127.0.0.1:${first.listenerStatus()[0].port}`;
      await signedPost(url, {command: 'sleep 5', wait: false});
      await eventually(() => (JSON.parse(readFileSync(file, 'utf8')).length === 1 ? true : undefined), 5000, 'running.json');
      const journal = readFileSync(join(stateDirectory, 'replay.log'), 'utf8');
      await assert.rejects(Daemon.start({configPath, stateDirectory}), /another sidecar is running with the state directory .*: stop it first/);
      assert.equal(JSON.parse(readFileSync(file, 'utf8')).length, 1);
      assert.equal(readFileSync(join(stateDirectory, 'replay.log'), 'utf8'), journal);
    } finally {
      await first.stopNow();
    }
  });

  it('reports nothing for a file cut short', async () => {
    writeFileSync(file, '[{"jobId": "x", "comm');
    const events: SidecarEvent[] = [];
    const daemon = await Daemon.start({configPath, stateDirectory}, (created) => created.bus.subscribe((event) => events.push(event)));
    await daemon.stopNow();
    assert.equal(events.filter((event) => event.type === 'commands-lost').length, 0);
  });
});
