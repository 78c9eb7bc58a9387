/**
 * Characters a terminal draws as nothing, or lets change how text reads: soft hyphen, invisible
 * fillers and joiners, bidirectional marks and overrides, the line and paragraph separators,
 * interlinear annotation and tag characters.
 */
const HIDDEN = '\\u00ad\\u034f\\u061c\\u115f\\u1160\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2069\\u3164\\ufeff\\uffa0\\ufff9-\\ufffb\\u{e0000}-\\u{e007f}';
/** DEL and the C1 controls: xterm takes U+009B as ESC [. */
const DEL_AND_C1 = '\\u007f-\\u009f';
const NOT_PRINTABLE = new RegExp(`[\\u0000-\\u0008\\u000b-\\u001f${DEL_AND_C1}${HIDDEN}]`, 'gu');
/** What JSON.stringify leaves raw of those: it escapes the C0 range (ESC, BEL) itself. */
const RAW_IN_JSON = new RegExp(`[${DEL_AND_C1}${HIDDEN}]`, 'gu');

/**
 * Text from a command (its line, its output) made safe to draw on an operator's terminal: control
 * characters (escape sequences could set the title, write the clipboard or move the cursor) and
 * hidden ones (which make text read as something it is not) become U+FFFD. Line breaks and tabs
 * are the caller's to lay out, and are kept.
 */
export function printable(text: string): string {
  return text.replace(NOT_PRINTABLE, '\ufffd');
}

/** Text for one line of a terminal: every run of white space one space, then printable. */
export function oneLine(text: string): string {
  return printable(text.replace(/\s+/g, ' '));
}

/** JSON text with those characters written as \\u escapes (a pair for one beyond U+FFFF): the same data once parsed, harmless when printed. */
export function terminalSafeJson(json: string): string {
  return json.replace(RAW_IN_JSON, (character) => Array.from({length: character.length}, (_, index) => `\\u${character.charCodeAt(index).toString(16).padStart(4, '0')}`).join(''));
}
