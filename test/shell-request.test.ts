import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {BadRequest, parseShellRequest} from '../src/daemon/shell-request.js';

const parse = (body: string | Uint8Array) => parseShellRequest(typeof body === 'string' ? Buffer.from(body) : body, 3600);

describe('POST /shell bodies', () => {
  it('reads the body Func sends, with \\/ and \\u escapes', () => {
    const request = parse(
      '{"command":"ls -l \\/tmp","wait":false,"workdir":"\\/home","envs":["MY_NAME=Tom","EMPTY=","EQ=a=b"],"callbackURL":"http:\\/\\/172.17.0.1:8088\\/api\\/v1\\/al\\/auln-sidecar-callback"}',
    );
    assert.equal(request.command, 'ls -l /tmp');
    assert.equal(request.wait, false);
    assert.equal(request.workdir, '/home');
    assert.deepEqual({...request.envs}, {MY_NAME: 'Tom', EMPTY: '', EQ: 'a=b'});
    assert.equal(request.callbackURL?.href, 'http://172.17.0.1:8088/api/v1/al/auln-sidecar-callback');
    assert.equal(parse('{"command":"echo \\u4f60\\u597d"}').command, 'echo 你好');
  });

  it('defaults wait to true, takes envs as an object, null as absent, and a timeout', () => {
    const request = parse('{"command":"x","wait":null,"workdir":null,"envs":{"A":"1"},"callbackURL":null,"timeout":2.5}');
    assert.equal(request.wait, true);
    assert.equal(request.workdir, undefined);
    assert.equal(request.callbackURL, undefined);
    assert.deepEqual({...request.envs}, {A: '1'});
    assert.equal(request.timeoutSeconds, 2.5);
  });

  for (const [body, message] of [
    ['', /not valid JSON/],
    ['{"command": "x"', /not valid JSON/],
    ['[]', /JSON object/],
    ['"hostname"', /JSON object/],
    ['{}', /command must be a string/],
    ['{"command": 1}', /command must be a string/],
    ['{"command": "  "}', /command must not be empty/],
    ['{"command": "a\\u0000b"}', /command must not contain NUL/],
    ['{"command": "x", "wait": "yes"}', /wait must be true or false/],
    ['{"command": "x", "workdir": 5}', /workdir must be a non-empty string/],
    ['{"command": "x", "workdir": "tmp"}', /workdir "tmp" must be an absolute path/],
    ['{"command": "x", "envs": "A=1"}', /envs must be a list/],
    ['{"command": "x", "envs": ["A"]}', /envs\[0\] must be a "KEY=VALUE" string/],
    ['{"command": "x", "envs": [1]}', /envs\[0\] must be a "KEY=VALUE" string/],
    ['{"command": "x", "envs": ["=1"]}', /envs\[0\]: "" is not a valid variable name/],
    ['{"command": "x", "envs": ["1A=1"]}', /not a valid variable name/],
    ['{"command": "x", "envs": ["LD_PRELOAD=/tmp/x.so"]}', /LD_PRELOAD is refused/],
    ['{"command": "x", "envs": {"LD_LIBRARY_PATH": "/tmp"}}', /LD_LIBRARY_PATH is refused/],
    ['{"command": "x", "envs": {"A": 1}}', /envs.A must be a string/],
    ['{"command": "x", "envs": ["A=a\\u0000b"]}', /must not contain NUL/],
    ['{"command": "x", "callbackURL": "ftp://h/x"}', /callbackURL must be http/],
    ['{"command": "x", "callbackURL": "file:///etc/passwd"}', /callbackURL must be http/],
    ['{"command": "x", "callbackURL": "not a url"}', /is not a URL/],
    ['{"command": "x", "callbackURL": "http://u:p@h/"}', /user name or password/],
    ['{"command": "x", "timeout": 0}', /timeout must be a number/],
    ['{"command": "x", "timeout": 99999}', /at most 3600/],
    ['{"command": "x", "cmd": "y"}', /unknown field "cmd"/],
  ] as const) {
    it(`refuses ${body || '(empty)'}`, () => assert.throws(() => parse(body), (error: Error) => error instanceof BadRequest && message.test(error.message)));
  }

  it('reads UTF-8 text, with or without a byte order mark', () => {
    const text = '{"command":"echo héllo ✓ 𝄞","envs":["K=é"]}';
    for (const body of [Buffer.from(text), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])]) {
      const request = parse(new Uint8Array(body));
      assert.equal(request.command, 'echo héllo ✓ 𝄞');
      assert.equal(request.envs.K, 'é');
    }
  });

  it('refuses invalid UTF-8', () => {
    assert.throws(() => parse(Uint8Array.from([0x7b, 0x22, 0xff, 0x22, 0x7d])), /not valid UTF-8/);
  });
});
