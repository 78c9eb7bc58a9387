/**
 * Text from a command (its line, its output) made safe to draw on an operator's terminal: control
 * characters (escape sequences could set the title, write the clipboard or move the cursor) and
 * bidirectional overrides (which make text read as something it is not) become U+FFFD. Line
 * breaks and tabs are the caller's to lay out, and are kept.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, '\ufffd');
}
