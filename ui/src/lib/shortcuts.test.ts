import { describe, expect, it } from "vitest";
import { isTextField, labelFor, matchShortcut } from "./shortcuts";

const key = (k: string, mods: Partial<Record<"ctrlKey" | "metaKey" | "altKey" | "shiftKey", boolean>> = {}) => ({
  key: k,
  ctrlKey: false,
  metaKey: false,
  altKey: false,
  shiftKey: false,
  ...mods,
});

describe("matchShortcut", () => {
  it("accepts Ctrl and Cmd alike", () => {
    expect(matchShortcut(key("Enter", { ctrlKey: true }))).toBe("send");
    expect(matchShortcut(key("Enter", { metaKey: true }))).toBe("send");
    expect(matchShortcut(key("s", { ctrlKey: true }))).toBe("freeze");
    expect(matchShortcut(key("S", { metaKey: true, shiftKey: true }))).toBe("freeze");
    expect(matchShortcut(key("b", { ctrlKey: true }))).toBe("fork");
  });

  it("needs the modifier where the table says so", () => {
    expect(matchShortcut(key("Enter"))).toBeNull();
    expect(matchShortcut(key("s"))).toBeNull();
    expect(matchShortcut(key("Escape"))).toBe("stop");
    expect(matchShortcut(key("Escape", { ctrlKey: true }))).toBeNull();
  });

  it("ignores Alt combinations and the bare help key inside fields", () => {
    expect(matchShortcut(key("s", { ctrlKey: true, altKey: true }))).toBeNull();
    expect(matchShortcut(key("?", { shiftKey: true }))).toBe("help");
    expect(matchShortcut(key("?", { shiftKey: true }), true)).toBeNull();
  });

  it("labels keys per platform", () => {
    expect(labelFor("freeze", false)).toBe("Ctrl+S");
    expect(labelFor("freeze", true)).toBe("⌘S");
    expect(labelFor("send", true)).toBe("⌘↩");
    expect(labelFor("stop", false)).toBe("Esc");
  });

  it("recognises text fields", () => {
    expect(isTextField(document.createElement("textarea"))).toBe(true);
    expect(isTextField(document.createElement("button"))).toBe(false);
    expect(isTextField(null)).toBe(false);
  });
});
