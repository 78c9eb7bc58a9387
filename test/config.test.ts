import assert from 'node:assert/strict';
import {readFileSync, statSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {describe, it} from 'node:test';
import {ConfigError, defaultConfigPath, readConfig, resolveSettings, SYSTEM_CONFIG_PATH, writeConfig} from '../src/config/config.js';
import {ensurePersonalConfig, PERSONAL_BIND} from '../src/daemon/serve.js';
import {tempDir} from './helpers.js';
import {generateSecretKey} from '../src/config/keys.js';

describe('config', () => {
  it('lives in /etc for root and in the XDG config home otherwise', () => {
    assert.equal(defaultConfigPath(0), SYSTEM_CONFIG_PATH);
    const saved = process.env.XDG_CONFIG_HOME;
    process.env.XDG_CONFIG_HOME = '/home/u/.cfg';
    try {
      assert.equal(defaultConfigPath(1000), '/home/u/.cfg/dataflux-func-sidecar/config.json');
    } finally {
      if (saved === undefined) delete process.env.XDG_CONFIG_HOME;
      else process.env.XDG_CONFIG_HOME = saved;
    }
  });

  it('reads a missing file as empty, and applies defaults', () => {
    const settings = resolveSettings(readConfig(join(tempDir(), 'none.json')));
    assert.equal(settings.bindText, '127.0.0.1:8099,172.17.0.1:8099');
    assert.equal(settings.secretKey, undefined);
    assert.equal(settings.TIMESTAMP_TOLERANCE, 300);
    assert.equal(settings.COMMAND_TIMEOUT, 3600);
    assert.equal(settings.OUTPUT_LIMIT, 10 * 1024 * 1024);
    assert.equal(settings.BODY_LIMIT, 1024 * 1024);
    assert.equal(settings.MAX_RUNNING, 64);
  });

  it('lets flags override the file', () => {
    const settings = resolveSettings({BIND: '127.0.0.1:1', SECRET_KEY: 'file-secret-123'}, {bind: '[::1]:2', secretKey: 'flag-secret-123'});
    assert.equal(settings.bindText, '[::1]:2');
    assert.equal(settings.secretKey, 'flag-secret-123');
    assert.throws(() => resolveSettings({}, {bind: 'nonsense'}), /BIND is invalid/);
  });

  it('writes atomically with owner-only permissions, in a file with or without extension', async () => {
    const dir = tempDir();
    for (const path of [join(dir, 'config.json'), join(dir, 'dataflux-func-sidecar'), join(dir, 'new', 'sub', 'c.json')]) {
      await writeConfig(path, {BIND: '127.0.0.1:8099', SECRET_KEY: 'a-secret-key'});
      assert.deepEqual(readConfig(path), {BIND: '127.0.0.1:8099', SECRET_KEY: 'a-secret-key'});
      assert.equal(statSync(path).mode & 0o777, 0o600);
    }
  });

  it('names the file when it is not JSON, and never replaces it', () => {
    const path = join(tempDir(), 'broken.json');
    writeFileSync(path, '{"BIND": "127.0.0.1:8099",');
    assert.throws(() => readConfig(path), (error: Error) => error instanceof ConfigError && error.message.includes(path) && /not valid JSON/.test(error.message));
    assert.equal(readFileSync(path, 'utf8'), '{"BIND": "127.0.0.1:8099",');
  });

  for (const [content, field] of [
    ['[]', '(whole file)'],
    ['{"BIND": 8099}', 'BIND'],
    ['{"BIND": "0.0.0.0.8099"}', 'BIND'],
    ['{"SECRET_KEY": ""}', 'SECRET_KEY'],
    ['{"ALLOW_FROM": "10.0.0.0/33"}', 'ALLOW_FROM'],
    ['{"TLS_CERT": "/a.pem"}', 'TLS_CERT'],
    ['{"SECRET_KEY": "has a space in it"}', 'SECRET_KEY'],
    ['{"MAX_RUNNING": 0}', 'MAX_RUNNING'],
    ['{"COMMAND_TIMEOUT": "60"}', 'COMMAND_TIMEOUT'],
    ['{"OUTPUT_LIMIT": 1.5}', 'OUTPUT_LIMIT'],
    ['{"BINDS": "127.0.0.1:1"}', 'BINDS'],
  ]) {
    it(`names the file and the field for ${content}`, () => {
      const path = join(tempDir(), 'c.json');
      writeFileSync(path, content);
      assert.throws(
        () => readConfig(path),
        (error: Error) => error instanceof ConfigError && error.message.startsWith(`${path}: ${field} `),
      );
    });
  }

  it('generates URL-safe keys of 32 characters from a CSPRNG', () => {
    const keys = new Set(Array.from({length: 100}, generateSecretKey));
    assert.equal(keys.size, 100);
    for (const key of keys) assert.match(key, /^[A-Za-z0-9_-]{32}$/);
  });

  it('creates a personal config with a random key once, and never the system one', async () => {
    const path = join(tempDir(), 'personal', 'config.json');
    assert.equal(await ensurePersonalConfig(path, {}), true);
    const first = readConfig(path);
    assert.equal(first.BIND, PERSONAL_BIND);
    assert.ok((first.SECRET_KEY ?? '').length >= 32);
    assert.equal(await ensurePersonalConfig(path, {}), false);
    assert.deepEqual(readConfig(path), first);
    assert.equal(await ensurePersonalConfig(SYSTEM_CONFIG_PATH, {}), false);
  });
});
