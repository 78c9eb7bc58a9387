import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {useSandbox} from './sandbox.js';

// One container: each test starts from what the one before left, as on a host installed over time.
const box = useSandbox('dffs-e2e-install');
const KEY = 'install-safety-secret-key-0123';
const UNIT = '/etc/systemd/system/dataflux-func-sidecar.service';
const ORIGINAL = ['/usr/local/bin/dataflux-func-sidecar', UNIT, '/etc/dataflux-func-sidecar'];
const BACKUP = '/var/backups/dataflux-func-sidecar-original';
const mainPid = async () => Number(await box.ok('systemctl show -p MainPID --value dataflux-func-sidecar'));

/** A build of the program whose daemon throws at start: the service never becomes healthy. */
const BROKEN_BUILD = `rm -rf /tmp/broken && mkdir /tmp/broken && cp -r /src/bin /src/dist /src/package.json /src/oclif.manifest.json /tmp/broken/
  ln -s /src/node_modules /tmp/broken/node_modules
  echo 'throw new Error("broken build");' >> /tmp/broken/dist/daemon/daemon.js`;

/** Bytes, mode and owner of each path, or that it is absent. */
const fingerprint = (paths: string[]) => box.ok(paths.map((path) => `if [ -L ${path} ]; then echo "${path} -> $(readlink ${path})"; elif [ -e ${path} ]; then echo "$(sha256sum < ${path}) $(stat -c '%a %U:%G' ${path}) ${path}"; else echo "${path} absent"; fi`).join('\n'));

describe('install on a real host: the runtime root runs, rollbacks, private files', () => {
  it('runs a root-owned copy of a Node.js and a checkout that live under a user\'s home, also when she swaps her Node.js during the install', async () => {
    await box.ok(`useradd -m alice && chmod 755 /home/alice && mkdir -p /home/alice/.nvm/bin /home/alice/checkout
      cp /usr/local/bin/node /home/alice/.nvm/bin/node
      cp -r /src/bin /src/dist /src/package.json /src/package-lock.json /src/oclif.manifest.json /home/alice/checkout/
      ln -s /src/node_modules /home/alice/checkout/node_modules
      chown -R alice: /home/alice/.nvm /home/alice/checkout && chmod -R a+w /home/alice/checkout/dist
      printf '#!/bin/sh\ntouch /tmp/alice-was-here\nexec /usr/local/bin/node "$@"\n' > /home/alice/trojan && chmod 755 /home/alice/trojan`);
    // Once root's install runs her Node.js, she renames another file over its path.
    await box.ok(`runuser -u alice -- sh -c 'while ! pgrep -u root -x node >/dev/null; do sleep 0.01; done
      cp /home/alice/trojan /home/alice/.nvm/bin/node.new && mv -f /home/alice/.nvm/bin/node.new /home/alice/.nvm/bin/node' >/dev/null 2>&1 &`);
    const out = await box.ok(`/home/alice/.nvm/bin/node /home/alice/checkout/bin/run.js install --bind 127.0.0.1:8099 --secret-key ${KEY}`);
    assert.match(out, /Copied \/home\/alice\/\.nvm\/bin\/node( \(deleted\))? into the release, as root runs it and \/home\/alice\/\.nvm\/bin\/node( belongs to uid \d+| \(deleted\) was replaced while install ran)/);
    assert.equal(await box.ok('head -c 2 /home/alice/.nvm/bin/node'), '#!', 'the swap happened');
    const runtime = await box.ok(`readlink -f /proc/${await mainPid()}/exe`);
    assert.match(runtime, /^\/usr\/local\/lib\/dataflux-func-sidecar\/releases\/[^/]+\/runtime\/bin\/node$/);
    assert.equal(await box.ok(`sha256sum < ${runtime}`), await box.ok('sha256sum < /usr/local/bin/node'), 'the runtime copied is the one that ran');
    assert.match(await box.ok('cat /usr/local/bin/dffs-ctl'), /^exec '\/usr\/local\/lib\/dataflux-func-sidecar\/current\/runtime\/bin\/node' /m);
    // Nothing in the release is hers, links to her files, or may be written by anyone but root.
    assert.equal(await box.ok('find /usr/local/lib/dataflux-func-sidecar \\( ! -user root -o -perm /6022 -o -type l \\) ! -path /usr/local/lib/dataflux-func-sidecar/current'), '');
    await box.ok('echo "throw new Error(\'alice\')" >> /home/alice/checkout/dist/daemon/daemon.js');
    await box.ok('systemctl restart dataflux-func-sidecar && dffs-ctl status >/dev/null');
    assert.equal(await box.ok('dffs-ctl exec "echo still ours"'), 'still ours');
    assert.equal((await box.sh('test -e /tmp/alice-was-here')).exitCode, 1);
  });

  it('keeps every file holding the key or a command line from other users; commands create files with umask 0022', async () => {
    const marker = `marker-${Date.now()}`;
    await box.ok(`dffs-ctl exec --no-wait "sleep 20 # ${marker}"`);
    await box.ok('sleep 0.5');
    // Every file on the host holding the key or the running command line, outside what journald,
    // the kernel and this test own.
    const holders = (await box.ok(`grep -rlsF -e ${KEY} -e ${marker} / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev --exclude-dir=src --exclude-dir=journal || true`)).split('\n').filter(Boolean);
    assert.ok(holders.includes('/etc/dataflux-func-sidecar') && holders.some((path) => path.endsWith('/running.json')), holders.join(', '));
    for (const path of holders) {
      const mode = Number.parseInt(await box.ok(`stat -c %a ${path}`), 8);
      assert.equal(mode & 0o007, 0, `${path} is open to others (${mode.toString(8)})`);
      assert.notEqual((await box.sh(`runuser -u nobody -- cat ${path}`)).exitCode, 0, `nobody can read ${path}`);
    }
    assert.equal(await box.ok('stat -c "%a %U" /var/lib/dataflux-func-sidecar'), '700 dffs-daemon');
    assert.equal(await box.ok('dffs-ctl exec "umask; touch /tmp/made-by-command; mkdir /tmp/dir-by-command; stat -c %a /tmp/made-by-command /tmp/dir-by-command"'), '0022\n644\n755');
  });

  it('rolls back an upgrade byte for byte, a binary dffs-ctl and a symlinked one alike', async () => {
    await box.ok(BROKEN_BUILD);
    const paths = ['/usr/local/bin/dffs-ctl', '/usr/local/bin/dataflux-func-sidecar', UNIT, '/etc/dataflux-func-sidecar'];
    for (const replaceDffsCtl of ['head -c 65536 /usr/bin/sleep > /usr/local/bin/dffs-ctl && chmod 751 /usr/local/bin/dffs-ctl', 'ln -sfn /src/bin/run.js /usr/local/bin/dffs-ctl']) {
      await box.ok(replaceDffsCtl);
      const before = await fingerprint(paths);
      const release = await box.ok('readlink /usr/local/lib/dataflux-func-sidecar/current');
      const result = await box.sh('node /tmp/broken/bin/run.js install');
      assert.equal(result.exitCode, 1, result.stdout);
      assert.match(result.stderr, /the upgrade to .* failed, so the previous release .* was put back and restarted/);
      assert.match(result.stderr, /broken build/);
      assert.equal(await fingerprint(paths), before);
      assert.equal(await box.ok('readlink /usr/local/lib/dataflux-func-sidecar/current'), release);
      assert.equal(await box.ok('systemctl is-active dataflux-func-sidecar'), 'active');
    }
  });

  it('leaves nothing enabled or running when a first install fails, and shows the journal lines that say why', async () => {
    await box.ok('node /src/bin/run.js uninstall --purge');
    const result = await box.sh(`node /tmp/broken/bin/run.js install --bind 127.0.0.1:8099 --secret-key ${KEY}`);
    assert.equal(result.exitCode, 1, result.stdout);
    assert.match(result.stderr, /the install failed: nothing is left installed, enabled or running/);
    assert.match(result.stderr, /Last log lines:[\s\S]*broken build/);
    assert.equal((await box.sh('systemctl is-enabled dataflux-func-sidecar')).exitCode === 0, false);
    assert.equal((await box.sh('systemctl is-active dataflux-func-sidecar')).stdout, 'inactive');
    assert.equal(await fingerprint(['/usr/local/bin/dffs-ctl', '/usr/local/bin/dataflux-func-sidecar', UNIT, '/usr/local/lib/dataflux-func-sidecar']), ['/usr/local/bin/dffs-ctl', '/usr/local/bin/dataflux-func-sidecar', UNIT, '/usr/local/lib/dataflux-func-sidecar'].map((path) => `${path} absent`).join('\n'));
  });

  it('puts the original Sidecar back, byte for byte and running, when ours fails its health check', async () => {
    // As the manual's installer leaves it: a binary, a unit, a KEY: value config, the dffs user.
    await box.ok(`cp /usr/bin/sleep /usr/local/bin/dataflux-func-sidecar && chmod 755 /usr/local/bin/dataflux-func-sidecar
      printf '[Unit]\\nDescription=DataFlux Func Sidecar\\n[Service]\\nUser=dffs\\nExecStart=/usr/local/bin/dataflux-func-sidecar infinity\\nRestart=always\\n[Install]\\nWantedBy=multi-user.target\\n' > ${UNIT}
      printf 'BIND: 127.0.0.1:8099\\nSECRET_KEY: original-secret-key-123\\n' > /etc/dataflux-func-sidecar && chmod 644 /etc/dataflux-func-sidecar
      systemctl daemon-reload && systemctl enable --now --quiet dataflux-func-sidecar`);
    const before = await fingerprint(ORIGINAL);
    // The ssh session drops (SIGHUP), then someone sends TERM: the install still puts everything back.
    const exit = await box.ok(`node /tmp/broken/bin/run.js install > /tmp/install.out 2> /tmp/install.err & pid=$!
      until grep -q "Copied the program" /tmp/install.out; do sleep 0.1; done
      kill -HUP $pid; sleep 0.2; kill -TERM $pid
      wait $pid; echo $?`);
    const result = {exitCode: Number(exit), stdout: await box.ok('cat /tmp/install.out'), stderr: (await box.ok('cat /tmp/install.err')).replace(/\s*\n ›\s+/g, ' ')};
    assert.equal(result.exitCode, 1, result.stdout);
    assert.match(result.stdout, /SIGHUP: install finishes first[\s\S]*SIGTERM: install finishes first/);
    assert.match(result.stdout, /Saved the original Sidecar's program, unit and config in \/var\/backups\/dataflux-func-sidecar-original/);
    assert.match(result.stderr, /the install failed, so the original Sidecar's program, unit and config were put back and its service restarted/);
    assert.equal(await fingerprint(ORIGINAL), before);
    assert.equal(await box.ok('systemctl is-active dataflux-func-sidecar; systemctl is-enabled dataflux-func-sidecar'), 'active\nenabled');
    assert.equal(await box.ok(`readlink /proc/${await mainPid()}/exe`), '/usr/local/bin/dataflux-func-sidecar');
    assert.equal(await fingerprint(['/usr/local/bin/dffs-ctl', '/usr/local/lib/dataflux-func-sidecar', BACKUP]), `/usr/local/bin/dffs-ctl absent\n/usr/local/lib/dataflux-func-sidecar absent\n${BACKUP} absent`);
  });

  it('installs over the original Sidecar, keeping it in a backup only root can read, and uninstall --restore-original puts it back', async () => {
    const before = await fingerprint(ORIGINAL);
    const out = await box.ok('node /src/bin/run.js install');
    assert.match(out, /Imported the original Sidecar's config/);
    assert.equal(JSON.parse(await box.ok('cat /etc/dataflux-func-sidecar')).SECRET_KEY, 'original-secret-key-123');
    assert.equal(await box.ok('dffs-ctl exec "echo ours now"'), 'ours now');
    assert.equal(await box.ok(`stat -c '%a %U' ${BACKUP} ${BACKUP}/*`), ['700 root', '600 root', '600 root', '600 root', '600 root'].join('\n'));
    assert.equal((await box.sh('ls /etc/dataflux-func-sidecar.orig-* 2>/dev/null')).stdout, '');
    const restored = await box.ok('node /src/bin/run.js uninstall --restore-original');
    assert.match(restored, /Put back the original Sidecar:\n {2}\/usr\/local\/bin\/dataflux-func-sidecar\n {2}\/etc\/systemd\/system\/dataflux-func-sidecar\.service\n {2}\/etc\/dataflux-func-sidecar/);
    assert.equal(await fingerprint(ORIGINAL), before);
    assert.equal(await box.ok('systemctl is-active dataflux-func-sidecar; systemctl is-enabled dataflux-func-sidecar'), 'active\nenabled');
    assert.equal(await box.ok(`readlink /proc/${await mainPid()}/exe`), '/usr/local/bin/dataflux-func-sidecar');
    await box.ok('mv /etc/dataflux-func-sidecar /etc/dffs-elsewhere.conf && ln -s /etc/dffs-elsewhere.conf /etc/dataflux-func-sidecar');
    const linked = await box.sh('node /src/bin/run.js install');
    assert.equal(linked.exitCode, 78);
    assert.match(linked.stderr, /\/etc\/dataflux-func-sidecar is a symlink: install writes and restores this file in place/);
    await box.ok('rm /etc/dataflux-func-sidecar && mv /etc/dffs-elsewhere.conf /etc/dataflux-func-sidecar');
    const again = await box.sh('node /src/bin/run.js uninstall --restore-original');
    assert.equal(again.exitCode, 66);
    assert.match(again.stderr, /there is no backup of the original Sidecar in \/var\/backups\/dataflux-func-sidecar-original/);
  });
});
