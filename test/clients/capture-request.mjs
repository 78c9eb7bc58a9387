// A signed POST /shell as Func sends it, written as a curl config (`curl -K FILE`), so that a test
// can send the very same request again later, as someone who captured it would.
// Usage: node capture-request.mjs SECRET COMMAND [URL]
import {signRequest} from '../../dist/protocol/signature.js';

const [secret, command, url = 'http://127.0.0.1:8099/shell'] = process.argv.slice(2);
const body = JSON.stringify({command});
const lines = Object.entries(signRequest(secret, 'POST', '/shell', body)).map(([name, value]) => `header = "${name}: ${value}"`);
lines.push('header = "Content-Type: application/json"', `data = ${JSON.stringify(body)}`, `url = "${url}"`);
console.log(lines.join('\n'));
