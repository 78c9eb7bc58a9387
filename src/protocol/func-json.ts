/**
 * JSON as DataFlux Func's Python client writes it (ujson defaults): ASCII only, with `\uXXXX`
 * escapes for anything else, and `/` written as `\/`. Signatures cover these exact bytes.
 */
export function funcJson(value: unknown): string {
  return JSON.stringify(value)
    .replaceAll('/', '\\/')
    .replace(/[\u0080-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
