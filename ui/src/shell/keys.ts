// App-wide shortcuts. Ctrl/Cmd+Enter is handled by the focused editor, which knows what to send.
import type { AppState } from "../lib/context";
import { isTextField, matchShortcut } from "../lib/shortcuts";

export function openFreeze({ session, ui, notices }: AppState): void {
  if (session.backend !== "ready" || !session.live) return;
  if (session.live.token_count === 0) {
    notices.info("Nothing to freeze yet: the live state is empty. Chat, write or process a document first.");
    return;
  }
  if (session.busy) {
    notices.info("Wait for the generation to finish, or stop it, before freezing.");
    return;
  }
  ui.open({ kind: "freeze" });
}

export function openFork({ session, library, ui, notices }: AppState): void {
  if (session.backend !== "ready") return;
  const node = session.live?.node ?? library.selected;
  if (node === null || node === undefined) {
    notices.info("Freeze the live state first: a fork starts from a node.");
    return;
  }
  ui.open({ kind: "fork", node, at: null });
}

export function handleGlobalKey(e: KeyboardEvent, app: AppState): void {
  const action = matchShortcut(e, isTextField(e.target));
  if (!action || action === "send") return;
  e.preventDefault();
  if (app.ui.dialog) return; // the open dialog has the keyboard
  switch (action) {
    case "stop":
      if (app.ui.helpOpen) app.ui.helpOpen = false;
      else if (app.session.busy) void app.session.stop();
      break;
    case "freeze":
      openFreeze(app);
      break;
    case "fork":
      openFork(app);
      break;
    case "help":
      app.ui.helpOpen = !app.ui.helpOpen;
      break;
  }
}
