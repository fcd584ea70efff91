/**
 * The one rendering of a typia error path for messages: `$input.messages[0].content[1]["weird key"]`
 * becomes `messages.0.content.1.weird key`, and the root is "" (callers name it: "body",
 * "(root)", ...). Used by request validation, settings, the admin API and MCP tool arguments.
 */
export function typiaPath(path: string): string {
  const s = path.startsWith("$input") ? path.slice(6) : path;
  const parts: string[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === ".") {
      let j = i + 1;
      while (j < s.length && s[j] !== "." && s[j] !== "[") j++;
      parts.push(s.slice(i + 1, j));
      i = j;
    } else if (c === "[") {
      if (s[i + 1] === '"') {
        // JSON-quoted key: find the closing quote not escaped.
        let j = i + 2;
        while (j < s.length && !(s[j] === '"' && s[j - 1] !== "\\")) j++;
        let key: string;
        try {
          key = JSON.parse(s.slice(i + 1, j + 1)) as string;
        } catch {
          key = s.slice(i + 2, j);
        }
        parts.push(key);
        i = j + 2; // skip `"]`
      } else {
        const j = s.indexOf("]", i);
        const end = j === -1 ? s.length : j;
        parts.push(s.slice(i + 1, end));
        i = end + 1;
      }
    } else {
      // Unexpected character: keep the rest verbatim.
      parts.push(s.slice(i));
      break;
    }
  }
  return parts.join(".");
}
