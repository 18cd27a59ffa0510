// Words for where a fork starts, from the ForkPoint and the node's transcript.
import type { ForkPoint, Transcript } from "../../lib/api";
import { formatCount } from "../../lib/format";
import { messageText } from "../chat/calls";

const ROLE = {
  system: "the system prompt",
  user: "your message",
  assistant: "the model's reply",
  tool: "the tool result",
} as const;

export function describeForkPoint(at: ForkPoint | null, transcript: Transcript | null): string {
  if (at === null) return "The whole node, ready to continue.";
  if (at.char_offset !== null && transcript?.mode === "text") {
    return `The text up to character ${formatCount(at.char_offset)}; what follows is left out.`;
  }
  if (at.char_offset !== null) return `Message ${at.message + 1}, cut at character ${formatCount(at.char_offset)}.`;
  const m = transcript?.mode === "chat" ? transcript.messages[at.message] : undefined;
  const what = m ? `${ROLE[m.role as keyof typeof ROLE] ?? m.role} “${excerpt(messageText(m))}”` : `message ${at.message + 1}`;
  return `The conversation up to and including ${what}.`;
}

function excerpt(s: string, n = 48): string {
  const one = s.replace(/\s+/g, " ").trim();
  return one.length > n ? one.slice(0, n - 1) + "…" : one;
}
