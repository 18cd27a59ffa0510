// Never lose unfrozen work silently: opening another node replaces the live state, so when the
// live state holds turns no node has, the user is asked first (keep them as a draft node, or
// discard them) instead.
import type { NodeId } from "./api";
import type { AppState } from "./context";

/** Thaws `id`, or opens the "unfrozen changes" dialog when the live state has unfrozen work. */
export async function thawOrAsk(app: Pick<AppState, "session" | "ui">, id: NodeId): Promise<boolean> {
  const live = app.session.live;
  if (live?.dirty && live.token_count > 0) {
    app.session.library.selected = id;
    app.ui.open({ kind: "unfrozen", node: id });
    return false;
  }
  return app.session.thaw(id);
}

/** A name for a draft node that does not clash with the last one. */
export function draftName(now: Date = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `draft ${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())} ${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`;
}
