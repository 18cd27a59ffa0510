// Small preferences of this user on this machine, kept in the webview's local storage (nothing
// the backend needs to know).

const ENTER_SENDS = "freeze-attn.enter-sends";

function read(key: string): boolean {
  try {
    return globalThis.localStorage?.getItem(key) === "1";
  } catch {
    return false;
  }
}

function write(key: string, value: boolean): void {
  try {
    globalThis.localStorage?.setItem(key, value ? "1" : "0");
  } catch {
    // Storage may be unavailable (private mode): the choice lasts for this session.
  }
}

export class Settings {
  /** Enter sends the message and Shift+Enter starts a new line (else Ctrl/Cmd+Enter sends). */
  enterSends = $state(read(ENTER_SENDS));

  setEnterSends(value: boolean): void {
    this.enterSends = value;
    write(ENTER_SENDS, value);
  }
}

export const settings = new Settings();
