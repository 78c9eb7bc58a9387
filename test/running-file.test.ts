import assert from 'node:assert/strict';
import {readFileSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {describe, it} from 'node:test';
import {Daemon} from '../src/daemon/daemon.js';
import type {SidecarEvent} from '../src/daemon/events.js';
import {eventually, signedPost, tempDir, TEST_SECRET, writeTestConfig} from './helpers.js';

describe('commands lost to a daemon that could not drain', () => {
  const stateDirectory = tempDir();
  const configPath = writeTestConfig(tempDir(), {BIND: '127.0.0.1:0', SECRET_KEY: TEST_SECRET});
  const file = join(stateDirectory, 'running.json');

  it('keeps the running commands in running.json, and the next daemon logs them as lost', async () => {
    const first = await Daemon.start({configPath, stateDirectory});
    try {
      const url = `http://127.0.0.1:${first.listenerStatus()[0].port}`;
      const ack = await signedPost(url, {command: 'sleep 30', wait: false});
      const running = await eventually(() => {
        const entries = JSON.parse(readFileSync(file, 'utf8')) as {jobId: string; command: string; pid?: number}[];
        return entries.length === 1 && entries[0].pid ? entries : undefined;
      }, 5000, 'running.json to list the command with its pid');
      assert.equal(running[0].jobId, ack.json.data.jobId);

      // As if the first daemon had been killed: a second one starts on the same state directory.
      const events: SidecarEvent[] = [];
      const second = await Daemon.start({configPath, stateDirectory}, (daemon) => daemon.bus.subscribe((event) => events.push(event)));
      await second.stopNow();
      const lost = events.find((event) => event.type === 'commands-lost');
      assert.deepEqual(lost?.type === 'commands-lost' && [lost.jobIds, lost.commands, lost.pids], [[running[0].jobId], ['sleep 30'], [running[0].pid]]);
      assert.equal(lost?.level, 'error');
    } finally {
      await first.stopNow();
    }
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), [], 'a clean stop leaves nothing to report');
  });

  it('reports nothing for a file cut short', async () => {
    writeFileSync(file, '[{"jobId": "x", "comm');
    const events: SidecarEvent[] = [];
    const daemon = await Daemon.start({configPath, stateDirectory}, (created) => created.bus.subscribe((event) => events.push(event)));
    await daemon.stopNow();
    assert.equal(events.filter((event) => event.type === 'commands-lost').length, 0);
  });
});
