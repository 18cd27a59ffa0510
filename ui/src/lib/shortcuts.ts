// Keyboard shortcuts: one table, used both to handle keys and to list them in the help popover.

export type Action = "send" | "stop" | "freeze" | "fork" | "help";

export type Shortcut = { action: Action; key: string; mod: boolean; label: string };

export const SHORTCUTS: Shortcut[] = [
  { action: "send", key: "Enter", mod: true, label: "Send the message, or continue the story" },
  { action: "stop", key: "Escape", mod: false, label: "Stop generating or processing" },
  { action: "freeze", key: "s", mod: true, label: "Freeze the live state as a node" },
  { action: "fork", key: "b", mod: true, label: "Fork the current node" },
  { action: "help", key: "?", mod: false, label: "Show these shortcuts" },
];

export type KeyLike = Pick<KeyboardEvent, "key" | "ctrlKey" | "metaKey" | "altKey" | "shiftKey">;

export function isMac(platform: string = globalThis.navigator?.platform ?? ""): boolean {
  return /mac|iphone|ipad/i.test(platform);
}

/**
 * The action a key press asks for, or null. Ctrl and Cmd both count as the modifier, so the same
 * muscle memory works everywhere; `inField` suppresses the bare "?" while typing.
 */
export function matchShortcut(e: KeyLike, inField = false): Action | null {
  const mod = e.ctrlKey || e.metaKey;
  if (e.altKey) return null;
  for (const s of SHORTCUTS) {
    if (s.mod !== mod) continue;
    if (e.key.toLowerCase() !== s.key.toLowerCase()) continue;
    if (s.action === "help" && inField) return null;
    return s.action;
  }
  return null;
}

/** "Ctrl+S" on Linux and Windows, "⌘S" on macOS. */
export function shortcutLabel(s: Shortcut, mac = isMac()): string {
  const key = s.key === "Escape" ? "Esc" : s.key.length === 1 ? s.key.toUpperCase() : s.key;
  if (!s.mod) return key;
  return mac ? `⌘${key === "Enter" ? "↩" : key}` : `Ctrl+${key}`;
}

export function labelFor(action: Action, mac = isMac()): string {
  const s = SHORTCUTS.find((x) => x.action === action);
  return s ? shortcutLabel(s, mac) : "";
}

/** True when the event target is a text field, where a bare key types a character. */
export function isTextField(target: EventTarget | null): boolean {
  if (!target || !(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}
