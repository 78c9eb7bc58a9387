import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import {chmodSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {after, describe, it} from 'node:test';
import {shellQuote, untrustedRuntimeReason} from '../src/admin/runtime.js';
import {loadSnapshots, restoreSnapshot, saveSnapshots, takeSnapshot} from '../src/admin/snapshot.js';

const scratch = mkdtempSync(join(tmpdir(), 'dffs-install-files-'));
after(() => rmSync(scratch, {recursive: true, force: true}));

describe('the runtime root runs', () => {
  it('trusts a runtime only root can change, all along its path', () => {
    // /bin/sh: root's on every host of this kind (the Node.js running the tests may not be: Node 24 is under the checkout).
    assert.equal(untrustedRuntimeReason('/bin/sh'), undefined);
    const copy = join(scratch, 'node');
    writeFileSync(copy, '');
    assert.match(untrustedRuntimeReason(copy) ?? '', /^\/tmp may be written by anyone \(mode 1?777\)$/);
  });

  it('quotes a path for /bin/sh, quotes within it too', () => {
    const path = `/opt/it's "here" $HOME \`id\``;
    assert.equal(execFileSync('/bin/sh', ['-c', `printf %s ${shellQuote(path)}`], {encoding: 'utf8'}), path);
  });
});

describe('snapshots of what install replaces', () => {
  it('puts back a binary file byte for byte with its mode, a symlink as a symlink, and an absent path as absent', () => {
    const binary = join(scratch, 'program');
    const bytes = Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0xff, 0xfe, 0x00, 0xc3, 0x28]);
    writeFileSync(binary, bytes);
    chmodSync(binary, 0o751);
    const link = join(scratch, 'link');
    symlinkSync('../lib/node_modules/x/bin/run.js', link);
    const absent = join(scratch, 'absent');
    const snapshots = [binary, link, absent].map((path) => takeSnapshot(path));
    saveSnapshots(join(scratch, 'backup'), snapshots, {note: 'kept'});
    assert.equal(statSync(join(scratch, 'backup')).mode & 0o777, 0o700);
    writeFileSync(binary, 'replaced');
    rmSync(link);
    writeFileSync(link, 'a file now');
    writeFileSync(absent, 'new');
    const loaded = loadSnapshots<{note: string}>(join(scratch, 'backup'));
    assert.deepEqual(loaded.details, {note: 'kept'});
    for (const snapshot of loaded.snapshots) restoreSnapshot(snapshot);
    assert.deepEqual(readFileSync(binary), bytes);
    assert.equal(statSync(binary).mode & 0o7777, 0o751);
    assert.equal(readlinkSync(link), '../lib/node_modules/x/bin/run.js');
    assert.throws(() => statSync(absent), /ENOENT/);
  });
});
