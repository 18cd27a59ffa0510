// Function calls in a conversation (made through the OpenAI server and frozen there): their
// arguments as the app shows them, and a message's words as text to copy or to quote.
import type { Message, ToolCall } from "../../lib/api";

/** The call's arguments indented for reading; as written when they are not JSON. */
export function callArguments(call: ToolCall): string {
  try {
    return JSON.stringify(JSON.parse(call.arguments), null, 2);
  } catch {
    return call.arguments.trim();
  }
}

/** What a message says as one text: its content, then each call as `name(arguments)`. */
export function messageText(m: Message): string {
  const calls = (m.tool_calls ?? []).map((c) => `${c.name}(${c.arguments.trim()})`);
  return [m.content.trim(), ...calls].filter((s) => s !== "").join("\n");
}
