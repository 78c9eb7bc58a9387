import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {useSandbox} from './sandbox.js';

// One container for the whole file: each test builds on the previous one, as an operator would.
const box = useSandbox('dffs-e2e-systemd');
const KEY = 'e2e-first-secret-key-0123456789';
const UNIT = '/etc/systemd/system/dataflux-func-sidecar.service';
const mainPid = async () => Number(await box.ok('systemctl show -p MainPID --value dataflux-func-sidecar'));

describe('dffs-ctl on a real systemd', () => {
  it('refuses to install without root, saying what to do', async () => {
    const result = await box.sh('runuser -u nobody -- node /src/bin/run.js install');
    assert.equal(result.exitCode, 77);
    assert.match(result.stderr, /must run as root: try sudo dffs-ctl install/);
  });

  it('says the sidecar is not installed (status exit 3)', async () => {
    const result = await box.sh('node /src/bin/run.js status');
    assert.equal(result.exitCode, 3);
    assert.match(result.stdout, /not installed/);
  });

  it('shows the plan with --dry-run and changes nothing', async () => {
    const out = await box.ok('node /src/bin/run.js install --dry-run --bind 127.0.0.1:8099');
    assert.match(out, /Would install \/usr\/local\/lib\/dataflux-func-sidecar\/releases\//);
    assert.match(out, /User=dffs/);
    assert.equal((await box.sh(`getent passwd dffs || test -e /etc/dataflux-func-sidecar || test -e ${UNIT}`)).exitCode, 1);
  });

  it('installs from the checkout and prints the manual\'s block', async () => {
    const out = await box.ok(`node /src/bin/run.js install --bind 127.0.0.1:8099 --secret-key ${KEY}`);
    assert.match(out, /Installed DataFlux Func Sidecar \d+\.\d+\.\d+/);
    assert.match(out, new RegExp(`Bind:\\n    127\\.0\\.0\\.1:8099\\nSecret Key:\\n    ${KEY}\\nTo start:\\n    sudo systemctl start dataflux-func-sidecar\\nTo shutdown:\\n    sudo systemctl stop dataflux-func-sidecar`));
    assert.match(out, /DataFlux Func Sidecar \(HTTP\)/);
  });

  it('runs the daemon as dffs-daemon and commands as dffs, through the command runner, with the config root:dffs-daemon 0640', async () => {
    assert.equal(await box.ok('systemctl is-active dataflux-func-sidecar dataflux-func-sidecar-commands.socket'), 'active\nactive');
    assert.equal(await box.ok('systemctl is-enabled dataflux-func-sidecar dataflux-func-sidecar-commands.socket'), 'enabled\nenabled');
    assert.equal(await box.ok(`ps -o user= -p ${await mainPid()}`), 'dffs-daemon');
    // Commands start through the command runner, dffs-spawn as dffs in a unit of its own: the
    // daemon's only child is the one that relays its messages to systemd.
    assert.equal((await box.sh(`ps -o comm= --ppid ${await mainPid()}`)).stdout, 'dffs-notify');
    assert.equal(await box.ok('dffs-ctl exec \'echo $PPID; id -un\''), `${await box.ok('pgrep -u dffs -x dffs-spawn')}\ndffs`);
    assert.equal(await box.ok('stat -c "%U:%G %a" /etc/dataflux-func-sidecar'), 'root:dffs-daemon 640');
    assert.equal(await box.ok('getent passwd dffs | cut -d: -f7'), '/usr/sbin/nologin');
    assert.match(await box.ok('readlink /usr/local/lib/dataflux-func-sidecar/current'), /releases\/\d+\.\d+\.\d+-\d{14}$/);
    assert.equal(await box.ok('test -e /usr/local/lib/dataflux-func-sidecar/current/node_modules/typescript && echo dev || echo prod-only'), 'prod-only');
  });

  it('publishes its control socket, and the command runner\'s, to root and the daemon only', async () => {
    assert.equal(await box.ok('stat -c "%a %U:%G" /run/dataflux-func-sidecar /run/dataflux-func-sidecar/control.sock /run/dataflux-func-sidecar-commands.sock'), '750 dffs-daemon:dffs-daemon\n660 dffs-daemon:dffs-daemon\n600 dffs-daemon:dffs-daemon');
    for (const user of ['nobody', 'dffs']) {
      for (const socket of ['/run/dataflux-func-sidecar/control.sock', '/run/dataflux-func-sidecar-commands.sock']) {
        const outsider = await box.sh(`runuser -u ${user} -- node -e "require('net').connect('${socket}').on('error', e => { console.log(e.code); process.exit(1) })"`);
        assert.deepEqual([outsider.exitCode, outsider.stdout], [1, 'EACCES'], `${user} ${socket}`);
      }
    }
  });

  it('keeps every key from commands: none can read the daemon\'s files, memory or environment, or signal it', async () => {
    await box.ok('dffs-ctl keys add narrow --allow "hostname" >/dev/null');
    const pid = await mainPid();
    const attempts = [
      'cat /etc/dataflux-func-sidecar',
      'cat /var/lib/dataflux-func-sidecar/running.json /var/lib/dataflux-func-sidecar/replay.log',
      `cat /proc/${pid}/environ`,
      `head -c 4096 /proc/${pid}/mem`,
      `kill -HUP ${pid}`,
      `kill -9 ${pid}`,
    ];
    const secrets = JSON.parse(await box.ok('cat /etc/dataflux-func-sidecar')) as {SECRET_KEY: string; KEYS: Record<string, {secret: string}>};
    for (const attempt of attempts) {
      const result = await box.sh(`dffs-ctl exec ${JSON.stringify(attempt)}`);
      assert.notEqual(result.exitCode, 0, attempt);
      for (const secret of [secrets.SECRET_KEY, secrets.KEYS.narrow.secret]) assert.ok(!`${result.stdout}${result.stderr}`.includes(secret), attempt);
    }
    assert.equal(await mainPid(), pid, 'the daemon is still the same process');
    assert.equal(await box.ok('dffs-ctl exec --key narrow hostname'), await box.ok('hostname'));
    await box.ok('dffs-ctl keys remove narrow >/dev/null');
  });

  it('ends a command runner that a command stopped (it runs as dffs too), and serves on with a new one', {timeout: 90_000}, async () => {
    const stopped = await box.sh("dffs-ctl exec --timeout 1 'kill -STOP $PPID; sleep 30'");
    assert.notEqual(stopped.exitCode, 0);
    await box.ok('for i in $(seq 1 300); do ps -o stat= -C dffs-spawn | grep -q T || exit 0; sleep 0.1; done; ps -o pid,stat,comm -C dffs-spawn; exit 1');
    assert.equal((await box.sh('pgrep -f "sleep 30"')).exitCode, 1, 'its command went with it');
    assert.equal(await box.ok('dffs-ctl exec "echo back"'), 'back');
    // And it may not be traced or read: it holds other commands' output.
    const traced = await box.sh("dffs-ctl exec 'cat /proc/$PPID/environ /proc/$PPID/mem'");
    assert.notEqual(traced.exitCode, 0);
    assert.match(traced.stderr, /Permission denied/);
  });

  it('answers the greeting', async () => {
    assert.match(await box.ok('curl -s http://127.0.0.1:8099/'), /^Welcome to DataFlux Func Sidecar\n\* Version: /);
  });

  it('scores 2.0 or lower in systemd-analyze security for the daemon, 4.5 or lower for the command runner', async () => {
    for (const [unit, limit] of [[UNIT, 2.0], ['/etc/systemd/system/dataflux-func-sidecar-commands@.service', 4.5]] as const) {
      const out = await box.ok(`systemd-analyze security --offline=yes ${unit} 2>&1 | grep Overall`);
      const score = Number(/level for .*: ([\d.]+)/.exec(out)?.[1]);
      console.log(`  ${out.trim()}`);
      assert.ok(score <= limit, out);
    }
  });

  it('runs commands as dffs through exec, with their exit codes and streams', async () => {
    assert.equal(await box.ok('dffs-ctl exec hostname'), await box.ok('hostname'));
    assert.equal(await box.ok('dffs-ctl exec "id -un"'), 'dffs');
    const failing = await box.sh('dffs-ctl exec "echo to-out; echo to-err >&2; exit 3"');
    assert.deepEqual([failing.exitCode, failing.stdout, failing.stderr], [3, 'to-out', 'to-err']);
    assert.equal((await box.sh('dffs-ctl exec --timeout 1 sleep 5')).exitCode, 124);
    assert.equal(await box.ok('dffs-ctl exec --env MY_NAME=Tom --workdir /tmp "echo \\$MY_NAME \\$(pwd)"'), 'Tom /tmp');
  });

  it('ends a timed-out command\'s whole tree through its cgroup, also what left with setsid', async () => {
    // cgroup v2 is at /sys/fs/cgroup/unified on this sandbox's hybrid host, at /sys/fs/cgroup elsewhere.
    const root = await box.ok("awk '$9 == \"cgroup2\" {print $5; exit}' /proc/self/mountinfo");
    const timedOut = await box.sh('dffs-ctl exec --timeout 2 "setsid sleep 600 & setsid sh -c \'sleep 601 & sleep 602\' & sleep 30"');
    assert.equal(timedOut.exitCode, 124, timedOut.stderr);
    await box.ok('for i in $(seq 1 50); do pgrep -f "sleep 60[012]" >/dev/null || exit 0; sleep 0.1; done; pgrep -af "sleep 60"; exit 1');
    // A command that ends by itself may leave what it started in the background, as before.
    await box.ok('dffs-ctl exec "setsid sleep 603 >/dev/null 2>&1 &"');
    const background = await box.ok('pgrep -f "sleep 603"');
    const cgroup = await box.ok(`cat /proc/${background}/cgroup | sed -n 's/^0:://p'`);
    // Below the command runner's unit, one per connection of the daemon.
    assert.match(cgroup, /^\/system\.slice\/system-dataflux\\x2dfunc\\x2dsidecar\\x2dcommands\.slice\/dataflux-func-sidecar-commands@[^/]+\.service\/job-[0-9a-f-]{36}$/);
    const runner = `${root}${cgroup.slice(0, cgroup.lastIndexOf('/'))}`;
    await box.ok(`kill ${background}`);
    // Its cgroup goes once it is empty (swept every 10 s), and every other command's at its end.
    await box.ok(`for i in $(seq 1 200); do test -e ${root}${cgroup} || exit 0; sleep 0.1; done; exit 1`);
    assert.equal(await box.ok(`ls ${runner} | grep -c '^job-' || true`), '0');
  });

  it('lets commands use the host /tmp, group files and group sockets, ps and free', async () => {
    await box.ok('dffs-ctl exec "echo shared > /tmp/from-dffs"');
    assert.equal(await box.ok('cat /tmp/from-dffs'), 'shared');
    // Like docker: a root-owned socket and files of a group dffs is added to.
    await box.ok(`groupadd -f docker && usermod -aG docker dffs && install -d -g docker -m 2770 /srv/docker-shared
      (node -e "const fs=require('fs');require('net').createServer(s=>s.end('pong')).listen('/run/fake-docker.sock',()=>{fs.chownSync('/run/fake-docker.sock',0,Number(process.argv[1]));fs.chmodSync('/run/fake-docker.sock',0o660)})" $(getent group docker | cut -d: -f3) >/dev/null 2>&1 &)
      systemctl restart dataflux-func-sidecar && sleep 1`);
    await box.ok('dffs-ctl exec "touch /srv/docker-shared/ok"');
    assert.equal(await box.ok(`dffs-ctl exec "node -e \\"require('net').connect('/run/fake-docker.sock').on('data',d=>process.stdout.write(d))\\""`), 'pong');
    assert.ok(Number(await box.ok('dffs-ctl exec "ps -e --no-headers | wc -l"')) > 5, 'other users\' processes are visible');
    assert.match(await box.ok('dffs-ctl exec "free -m"'), /Mem:/);
    assert.equal(await box.ok('dffs-ctl exec "grep NoNewPrivs /proc/self/status"'), 'NoNewPrivs:\t1');
  });

  it('rotates the key: the old one refused at once, or kept for a grace', async () => {
    const rotated = await box.ok('dffs-ctl secret rotate --secret-key e2e-second-secret-key-0123456');
    assert.match(rotated, /New secret key:\n    e2e-second-secret-key-0123456/);
    assert.match(rotated, /old key is no longer accepted/);
    const old = await box.sh(`dffs-ctl exec --secret-key ${KEY} true`);
    assert.equal(old.exitCode, 77);
    assert.match(old.stderr, /bad signature/);
    assert.equal(await box.ok('dffs-ctl exec "echo new"'), 'new');
    await box.ok('dffs-ctl secret rotate --secret-key e2e-third-secret-key-01234567 --grace 10m');
    assert.equal(await box.ok('dffs-ctl exec --secret-key e2e-second-secret-key-0123456 echo grace'), 'grace');
    assert.equal(await box.ok('dffs-ctl secret show'), 'e2e-third-secret-key-01234567');
    const status = JSON.parse((await box.sh('dffs-ctl status --json')).stdout);
    assert.ok(Date.parse(status.secret.oldKeyAcceptedUntil) > Date.now());
    assert.ok(!JSON.stringify(status).includes('e2e-third-secret-key'));
  });

  it('adds a listener with bind, by reload: same PID', async () => {
    const pid = await mainPid();
    const out = await box.ok('dffs-ctl bind 127.0.0.1:8099,127.0.0.1:8100');
    assert.match(out, /Applied to the running service/);
    assert.match(out, /127\.0\.0\.1:8100\s+listening\s+answers/);
    assert.match(await box.ok('curl -s http://127.0.0.1:8100/'), /Welcome/);
    assert.equal(await mainPid(), pid);
    const shown = JSON.parse(await box.ok('dffs-ctl bind --json'));
    assert.deepEqual(shown.addresses.map((a: {address: string; answers: boolean}) => [a.address, a.answers]), [['127.0.0.1:8099', true], ['127.0.0.1:8100', true]]);
  });

  it('binds 172.17.0.1 once a docker0 bridge appears after start', async () => {
    const pid = await mainPid();
    await box.ok('dffs-ctl bind 127.0.0.1:8099,172.17.0.1:8099');
    assert.match(await box.ok('dffs-ctl bind'), /172\.17\.0\.1:8099\s+waiting/);
    await box.ok('ip link add docker0 type bridge && ip addr add 172.17.0.1/16 dev docker0 && ip link set docker0 up');
    await box.ok('for i in $(seq 1 50); do curl -sf http://172.17.0.1:8099/ >/dev/null && exit 0; sleep 0.2; done; exit 1');
    assert.equal(await mainPid(), pid);
  });

  it('reports status and counters as JSON, healthy (exit 0)', async () => {
    const result = await box.sh('dffs-ctl status --json');
    assert.equal(result.exitCode, 0, result.stdout);
    const status = JSON.parse(result.stdout);
    assert.equal(status.healthy, true);
    assert.equal(status.unit.activeState, 'active');
    assert.equal(status.unit.enabled, 'enabled');
    assert.ok(status.counters.requests >= 3);
    assert.ok(status.counters.refusedByReason['bad-signature'] >= 1);
    assert.match(await box.ok('dffs-ctl status'), /dataflux-func-sidecar: active \(running\), enabled, PID \d+/);
  });

  it('refuses a request replayed after systemctl restart, and after a crash and Restart=', async () => {
    // Captured once, sent again as is.
    await box.ok('node /src/test/clients/capture-request.mjs "$(dffs-ctl secret show)" "echo ran >> /tmp/replayed" > /tmp/captured.curl');
    const send = async () => JSON.parse(await box.ok('curl -s -K /tmp/captured.curl'));
    assert.equal((await send()).ok, true);
    assert.equal(await box.ok('stat -c %a /var/lib/dataflux-func-sidecar/replay.log'), '600');
    // Type=notify: restart returns once the daemon serves.
    await box.ok('systemctl restart dataflux-func-sidecar');
    const afterRestart = await send();
    assert.deepEqual([afterRestart.ok, afterRestart.reason], [false, 'replayed-nonce']);
    const pid = await mainPid();
    await box.ok(`kill -KILL ${pid}
      for i in $(seq 1 100); do
        p=$(systemctl show -p MainPID --value dataflux-func-sidecar)
        [ "$p" != 0 ] && [ "$p" != ${pid} ] && curl -sf http://127.0.0.1:8099/ >/dev/null && exit 0
        sleep 0.1
      done; exit 1`);
    const afterCrash = await send();
    assert.deepEqual([afterCrash.ok, afterCrash.reason], [false, 'replayed-nonce']);
    assert.equal(await box.ok('cat /tmp/replayed'), 'ran', 'the command ran once');
  });

  it('reaches a serve started with its own config through --config, beside the installed service', async () => {
    await box.ok(`echo '{"BIND": "127.0.0.1:18099", "SECRET_KEY": "personal-secret-key-0123456789"}' > /root/personal.json
      systemd-run --unit personal-serve --property=Environment=HOME=/root node /src/bin/run.js serve --config /root/personal.json --no-dashboard
      for i in $(seq 1 50); do curl -sf http://127.0.0.1:18099/ >/dev/null && exit 0; sleep 0.2; done; exit 1`);
    const personal = JSON.parse((await box.sh('dffs-ctl status --config /root/personal.json --json')).stdout);
    assert.deepEqual([personal.kind, personal.healthy, personal.bind.map((bind: {address: string}) => bind.address)], ['serve', true, ['127.0.0.1:18099']]);
    const service = JSON.parse((await box.sh('dffs-ctl status --json')).stdout);
    assert.deepEqual([service.kind, service.healthy, service.bind[0].address], ['service', true, '127.0.0.1:8099']);
    assert.equal(await box.ok('dffs-ctl exec --config /root/personal.json id -un'), 'root');
    assert.equal(await box.ok('dffs-ctl exec id -un'), 'dffs');
    assert.equal(await box.ok('dffs-ctl exec "id -un"'), 'dffs');
    assert.equal((await box.sh("dffs-ctl exec -- sh -c 'echo $0' x")).exitCode, 0);
    assert.match(await box.ok('ls /tmp/dataflux-func-sidecar-0 && stat -c %a /tmp/dataflux-func-sidecar-0'), /^control-[0-9a-f]{12}\.sock\n700$/);
    // The dashboard in a terminal of its own (script gives it one), stopped after a few seconds.
    const tui = await box.ok('timeout -s INT 4 script -qfec "stty cols 120 rows 30; dffs-ctl tui --config /root/personal.json" /tmp/tui.out >/dev/null; cat /tmp/tui.out');
    assert.match(tui, /config \/root\/personal\.json/);
    assert.match(tui, /bind 127\.0\.0\.1:18099 listening/);
    await box.ok('systemctl stop personal-serve');
    const stopped = await box.sh('dffs-ctl status --config /root/personal.json');
    assert.equal(stopped.exitCode, 1);
    assert.match(stopped.stdout, /no sidecar runs with \/root\/personal\.json .*start it with dffs-ctl serve --config/);
  });

  it('shows the calls in logs, filtered and as JSON', async () => {
    const entries = JSON.parse(await box.ok('dffs-ctl logs -n 200 --json')) as {event?: {type: string; command?: string}}[];
    assert.ok(entries.some((entry) => entry.event?.type === 'request-accepted' && entry.event.command === 'hostname'));
    const refused = await box.ok('dffs-ctl logs --refused');
    assert.match(refused, /request-refused .*reason=bad-signature/);
    assert.ok(!/request-accepted/.test(refused));
    assert.match(await box.ok('dffs-ctl logs --failed'), /command-finished .*exitCode=3/);
  });

  it('follows new events with logs -f', async () => {
    const followed = await box.ok('(timeout 4 dffs-ctl logs -f -n 0 > /tmp/followed &) ; sleep 1.5; dffs-ctl exec "echo followed-call" >/dev/null; sleep 2.5; cat /tmp/followed');
    assert.match(followed, /request-accepted .*command="echo followed-call"/);
    assert.match(followed, /command-finished .*exitCode=0/);
  });

  it('keeps the key and config on re-install (upgrade), with a new process', async () => {
    const pid = await mainPid();
    const before = await box.ok('cat /etc/dataflux-func-sidecar');
    const out = await box.ok('node /src/bin/run.js install');
    assert.match(out, /Upgraded DataFlux Func Sidecar/);
    assert.match(out, /Secret Key:\n    e2e-third-secret-key-01234567/);
    assert.equal(await box.ok('cat /etc/dataflux-func-sidecar'), before);
    assert.notEqual(await mainPid(), pid);
    assert.equal(await box.ok('dffs-ctl exec "echo upgraded"'), 'upgraded');
    assert.equal(await box.ok('ls /usr/local/lib/dataflux-func-sidecar/releases | wc -l'), '2');
  });

  it('rolls back an upgrade that does not come up, leaving the previous release running', async () => {
    const release = await box.ok('readlink /usr/local/lib/dataflux-func-sidecar/current');
    await box.ok(`rm -rf /tmp/broken && mkdir /tmp/broken && cp -r /src/bin /src/dist /src/package.json /src/oclif.manifest.json /tmp/broken/
      ln -s /src/node_modules /tmp/broken/node_modules
      sed -i 's/"version": "[^"]*"/"version": "9.9.9"/' /tmp/broken/package.json
      echo 'throw new Error("broken build");' >> /tmp/broken/dist/daemon/daemon.js`);
    const result = await box.sh('node /tmp/broken/bin/run.js install');
    assert.equal(result.exitCode, 1);
    assert.match(result.stderr, /upgrade to 9\.9\.9 failed, so the previous release .* was put back/);
    assert.equal(await box.ok('readlink /usr/local/lib/dataflux-func-sidecar/current'), release);
    assert.equal(await box.ok('systemctl is-active dataflux-func-sidecar'), 'active');
    assert.equal(await box.ok('dffs-ctl exec "echo still-here"'), 'still-here');
  });

  it('says what is wrong when the service is down, and status exits 1', async () => {
    await box.ok('systemctl stop dataflux-func-sidecar');
    const down = await box.sh('dffs-ctl exec true');
    assert.equal(down.exitCode, 69);
    assert.match(down.stderr, /cannot reach the sidecar at http:\/\/127\.0\.0\.1:8099/);
    assert.equal((await box.sh('dffs-ctl status')).exitCode, 1);
    const unreadable = await box.sh('runuser -u nobody -- dffs-ctl exec --config /etc/dataflux-func-sidecar true');
    assert.equal(unreadable.exitCode, 77);
    assert.match(unreadable.stderr, /permission denied \(run as root/);
    await box.ok('systemctl start dataflux-func-sidecar');
  });

  it('uninstalls, keeping the config unless --purge', async () => {
    await box.ok('node /src/bin/run.js uninstall');
    assert.equal((await box.sh(`test -e ${UNIT} || test -e /usr/local/bin/dffs-ctl || test -e /usr/local/lib/dataflux-func-sidecar`)).exitCode, 1);
    assert.equal(await box.ok('stat -c %U:%G /etc/dataflux-func-sidecar'), 'root:dffs-daemon');
    assert.equal((await box.sh('curl -s http://127.0.0.1:8099/')).exitCode, 7);
    await box.ok('node /src/bin/run.js uninstall --purge');
    assert.equal((await box.sh('test -e /etc/dataflux-func-sidecar || getent passwd dffs || getent passwd dffs-daemon')).exitCode, 2);
  });

  it('imports the original Sidecar\'s KEY: value config, keeping a backup', async () => {
    await box.ok('printf "BIND: 127.0.0.1:8099\\nSECRET_KEY: legacy-secret-key-123\\n" > /etc/dataflux-func-sidecar');
    const out = await box.ok('node /src/bin/run.js install');
    assert.match(out, /Imported the original Sidecar's config/);
    assert.equal(JSON.parse(await box.ok('cat /etc/dataflux-func-sidecar')).SECRET_KEY, 'legacy-secret-key-123');
    assert.match(await box.ok('cat /var/backups/dataflux-func-sidecar-original/3'), /SECRET_KEY: legacy-secret-key-123/);
    assert.equal(await box.ok('dffs-ctl exec "echo imported"'), 'imported');
  });
});
